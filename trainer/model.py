"""The network: Keras VGG16 with its input preprocessing inside, plus a small classification head.

The model takes plain RGB pixels (0..255, as `edge.preprocess.fit_to_input` produces them), so the
exported TFLite file needs nothing from the edge but a resize.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops

# keras.applications.vgg16.preprocess_input ("caffe" mode): RGB -> BGR, then subtract the ImageNet mean.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
# Phase 1 trains only this layer and what follows (the head).
HEAD_FROM = "head_norm"


class WeightsError(ValueError):
    """The --weights value names nothing usable."""


@keras.saving.register_keras_serializable(package="sortline")
class VggPreprocess(keras.layers.Layer):
    """What `vgg16.preprocess_input` does, as a layer, so the exported model takes RGB pixels."""

    def call(self, pixels):
        bgr = ops.flip(ops.cast(pixels, self.compute_dtype), axis=-1)
        return bgr - ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=self.compute_dtype)


def resolve_weights(weights: str) -> str | None:
    """'imagenet' / 'none' / a path to a Keras VGG16 (no top) weights file -> what keras.applications takes."""
    if weights == "imagenet":
        return "imagenet"
    if weights == "none":
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"--weights {weights!r}: no such file; use 'imagenet', 'none' or the path of a VGG16 weights file "
            "(offline: ../shared/tools/vgg16-offline-weights builds one)"
        )
    if not path.name.endswith(".h5"):
        raise WeightsError(f"--weights {weights!r}: expected a Keras weights file ending in .weights.h5 or .h5")
    return str(path)


def build_model(num_classes: int, image_size: int, weights: str, dense_units: int, dropout: float) -> keras.Model:
    """RGB pixels -> VGG preprocessing -> VGG16 conv blocks -> global average pool -> dense head -> softmax."""
    try:
        backbone = keras.applications.VGG16(
            include_top=False, weights=resolve_weights(weights), input_shape=(image_size, image_size, 3)
        )
    except WeightsError:
        raise
    except Exception as exc:  # download failure, wrong file, wrong layer shapes: all say the same to the user
        raise WeightsError(f"--weights {weights!r}: cannot load VGG16 weights: {exc}") from exc
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    x = VggPreprocess(name="vgg_preprocess")(pixels)
    for layer in backbone.layers[1:]:
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    # VGG activations reach the hundreds; normalising them lets the head train at a normal learning rate.
    x = keras.layers.BatchNormalization(name="head_norm")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout1")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    scores = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="scores")(x)
    return keras.Model(pixels, scores, name="sortline_vgg16")


def split_model(model: keras.Model, before: str) -> tuple[keras.Model, keras.Model]:
    """Cut a linear model just before layer `before` into (bottom, top), sharing layers (and weights)."""
    layers = model.layers[1:]  # a linear stack after the input layer
    names = [layer.name for layer in layers]
    if before not in names:
        raise ValueError(f"no layer {before!r} in {model.name}; layers are {names}")
    cut = names.index(before)
    if cut == 0:
        raise ValueError(f"cannot cut {model.name} before its first layer {before!r}")
    bottom = _stack(model.inputs[0].shape[1:], layers[:cut], f"before_{before}")
    return bottom, _stack(bottom.output.shape[1:], layers[cut:], f"from_{before}")


def _stack(input_shape: tuple, layers: list[keras.layers.Layer], name: str) -> keras.Model:
    inputs = x = keras.Input(tuple(input_shape))
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)
