"""The preprocessing layer survives int8 conversion: the exported model sees the pixels Keras saw.

A regression test for a converter trap: `ops.flip` becomes an int8 REVERSE_V2 whose output gets
other quantization parameters than its input while the kernel copies bytes, which silently corrupts
every pixel (26 % relative error after one conv, int8 accuracy 9 points below float on the apparel
test split).
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="the trainer needs Keras/TensorFlow (trainer-cpu extra)")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from trainer.export import to_tflite  # noqa: E402
from trainer.model import VggPreprocess  # noqa: E402


def test_vgg_preprocess_matches_keras_preprocess_input() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(VggPreprocess()(pixels))
    reference = keras.applications.vgg16.preprocess_input(pixels.copy())
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_int8_export_keeps_the_preprocessed_pixels() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (24, 32, 32, 3)).astype(np.float32)
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(VggPreprocess()(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features))
    interpreter = Interpreter(model_content=to_tflite(model, calibration=list(images[:16])))
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert "REVERSE_V2" not in ops
    out = interpreter.get_output_details()[0]
    scale, zero = out["quantization"]
    for image in images[16:20]:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[np.newaxis].astype(np.uint8))
        interpreter.invoke()
        quantized = (interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale
        expected = model.predict(image[np.newaxis], verbose=0)
        assert np.linalg.norm(quantized - expected) / np.linalg.norm(expected) < 0.03
