"""Labelling the line's own crops: the crop store's files, moved into a labelled folder by label.

The crop store keeps the crops the model was unsure about, and any decision's crop sent to review from the
page, as ``<crops>/<top label>/<time>_<item>_<conf>.jpg``.
Labelled ones move to ``<labelled>/<label>/`` and get a row in ``<labelled>/manifest.csv`` (which crop, the
label given, the live model and what it said); ``<labelled>/line.json`` says which line (the device) and model
they came from, and marks the folder as a line's own crops for ``sortline-train``, which takes it beside the shop
photos.
Crops are named by their place in the store (``jeans/20261201T120000_ab12-3_55.jpg``) and each name is checked
against that shape and looked up inside the store, never joined into a path as given.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.crops import CropStore

_CROP_ID = re.compile(r"^(?P<top>[A-Za-z0-9_-]{1,64})/(?P<name>[A-Za-z0-9_.-]{1,160}\.jpg)$")
_NAME = re.compile(r"^(?P<time>\d{8}T\d{6})_(?P<item>.+)_(?P<confidence>\d{2,3})\.jpg$")
MANIFEST = "manifest.csv"
LINE_MARKER = "line.json"  # marks a data folder as a line's own crops for the trainer (`trainer.data`)
COLUMNS = ("file", "label", "item_id", "model", "model_said", "confidence", "labelled_at")


class ReviewError(ValueError):
    """A request naming a crop or label that is not there; the message says which."""


@dataclass(frozen=True)
class Crop:
    crop_id: str  # "<top label>/<file name>"
    path: Path
    top_label: str
    item_id: str
    confidence: float


class Review:
    def __init__(
        self, store: CropStore, labelled_dir: Path, labels: Callable[[], tuple[str, ...]], line: str = ""
    ) -> None:
        """`line`: the line's name (the device's id), written beside the crops."""
        assert store.settings.directory is not None, "review needs the crop store on"
        self.store, self.crops_dir, self.labelled_dir = store, store.settings.directory, labelled_dir
        self._labels, self.line = labels, line
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        """The live model's labels (a model rolled out later may bring others)."""
        return self._labels()

    def unsure(self, limit: int = 200) -> list[Crop]:
        """The crops waiting for a label, newest first."""
        if not self.crops_dir.is_dir():
            return []
        found = [crop for path in self.crops_dir.glob("*/*.jpg") if (crop := self._crop(path)) is not None]
        return sorted(found, key=lambda crop: crop.path.name, reverse=True)[:limit]

    def find(self, crop_id: str) -> Crop:
        match = _CROP_ID.match(crop_id)
        path = self.crops_dir / match["top"] / match["name"] if match else None
        crop = self._crop(path) if path is not None and path.is_file() else None
        if crop is None:
            raise ReviewError(f"no unsure crop {crop_id!r}")
        return crop

    def add(self, crop: np.ndarray, decision: dict[str, Any]) -> Crop:
        """A decision's crop sent to review from the page (a confident wrong lane is the example most
        worth a label), saved beside the unsure ones."""
        top, confidence = decision.get("top_label"), decision.get("confidence")
        if top is None or confidence is None:
            raise ReviewError(f"decision {decision.get('item_id')!r} has no classified crop")
        path = self.store.keep(crop, top, confidence, decision["item_id"])
        found = self._crop(path) if path is not None else None
        if found is None:
            raise ReviewError(f"the crop of {decision['item_id']!r} could not be saved (see the daemon's log)")
        return found

    def label(self, crop_ids: list[str], label: str, model: str) -> int:
        """Move the crops into the labelled folder under ``label``; all or none (every id is checked first)."""
        labels = self.labels
        if label not in labels:
            raise ReviewError(f"unknown label {label!r}; the model's labels are {list(labels)}")
        with self._lock:
            crops = [self.find(crop_id) for crop_id in crop_ids]
            folder = self.labelled_dir / label
            folder.mkdir(parents=True, exist_ok=True)
            manifest = self.labelled_dir / MANIFEST
            new = not manifest.exists()
            with manifest.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(COLUMNS)
                labelled_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                for crop in crops:
                    crop.path.replace(folder / crop.path.name)
                    writer.writerow((f"{label}/{crop.path.name}", label, crop.item_id, model, crop.top_label,
                                     crop.confidence, labelled_at))  # fmt: skip
            marker = {"format": "sortline-line-crops-v1", "line": self.line, "model": model, "updated_at": labelled_at}
            (self.labelled_dir / LINE_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            return len(crops)

    def export(self) -> bytes:
        """The labelled folder as a .tar.gz (``labelled/<label>/*.jpg`` and ``labelled/manifest.csv``)."""
        buffer = io.BytesIO()
        with self._lock, tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            if self.labelled_dir.is_dir():
                archive.add(self.labelled_dir, arcname="labelled")
        return buffer.getvalue()

    def _crop(self, path: Path) -> Crop | None:
        named = _NAME.match(path.name)
        if named is None or path.parent.parent != self.crops_dir:
            return None
        return Crop(f"{path.parent.name}/{path.name}", path, path.parent.name, named["item"],
                    int(named["confidence"]) / 100)  # fmt: skip
