"""The network: preprocessing inside the model, the frozen/trainable cut, weights resolution."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from trainer.model import HEAD_FROM, VggPreprocess, WeightsError, build_model, split_model


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
