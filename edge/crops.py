"""Low-confidence crops kept for retraining, inside a fixed disk budget (oldest deleted first)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.config import CropSettings
from edge.preprocess import encode_jpeg

log = logging.getLogger(__name__)


class CropStore:
    def __init__(self, settings: CropSettings) -> None:
        self.settings = settings
        self.saved = 0
        self._budget = int(settings.max_megabytes * 1024 * 1024)
        if settings.directory is not None:
            settings.directory.mkdir(parents=True, exist_ok=True)

    def offer(self, crop_bgr: np.ndarray, top_label: str, confidence: float, item_id: str) -> Path | None:
        """Save the crop when the decision was unsure; a failure to write is logged, never raised."""
        if self.settings.directory is None or confidence >= self.settings.below_confidence:
            return None
        return self.keep(crop_bgr, top_label, confidence, item_id)

    def keep(self, crop_bgr: np.ndarray, top_label: str, confidence: float, item_id: str) -> Path | None:
        """Save the crop whatever the confidence (a decision sent to review from the page); None when saving
        is off or failed (logged)."""
        if self.settings.directory is None:
            return None
        folder = self.settings.directory / top_label
        path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}_{_safe(item_id)}_{int(confidence * 100):02d}.jpg"
        try:
            folder.mkdir(exist_ok=True)
            path.write_bytes(encode_jpeg(crop_bgr, quality=92))
            self._enforce_budget()
        except (OSError, ValueError) as exc:
            log.warning("could not save low-confidence crop %s: %s", path, exc)
            return None
        self.saved += 1
        return path

    def _enforce_budget(self) -> None:
        files = sorted(self.settings.directory.glob("*/*.jpg"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for oldest in files:
            if total <= self._budget:
                break
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


def _safe(text: str) -> str:
    """Item ids come from the PLC: keep them out of path syntax."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:64] or "item"
