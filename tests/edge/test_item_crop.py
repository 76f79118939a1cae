"""Presence mode frames the item like a product photo: its box, and whether it is in full view."""

from __future__ import annotations

import numpy as np

from edge.config import PresenceSettings
from edge.presence import PresenceDetector, PresenceEvent


def belt(rng: np.random.Generator) -> np.ndarray:
    return np.clip(70 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)


def with_item(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    frame = frame.copy()
    frame[y0:y1, x0:x1] = (230, 200, 60)
    return frame


def test_item_box_follows_the_item_and_full_view_excludes_the_edges() -> None:
    rng = np.random.default_rng(0)
    detector = PresenceDetector(PresenceSettings(background_frames=5, min_frames=1))
    for _ in range(5):
        assert detector.update(belt(rng)) is PresenceEvent.LEARNING
    assert detector.update(with_item(belt(rng), 100, 40, 220, 200)) is PresenceEvent.ENTERED
    x0, y0, x1, y1 = detector.item_box
    assert abs(x0 - 100) <= 6 and abs(y0 - 40) <= 6 and abs(x1 - 220) <= 6 and abs(y1 - 200) <= 6
    assert detector.item_in_full_view

    assert detector.update(with_item(belt(rng), 0, 40, 90, 200)) is PresenceEvent.PRESENT
    assert detector.item_box[0] == 0
    assert not detector.item_in_full_view  # still entering from the left: not framed yet
