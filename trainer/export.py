"""Keras model -> TFLite bytes: float32, and full-integer int8 with uint8 input calibrated on real images.
The trainer's one TensorFlow-only module (the TFLite converter): imported when a bundle is exported, so
training itself runs on any Keras 3 backend.

Calibration decides whether int8 is usable: activation ranges measured on synthetic or unbalanced
images clip real ones (the issue measured 61-92 % top-1 agreement that way), so the sample is
class-balanced real training images, prepared exactly as the edge prepares camera crops.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf


def to_tflite(model: keras.Model, calibration: Sequence[np.ndarray] | None = None) -> bytes:
    """float32 model without `calibration`; int8 weights and activations, uint8 in/out, with it."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        if len(calibration) == 0:
            raise ValueError("int8 export needs at least one calibration image")

        def representative() -> Iterator[list[np.ndarray]]:
            for pixels in calibration:
                yield [pixels[np.newaxis].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every traced tensor
        return converter.convert()
