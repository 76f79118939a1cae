"""Runs a bundle's TFLite model on a crop and returns one score per label.

The runtime is chosen at import time: LiteRT (`ai-edge-litert`) first, `tflite-runtime` where
LiteRT has no wheel, and TensorFlow's deprecated `tf.lite` only as a last resort (the daemon
never has TensorFlow installed; the trainer does).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import BundleError, ModelBundle
from edge.preprocess import decode_image, fit_to_input

log = logging.getLogger(__name__)

_RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)


def load_interpreter_class() -> tuple[type, str]:
    """Return (Interpreter class, runtime name) of the best installed TFLite runtime."""
    for name, module in _RUNTIMES:
        try:
            return importlib.import_module(module).Interpreter, name
        except ImportError:
            continue
    try:
        import tensorflow as tf  # last resort only
    except ImportError:
        raise RuntimeError(
            "no TFLite runtime installed: pip install 'sortline[edge]' (ai-edge-litert) "
            "or 'sortline[edge-legacy]' (tflite-runtime)"
        ) from None
    return tf.lite.Interpreter, "tensorflow"


class Classifier:
    """One interpreter for one bundle. Not thread-safe: call from a single thread."""

    def __init__(self, bundle: ModelBundle, threads: int = 2) -> None:
        interpreter_class, self.runtime = load_interpreter_class()
        self.bundle = bundle
        try:
            self._interpreter: Any = interpreter_class(model_path=str(bundle.model_path), num_threads=threads)
            with _runtime_notices_to_debug_log():
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{bundle.model_path}: the TFLite runtime cannot load this model: {exc}") from exc
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        bundle.check_model_io(
            tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name, int(np.prod(out["shape"][1:]))
        )
        self._input_index, self._output_index = inp["index"], out["index"]
        self._input_dtype = np.dtype(inp["dtype"])
        self._input_scale, self._input_zero = inp["quantization"]
        self._output_scale, self._output_zero = out["quantization"]
        self.labels = bundle.labels

    def to_tensor(self, pixels: np.ndarray) -> np.ndarray:
        """Model-sized uint8 pixels (0..255 real values) -> the input tensor, quantized as the model asks."""
        real = pixels.astype(np.float32)
        if self._input_dtype == np.float32:
            tensor = real
        elif self._input_scale == 1.0 and self._input_zero == 0 and self._input_dtype == np.uint8:
            tensor = pixels
        else:
            info = np.iinfo(self._input_dtype)
            quantized = np.round(real / self._input_scale + self._input_zero)
            tensor = np.clip(quantized, info.min, info.max).astype(self._input_dtype)
        return tensor[np.newaxis]

    def classify(self, image_bgr: np.ndarray) -> np.ndarray:
        """Scores (one per label, float32) for a BGR crop of any size."""
        return self.classify_pixels(fit_to_input(image_bgr, self.bundle.metadata.input))

    def classify_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Scores for pixels already fitted to the model input (see `edge.preprocess.fit_to_input`)."""
        self._interpreter.set_tensor(self._input_index, self.to_tensor(pixels))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output_index)[0]
        if np.issubdtype(raw.dtype, np.integer):
            return ((raw.astype(np.float32) - self._output_zero) * self._output_scale).astype(np.float32)
        return raw.astype(np.float32)


@contextlib.contextmanager
def _runtime_notices_to_debug_log() -> Iterator[None]:
    """The runtime's C++ code prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to
    file descriptor 2 on every model load, with no switch to turn it off. Catch fd 2 while loading, log
    INFO lines at DEBUG and pass everything else (warnings, other threads' output) through unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", errors="replace").splitlines(keepends=True):
                if line.startswith("INFO: "):
                    log.debug("runtime: %s", line.strip())
                else:
                    sys.stderr.write(line)
            sys.stderr.flush()


def classify_files(classifier: Classifier, paths: Iterable[Path]) -> Iterator[tuple[Path, np.ndarray | None, str]]:
    """(path, scores, "") per image file, or (path, None, "path: reason") for one that cannot be read: one
    bad file never stops a commissioning run."""
    for path in paths:
        try:
            yield path, classifier.classify(decode_image(str(path))), ""
        except ValueError as exc:  # decode_image's message names the file
            yield path, None, str(exc)
        except OSError as exc:
            yield path, None, f"{path}: {exc.strerror or exc}"
