"""Low-confidence crops kept for retraining, inside a fixed disk budget (oldest deleted first).

The frame loop never touches the disk: it hands crops to a writer thread (a few may wait; more are
dropped and counted, as a full or slow disk must not slow the line). The page saves a crop sent to review
itself, through the same lock. Failures are counted and the last one is kept for the stats topic.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np

from edge.config import CropSettings
from edge.preprocess import encode_jpeg

log = logging.getLogger(__name__)

WAITING = 16  # crops waiting for the writer; one more is dropped


class CropStore:
    def __init__(self, settings: CropSettings) -> None:
        self.settings = settings
        self.saved = 0
        self.failed = 0
        self.last_error: str | None = None  # why the last save failed; None once one succeeds again
        self._budget = int(settings.max_megabytes * 1024 * 1024)
        self._lock = threading.Lock()  # the writer thread and the page both save
        self._waiting: queue.Queue[tuple[np.ndarray, str, float, str] | None] = queue.Queue(maxsize=WAITING)
        self._writer = threading.Thread(target=self._write, name="crops", daemon=True)
        self._total = 0  # bytes in the store, kept up as crops are saved; measured again when over budget
        if settings.directory is not None:
            settings.directory.mkdir(parents=True, exist_ok=True)
            self._total = sum(size for _, size, _ in self._files())

    def start(self) -> None:
        self._writer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Save what is waiting (within ``timeout``), then stop the writer."""
        if self._writer.is_alive():
            self._waiting.put(None)
            self._writer.join(timeout)

    def offer(self, crop_bgr: np.ndarray, top_label: str, confidence: float, item_id: str) -> None:
        """From the frame loop: have the crop saved when the decision was unsure; never blocks."""
        if self.settings.directory is None or confidence >= self.settings.below_confidence:
            return
        try:
            self._waiting.put_nowait((crop_bgr, top_label, confidence, item_id))
        except queue.Full:
            self._failed(f"crop of {item_id} dropped: {WAITING} crops are waiting for the disk")

    def keep(self, crop_bgr: np.ndarray, top_label: str, confidence: float, item_id: str) -> Path | None:
        """Save the crop whatever the confidence (also a decision sent to review from the page); None when
        saving is off or failed (counted, logged)."""
        if self.settings.directory is None:
            return None
        folder = self.settings.directory / top_label
        path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}_{_safe(item_id)}_{int(confidence * 100):02d}.jpg"
        with self._lock:
            try:
                data = encode_jpeg(crop_bgr, quality=92)
                folder.mkdir(exist_ok=True)
                path.write_bytes(data)
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)  # a full disk leaves a truncated file behind
                self._failed(f"could not save crop {path}: {getattr(exc, 'strerror', None) or exc}")
                return None
            self.saved += 1
            self.last_error = None
            self._total += len(data)
            if self._total > self._budget:
                self._enforce_budget()
        return path

    def _write(self) -> None:
        while (crop := self._waiting.get()) is not None:
            self.keep(*crop)

    def _failed(self, message: str) -> None:
        self.failed += 1
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def _enforce_budget(self) -> None:
        """Delete the oldest crops until the store fits its budget again (measured afresh: the page moves
        labelled crops out of it)."""
        files = sorted(self._files())
        self._total = sum(size for _, size, _ in files)
        for _, size, oldest in files:
            if self._total <= self._budget:
                break
            oldest.unlink(missing_ok=True)
            self._total -= size

    def _files(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every crop; one moved away meanwhile is skipped."""
        assert self.settings.directory is not None
        found = []
        for path in self.settings.directory.glob("*/*.jpg"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append((stat.st_mtime, stat.st_size, path))
        return found


def _safe(text: str) -> str:
    """Item ids come from the PLC: keep them out of path syntax."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:64] or "item"
