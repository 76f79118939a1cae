"""Tiny but real TFLite bundles for tests: a colour classifier whose right answer is known.

The network averages the image's R, G and B values and a fixed dense layer turns the strongest
channel into the label, so a red item must come out "red". It is converted by TensorFlow's TFLite
converter to full-integer int8 (uint8 input) exactly as a production model is, which makes the
edge's quantization handling testable without training anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.bundle import InputSpec, Quantization, write_bundle

COLOR_LABELS = ("red", "green", "blue")


def color_model_bytes(size: int, quantize: bool) -> bytes:
    import tensorflow as tf

    inputs = tf.keras.Input((size, size, 3))
    mean = tf.keras.layers.GlobalAveragePooling2D()(inputs)
    centred = tf.keras.layers.Rescaling(1 / 255.0, offset=-0.5)(mean)
    logits = tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.Identity(gain=12.0))(centred)
    model = tf.keras.Model(inputs, tf.keras.layers.Softmax()(logits))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(0)

        def calibration():
            for _ in range(64):  # flat colours, so the calibrated ranges span what the tests show it
                yield [np.broadcast_to(rng.integers(0, 256, (1, 1, 1, 3)), (1, size, size, 3)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def write_color_bundle(directory: Path, size: int = 32, quantize: bool = True, labels=COLOR_LABELS) -> Path:
    write_bundle(
        directory,
        color_model_bytes(size, quantize),
        name="color-test",
        version="1",
        labels=list(labels),
        input_spec=InputSpec(height=size, width=size, dtype="uint8" if quantize else "float32", pad_value=0),
        quantization=Quantization(scheme="int8" if quantize else "float32", calibration="random flat colours"),
        metrics={"note": "synthetic test model"},
    )
    return directory
