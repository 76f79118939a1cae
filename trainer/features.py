"""Outputs of the frozen layers, computed once per image and view and kept on disk.

The frozen part of the backbone is most of its compute (~90 % for VGG16). Training runs on its stored
outputs, so an epoch costs only the trainable layers, and a rerun after adding images computes just the
new ones. An entry is keyed by everything that changes it: image bytes, weights, input size, padding, cut
point, augmentation settings, seed and view number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from edge.bundle import InputSpec, sha256_file
from edge.preprocess import decode_image, fit_to_input
from trainer.augment import Augmentation, augment, view_seed
from trainer.data import DataSet, Sample

CACHE_LAYOUT = 1  # bump when the way pixels become features changes


def weights_identity(weights: str, seed: int) -> str:
    """What the frozen layers' numbers depend on: the weights file's hash, 'imagenet', or the init seed and the
    backend drawing from it (JAX and TensorFlow draw other random weights from one seed: a cache shared between
    them gave a TensorFlow run JAX's frozen features, and a model that never learnt)."""
    path = Path(weights).expanduser()
    if path.is_file():
        return f"file:{sha256_file(path)}"
    if weights == "none":
        return f"none:seed={seed}:backend={keras.backend.backend()}"
    return f"{weights}:keras={keras.__version__}"


def model_pixels(path: Path, spec: InputSpec) -> np.ndarray:
    """A data-set image as the edge would feed it (one code path with `edge.preprocess`)."""
    return fit_to_input(decode_image(str(path)), spec)


def view_pixels(path: Path, sample: Sample, view: int, spec: InputSpec, aug: Augmentation, seed: int) -> np.ndarray:
    """View 0 is the image as the edge sees it; views 1.. are seeded random augmentations of it."""
    pixels = model_pixels(path, spec)
    if view == 0:
        return pixels
    return augment(pixels, aug, np.random.default_rng(view_seed(seed, sample.sha256, view)), spec.pad_value)


class FeatureCache:
    def __init__(self, root: Path, key: dict) -> None:
        text = json.dumps({"layout": CACHE_LAYOUT, **key}, sort_keys=True)
        self.directory = Path(root) / hashlib.sha256(text.encode()).hexdigest()[:20]
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "key.json").write_text(text + "\n", encoding="utf-8")
        self.computed = 0
        self.reused = 0

    def load_caps(self) -> dict[str, float] | None:
        path = self.directory / "activation_caps.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def save_caps(self, caps: dict[str, float]) -> dict[str, float]:
        (self.directory / "activation_caps.json").write_text(json.dumps(caps, indent=1) + "\n", encoding="utf-8")
        return caps

    def entry(self, sample: Sample, view: int) -> Path:
        return self.directory / sample.sha256[:2] / f"{sample.sha256}-v{view}.npy"

    def features(
        self,
        data: DataSet,
        samples: list[Sample],
        views: int,
        frozen: keras.Model,
        spec: InputSpec,
        aug: Augmentation,
        seed: int,
        batch_size: int,
    ) -> np.ndarray:
        """(len(samples), views, *feature shape) float16; computes and stores only missing entries."""
        wanted = [(s, v) for s in samples for v in range(views)]
        missing = [(s, v) for s, v in wanted if not self.entry(s, v).is_file()]
        self.reused += len(wanted) - len(missing)
        self.computed += len(missing)
        with tqdm(total=len(missing), desc="frozen-layer features", unit="view", disable=not missing) as bar:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                pixels = np.stack([view_pixels(data.path(s), s, v, spec, aug, seed) for s, v in chunk])
                outputs = frozen.predict_on_batch(pixels.astype(np.float32))
                for (s, v), out in zip(chunk, np.asarray(outputs), strict=True):
                    _atomic_save(self.entry(s, v), out.astype(np.float16))
                bar.update(len(chunk))
        return np.stack([np.stack([np.load(self.entry(s, v)) for v in range(views)]) for s in samples])


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write then rename, so an interrupted run never leaves a truncated entry behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        np.save(handle, array)
    partial.replace(path)
