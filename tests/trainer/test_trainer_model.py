"""The network: preprocessing inside the model, the frozen/trainable cut, weights resolution."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.model import (
    EMBEDDING,
    HEAD_FROM,
    LOGITS,
    VggPreprocess,
    WeightsError,
    build_model,
    join_members,
    scale_logits,
    split_model,
)


def test_preprocessing_layer_matches_keras_vgg16_preprocess_input():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(rgb.copy())
    np.testing.assert_allclose(np.asarray(VggPreprocess()(rgb)), expected, atol=1e-4)


def test_model_takes_plain_rgb_pixels_like_vgg16_with_preprocess_input():
    keras.utils.set_random_seed(0)
    model = build_model(3, 32, "none", dense_units=8, dropout=0.0)
    backbone, _ = split_model(model, "head_pool")
    conv_layers = model.layers[2 : model.layers.index(model.get_layer("block5_pool")) + 1]
    reference = keras.Sequential([keras.Input((32, 32, 3)), *conv_layers])  # VGG16 without the preprocessing
    rgb = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)

    inside = backbone.predict(rgb, verbose=0)
    outside = reference.predict(keras.applications.vgg16.preprocess_input(rgb.copy()), verbose=0)

    np.testing.assert_allclose(inside, outside, rtol=1e-4, atol=1e-3)
    assert model.input.shape[1:] == (32, 32, 3)
    assert model.layers[1].name == "vgg_preprocess"


def test_split_model_parts_compose_to_the_whole_and_share_weights():
    keras.utils.set_random_seed(0)
    model = build_model(3, 32, "none", dense_units=8, dropout=0.0)
    frozen, top = split_model(model, "block5_conv3")
    pooler, head = split_model(top, HEAD_FROM)
    rgb = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)

    whole = model.predict(rgb, verbose=0)
    np.testing.assert_allclose(top.predict(frozen.predict(rgb, verbose=0), verbose=0), whole, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        head.predict(pooler.predict(frozen.predict(rgb, verbose=0), verbose=0), verbose=0), whole, rtol=1e-4, atol=1e-6
    )
    assert [w.name for w in top.trainable_weights][:2] == ["kernel", "bias"]  # block5_conv3 is trainable
    assert top.layers[1].name == "block5_conv3"
    assert model.get_layer("block5_conv3") is top.layers[1]
    with pytest.raises(ValueError, match="no layer 'nope'"):
        split_model(model, "nope")


def test_weights_from_a_file_are_loaded(tmp_path):
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    donor.save_weights(path)
    model = build_model(2, 32, str(path), dense_units=4, dropout=0.0)
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").get_weights()[0], donor.get_layer("block3_conv2").get_weights()[0]
    )


@pytest.mark.parametrize("weights", ["/nonexistent/vgg16.weights.h5", "imagenet-typo"])
def test_unknown_weights_give_a_clear_error(weights):
    with pytest.raises(WeightsError, match="no such file"):
        build_model(2, 32, weights, dense_units=4, dropout=0.0)


def test_a_file_that_is_not_vgg16_weights_is_refused(tmp_path):
    path = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(path)
    with pytest.raises(WeightsError, match="cannot load VGG16 weights"):
        build_model(2, 32, str(path), dense_units=4, dropout=0.0)


def test_activation_caps_keep_the_network_unchanged_below_the_caps():
    from trainer.model import apply_caps, measure_activation_caps

    keras.utils.set_random_seed(0)
    model = build_model(3, 32, "none", dense_units=8, dropout=0.0)
    backbone, _ = split_model(model, "head_pool")
    rgb = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    before = backbone.predict(rgb, verbose=0)

    caps = measure_activation_caps(model, rgb, percentile=100)  # nothing on these images exceeds its cap
    apply_caps(model, caps)
    after = backbone.predict(rgb, verbose=0) * caps["block5_conv3"] / 6  # last conv's output is divided by s

    assert next(iter(caps)) == "block1_conv1" and len(caps) == 13
    assert model.get_layer("block3_conv2").activation is keras.activations.relu6
    np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-3 * float(np.abs(before).max()))
    brighter = np.clip(rgb * 4, 0, 255)  # beyond the measured range the caps clip
    assert backbone.predict(brighter, verbose=0).max() <= 6.0 + 1e-5


def _logits(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    return keras.Model(model.inputs, model.get_layer(LOGITS).output).predict(pixels, verbose=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_joined_members_average_their_logits_and_share_their_layers():
    keras.utils.set_random_seed(0)
    members = [build_model(3, 32, "none", dense_units=8, dropout=0.0) for _ in range(3)]
    for member in members[1:]:  # as in training: every member starts from the same backbone weights
        for layer in member.layers[: member.layers.index(member.get_layer("block5_conv1"))]:
            layer.set_weights(members[0].get_layer(layer.name).get_weights())
    joined = join_members(members, "block5_conv1")
    model, frozen, top = joined.model, joined.frozen, joined.top
    rgb = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)

    logits = [_logits(m, rgb) for m in members]
    assert np.abs(logits[0] - logits[1]).max() > 0.01  # members differ: the average is not any one of them
    mean = np.mean(logits, axis=0)
    np.testing.assert_allclose(model.predict(rgb, verbose=0), _softmax(mean), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(top.predict(frozen.predict(rgb, verbose=0), verbose=0), _softmax(mean), atol=1e-6)

    # the exported model's second output: every member's hidden layer, side by side (what familiarity compares)
    scores, embedding = joined.exportable().predict(rgb, verbose=0)
    hidden = [keras.Model(m.inputs, m.get_layer(EMBEDDING).output).predict(rgb, verbose=0) for m in members]
    np.testing.assert_allclose(scores, _softmax(mean), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(embedding, np.concatenate(hidden, axis=1), rtol=1e-4, atol=1e-5)

    # shared, not copied: changing one member's head changes the joined model
    head = members[1].get_layer(LOGITS)
    head.set_weights([w + 1.0 for w in head.get_weights()])
    mean = np.mean([_logits(m, rgb) for m in members], axis=0)
    np.testing.assert_allclose(model.predict(rgb, verbose=0), _softmax(mean), rtol=1e-4, atol=1e-6)

    # the temperature divides the averaged logits
    scale_logits(model, 0.5)
    np.testing.assert_allclose(model.predict(rgb, verbose=0), _softmax(mean * 0.5), rtol=1e-4, atol=1e-6)


def test_one_member_joined_is_the_member_itself():
    keras.utils.set_random_seed(0)
    member = build_model(3, 32, "none", dense_units=8, dropout=0.0)
    model = join_members([member], "block5_conv1").model
    rgb = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(rgb, verbose=0), member.predict(rgb, verbose=0), atol=1e-6)
    assert len(model.weights) == len(member.weights)


def test_a_blank_copy_of_a_run_keeps_the_relu6_caps_of_its_convs():
    """The float32 twin exported after mixed-precision training copies rescaled weights: it needs the caps' ReLU6
    too, or every activation above its cap passes unclipped in the exported model."""
    from trainer.config import TrainConfig
    from trainer.efficientnet_lite import leaf_layers
    from trainer.pipeline import blank_model

    cfg = TrainConfig(data="d", out="o", backbone="vgg16", weights="none", image_size=32, members=2)
    twin = blank_model(cfg, 3, {"block1_conv1": 2.0, "block5_conv2": 3.0}).model

    activations = {}
    for layer in leaf_layers(twin):
        activations.setdefault(layer.name, []).append(getattr(layer, "activation", None))
    assert activations["block1_conv1"] == [keras.activations.relu6]  # frozen: shared by the members
    assert activations["block5_conv2"] == [keras.activations.relu6] * 2  # one copy per member
    assert activations["block5_conv1"] == [keras.activations.relu] * 2
