"""Presence mode over a clip's every frame, in-process, with a stand-in item book that keeps each item's most
centred crop: what the belt benchmarks share (`bench/belt.py` times the detector with it, `bench/belt_crops.py`
keeps the crops, `bench/belt_restart.py` keeps the items closed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.camera import Frame
from edge.config import PresenceSettings
from edge.decision import ItemVote
from edge.items import Item
from edge.modes.presence import PresenceMode


class BestCrops:
    """Stands in for the daemon's item book: keeps each item's most centred crop instead of classifying."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.best: dict[str, tuple[float, np.ndarray]] = {}

    def open(self, item_id: str, first_seen: float | None = None) -> Item:
        item = Item(ItemVote(item_id=item_id, first_seen=first_seen or 0.0))
        self.items.append(item)
        return item

    def offer(self, item: Item, crop: np.ndarray, captured_at: float, quality: float = 0.0) -> None:
        if item.item_id not in self.best or quality > self.best[item.item_id][0]:
            self.best[item.item_id] = (quality, crop.copy())

    def close(self, item: Item, now: float | None = None) -> None:
        item.closed_at = now or 0.0


def harvest(clip: Path, fps: int, mode: PresenceMode | None = None) -> tuple[list[Item], dict[str, np.ndarray]]:
    """Presence mode (the product's, unless `mode` is given) over every frame of the clip; the items in order and
    each one's most centred crop."""
    counter = iter(range(1, 1_000_000))
    mode = mode or PresenceMode(PresenceSettings(), None, lambda: str(next(counter)))
    book = BestCrops()
    capture = cv2.VideoCapture(str(clip))
    seq = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        seq += 1
        mode.on_frame(Frame(image, seq, seq / fps, seq / fps), book)  # type: ignore[arg-type]
    capture.release()
    return book.items, {item_id: crop for item_id, (_, crop) in book.best.items()}
