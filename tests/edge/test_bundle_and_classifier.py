"""The model bundle contract: valid bundles classify correctly, broken ones are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import BUNDLE_FILE, BundleError, load_bundle
from edge.classifier import Classifier
from edge.preprocess import fit_to_input, letterbox

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR, as OpenCV delivers frames


def solid(bgr: tuple[int, int, int], h: int = 120, w: int = 90) -> np.ndarray:
    return np.full((h, w, 3), bgr, dtype=np.uint8)


def edit_metadata(bundle: Path, **changes) -> None:
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    meta.update(changes)
    (bundle / BUNDLE_FILE).write_text(json.dumps(meta))


def test_int8_bundle_classifies_colours(color_bundle: Path) -> None:
    classifier = Classifier(load_bundle(color_bundle), threads=1)
    assert classifier.runtime == "ai-edge-litert"
    for colour, label in ((RED, "red"), (GREEN, "green"), (BLUE, "blue")):
        scores = classifier.classify(solid(colour))
        assert scores.shape == (3,)
        assert classifier.labels[int(scores.argmax())] == label
        assert scores.max() > 0.9
        assert abs(float(scores.sum()) - 1.0) < 0.05


def test_float_bundle_takes_float_input(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from tests.model_factory import write_color_bundle

    bundle = load_bundle(write_color_bundle(tmp_path / "f32", quantize=False))
    classifier = Classifier(bundle, threads=1)
    assert classifier.labels[int(classifier.classify(solid(BLUE)).argmax())] == "blue"


def test_hash_mismatch_is_refused_naming_the_file(color_bundle: Path) -> None:
    model = color_bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.tflite: sha256 .* does not match"):
        load_bundle(color_bundle)


def test_missing_model_file(color_bundle: Path) -> None:
    (color_bundle / "model.tflite").unlink()
    with pytest.raises(BundleError, match=r"model file named in .* is missing"):
        load_bundle(color_bundle)


def test_missing_or_unreadable_metadata(tmp_path: Path, color_bundle: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    (color_bundle / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(color_bundle)


def test_invalid_metadata_lists_fields(color_bundle: Path) -> None:
    edit_metadata(color_bundle, labels=["only-one"], model_file="../../etc/passwd")
    with pytest.raises(BundleError) as err:
        load_bundle(color_bundle)
    assert "labels" in str(err.value) and "model_file" in str(err.value)


def test_labels_that_do_not_match_outputs(color_bundle: Path) -> None:
    edit_metadata(color_bundle, labels=["a", "b", "c", "d"])
    with pytest.raises(BundleError, match=r"model outputs have sizes \[3\], expected 4 scores"):
        Classifier(load_bundle(color_bundle))


def test_input_size_mismatch(color_bundle: Path) -> None:
    meta = json.loads((color_bundle / BUNDLE_FILE).read_text())
    meta["input"]["height"] = 64
    (color_bundle / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"metadata says HxWxC \[64, 32, 3\]"):
        Classifier(load_bundle(color_bundle))


def test_corrupt_model_with_matching_hash_is_a_bundle_error(color_bundle: Path) -> None:
    import hashlib

    garbage = b"this is not a flatbuffer" * 10
    (color_bundle / "model.tflite").write_bytes(garbage)
    edit_metadata(color_bundle, sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(BundleError, match="cannot load this model"):
        Classifier(load_bundle(color_bundle))


def test_letterbox_keeps_aspect_and_pads() -> None:
    tall = solid(RED, h=200, w=100)
    boxed = letterbox(tall, 64, 64, pad_value=7)
    assert boxed.shape == (64, 64, 3)
    assert (boxed[:, :16] == 7).all() and (boxed[:, -16:] == 7).all()
    assert (boxed[:, 16:48] == RED).all()


def test_fit_to_input_converts_to_rgb(color_bundle: Path) -> None:
    spec = load_bundle(color_bundle).metadata.input
    fitted = fit_to_input(solid(RED), spec)
    assert fitted.shape == (32, 32, 3)
    assert tuple(fitted[16, 16]) == (255, 0, 0)  # RGB now
    with pytest.raises(ValueError, match="HxWx3"):
        fit_to_input(np.zeros((10, 10), np.uint8), spec)
