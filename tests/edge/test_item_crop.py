"""Presence mode frames each item like a product photo: its box, whether it is in full view, and two items
in view at once as two items."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import PresenceSettings
from edge.presence import ItemView, PresenceDetector, PresenceEvent
from edge.tracking import BeltTracker

ITEM = (230, 200, 60)


def belt(rng: np.random.Generator) -> np.ndarray:
    return np.clip(70 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)


def with_item(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    frame = frame.copy()
    frame[y0:y1, x0:x1] = ITEM
    return frame


@pytest.fixture
def detector() -> PresenceDetector:
    rng = np.random.default_rng(0)
    detector = PresenceDetector(PresenceSettings(background_frames=5, min_frames=1))
    for _ in range(5):
        assert detector.update(belt(rng)) is PresenceEvent.LEARNING
    return detector


def test_item_box_follows_the_item_and_full_view_excludes_the_edges(detector: PresenceDetector) -> None:
    rng = np.random.default_rng(1)
    assert detector.update(with_item(belt(rng), 100, 40, 220, 200)) is PresenceEvent.ENTERED
    (view,) = detector.items
    assert view.box == (100, 40, 220, 200)  # to the pixel, at the frame's own resolution
    assert view.in_full_view

    assert detector.update(with_item(belt(rng), 0, 40, 90, 200)) is PresenceEvent.PRESENT
    (view,) = detector.items
    assert view.box[0] == 0
    assert not view.in_full_view  # still entering from the left: not framed yet


def test_the_box_hugs_an_item_that_is_not_a_rectangle(detector: PresenceDetector) -> None:
    frame = belt(np.random.default_rng(2))
    frame[50:190, 120:160] = ITEM  # a trouser leg ...
    frame[50:80, 100:181] = ITEM  # ... under a waistband
    detector.update(frame)
    (view,) = detector.items
    assert view.box == (100, 50, 181, 190)
    assert view.centred == pytest.approx(1 - (160 - 140.5) / 160)  # box centre 140.5 in a 320-px ROI


def test_two_items_apart_on_the_belt_are_two_items_with_their_own_boxes(detector: PresenceDetector) -> None:
    detector.update(with_item(with_item(belt(np.random.default_rng(3)), 20, 60, 90, 180), 200, 70, 290, 170))
    assert [view.box for view in detector.items] == [(20, 60, 90, 180), (200, 70, 290, 170)]


def view(x0: int, x1: int) -> ItemView:
    return ItemView((x0, x1), (x0 * 4, 0, x1 * 4, 100), x0 > 0 and x1 < 160, 0.5)


def test_the_tracker_follows_items_along_the_belt_and_tells_when_each_enters_and_leaves() -> None:
    tracker = BeltTracker(min_frames=2, leave_frames=1, reach=8)
    assert tracker.update([view(0, 30)]) == ([], [])  # seen once: not an item yet (debounce)
    entered, _ = tracker.update([view(6, 36)])
    first = entered[0]
    entered, _ = tracker.update([view(12, 42), view(100, 130)])  # a second one appears further on
    assert entered == [] and len(tracker.tracks) == 2
    entered, _ = tracker.update([view(18, 48), view(106, 136)])
    assert entered == [tracker.tracks[1]] and tracker.tracks[1] is not first
    assert tracker.update([view(112, 142)]) == ([], [])  # the first one unseen once: may be a flicker
    entered, left = tracker.update([view(118, 148)])
    assert left == [first] and [t.view.span for t in tracker.tracks] == [(118, 148)]


def test_two_items_that_touch_are_marked_while_they_touch() -> None:
    tracker = BeltTracker(min_frames=1, leave_frames=1, reach=4)
    tracker.update([view(10, 40), view(60, 90)])
    tracker.update([view(10, 90)])  # one span over both
    assert [t.touching for t in tracker.tracks] == [True, True]
    tracker.update([view(12, 42), view(64, 94)])
    assert [t.touching for t in tracker.tracks] == [False, False] and len(tracker.tracks) == 2
