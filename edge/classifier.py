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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import BundleError, ModelBundle
from edge.familiarity import FamiliarityCheck
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


@dataclass(frozen=True)
class Assessment:
    """What the model says of one crop: a score per label, and how unlike the training data the crop is
    (`FamiliarityCheck.novelty`: above 1, or above its top label's tighter limit, reject whatever the scores
    (`edge.decision.lane_label`); None when the bundle has no check)."""

    scores: np.ndarray
    novelty: float | None = None


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
        outputs = self._interpreter.get_output_details()
        sizes = [int(np.prod(out["shape"][1:])) for out in outputs]
        bundle.check_model_io(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]).name, sizes)
        scores_at = sizes.index(len(bundle.labels))
        self._scores_output = outputs[scores_at]
        self._embedding_output = outputs[1 - scores_at] if len(outputs) == 2 else None
        self._familiarity = FamiliarityCheck(bundle) if bundle.metadata.familiarity else None
        self._input_index = inp["index"]
        self._input_dtype = np.dtype(inp["dtype"])
        self._input_scale, self._input_zero = inp["quantization"]
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
        return self.assess(image_bgr).scores

    def assess(self, image_bgr: np.ndarray) -> Assessment:
        """Scores and novelty for a BGR crop of any size."""
        return self.assess_pixels(fit_to_input(image_bgr, self.bundle.metadata.input))

    def assess_pixels(self, pixels: np.ndarray) -> Assessment:
        """Scores and novelty for pixels already fitted to the model input (see `edge.preprocess.fit_to_input`)."""
        scores, embedding = self.outputs_pixels(pixels)
        if self._familiarity is None or embedding is None:
            return Assessment(scores)
        return Assessment(scores, self._familiarity.novelty(embedding))

    def outputs_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's raw outputs for fitted pixels: scores, and its embedding (None for a single-output model).
        The trainer reads the training images' embeddings this way, through the int8 model the edge runs."""
        self._interpreter.set_tensor(self._input_index, self.to_tensor(pixels))
        self._interpreter.invoke()
        embedding = None if self._embedding_output is None else self._read(self._embedding_output)
        return self._read(self._scores_output), embedding

    def _read(self, output: dict) -> np.ndarray:
        raw = self._interpreter.get_tensor(output["index"])[0]
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero = output["quantization"]
            return ((raw.astype(np.float32) - zero) * scale).astype(np.float32)
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


def classify_files(classifier: Classifier, paths: Iterable[Path]) -> Iterator[tuple[Path, Assessment | None, str]]:
    """(path, assessment, "") per image file, or (path, None, "path: reason") for one that cannot be read: one
    bad file never stops a commissioning run."""
    for path in paths:
        try:
            yield path, classifier.assess(decode_image(str(path))), ""
        except ValueError as exc:  # decode_image's message names the file
            yield path, None, str(exc)
        except OSError as exc:
            yield path, None, f"{path}: {exc.strerror or exc}"
