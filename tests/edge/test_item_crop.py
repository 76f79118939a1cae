"""Presence mode frames the item like a product photo: its box, and whether it is in full view."""

from __future__ import annotations

import numpy as np
import pytest

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
    assert detector.item_box == (100, 40, 220, 200)  # to the pixel, at the frame's own resolution
    assert detector.item_in_full_view and detector.items_in_view == 1

    assert detector.update(with_item(belt(rng), 0, 40, 90, 200)) is PresenceEvent.PRESENT
    assert detector.item_box[0] == 0
    assert not detector.item_in_full_view  # still entering from the left: not framed yet


def test_the_box_hugs_an_item_that_is_not_a_rectangle_and_two_items_are_counted() -> None:
    rng = np.random.default_rng(1)
    detector = PresenceDetector(PresenceSettings(background_frames=5, min_frames=1))
    for _ in range(5):
        detector.update(belt(rng))
    frame = belt(rng)
    frame[50:190, 120:160] = (230, 200, 60)  # a trouser leg ...
    frame[50:80, 100:181] = (230, 200, 60)  # ... under a waistband
    assert detector.update(frame) is PresenceEvent.ENTERED
    assert detector.item_box == (100, 50, 181, 190)
    assert detector.centred == pytest.approx(1 - (160 - 140.5) / 160)  # box centre 140.5 in a 320-px ROI

    two = with_item(with_item(belt(rng), 20, 60, 90, 180), 200, 60, 290, 180)
    detector.update(two)
    assert detector.items_in_view == 2  # belt between them: two items, not one
