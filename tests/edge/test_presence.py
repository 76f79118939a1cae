"""Presence detection on a synthetic conveyor clip with known items, and on controlled frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_helpers import product_photos

from demo.conveyor import ClipItem, write_conveyor_clip
from edge.camera import Camera, crop_roi
from edge.config import CameraSettings, PresenceSettings, Roi
from edge.presence import PresenceDetector, PresenceEvent

E = PresenceEvent


@pytest.fixture(scope="module")
def conveyor(tmp_path_factory) -> tuple[Path, list[ClipItem]]:
    folder = tmp_path_factory.mktemp("conveyor")
    items = write_conveyor_clip(folder / "belt.avi", product_photos(folder, 4), size=(320, 240), seed=3)
    return folder / "belt.avi", items


def run_detector(clip: Path, presence: PresenceSettings, roi: Roi | None = None) -> list[tuple[E, float]]:
    """Every frame of the clip through Camera -> crop_roi -> detector, as the daemon does it."""
    camera = Camera(CameraSettings(source=str(clip), realtime=False))
    detector = PresenceDetector(presence)
    events = []
    camera.start()
    try:
        while (frame := camera.next_frame(timeout=5)) is not None:
            events.append((detector.update(crop_roi(frame.image, roi)), detector.changed_fraction))
    finally:
        camera.stop()
    assert camera.ended
    return events


def test_one_entered_and_one_left_per_item_at_the_right_frames(conveyor):
    clip, items = conveyor
    events = run_detector(clip, PresenceSettings())

    marks = [(index, event) for index, (event, _) in enumerate(events) if event in (E.ENTERED, E.LEFT)]
    assert [event for _, event in marks] == [E.ENTERED, E.LEFT] * len(items)
    for item, (entered, _), (left, _) in zip(items, marks[::2], marks[1::2], strict=True):
        # enter once ~8 % of the ROI is covered plus the 2-frame debounce; leave when almost gone
        assert item.first_frame <= entered <= item.first_frame + 7, (item, entered)
        assert item.last_frame - 4 <= left <= item.last_frame + 1, (item, left)
        assert all(event is E.PRESENT for event, _ in events[entered + 1 : left])
    settings = PresenceSettings()
    assert [event for event, _ in events[: settings.background_frames]] == [E.LEARNING] * settings.background_frames


def test_empty_belt_with_flicker_and_noise_gives_no_event(tmp_path):
    clip = tmp_path / "empty.avi"
    write_conveyor_clip(clip, [], size=(320, 240), lead_frames=120, seed=7)
    settings = PresenceSettings()

    events = run_detector(clip, settings)[settings.background_frames :]

    assert len(events) == 120 - settings.background_frames
    assert {event for event, _ in events} == {E.EMPTY}
    assert max(fraction for _, fraction in events) < settings.leave_fraction


def test_roi_restricts_detection_to_the_belt_area(conveyor):
    clip, items = conveyor
    whole = [i for i, (event, _) in enumerate(run_detector(clip, PresenceSettings())) if event is E.ENTERED]
    # the right half of the belt: each item enters it only after crossing the left half
    right = run_detector(clip, PresenceSettings(), Roi(x=0.5, y=0, width=0.5, height=1))
    entered = [i for i, (event, _) in enumerate(right) if event is E.ENTERED]
    assert len(entered) == len(whole) == len(items)
    assert all(half - full >= 8 for half, full in zip(entered, whole, strict=True)), (entered, whole)
    # a strip along the top rail, above the items' path: nothing ever enters it
    rail = run_detector(clip, PresenceSettings(), Roi(x=0, y=0, width=1, height=0.06))
    assert E.ENTERED not in {event for event, _ in rail}


def belt(level: float, size: tuple[int, int] = (240, 320), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.normal(0, 3, (*size, 3)), 0, 255).astype(np.uint8)


def with_item(image: np.ndarray, width_fraction: float = 0.4) -> np.ndarray:
    image = image.copy()
    height, width = image.shape[:2]
    cv2.rectangle(image, (40, height // 5), (40 + int(width * width_fraction), 4 * height // 5), (235, 235, 230), -1)
    return image


def learned(settings: PresenceSettings, level: float = 70) -> PresenceDetector:
    detector = PresenceDetector(settings)
    for index in range(settings.background_frames):
        assert detector.update(belt(level, seed=index)) is E.LEARNING
    return detector


def test_background_follows_slow_lighting_drift_but_never_absorbs_an_item():
    settings = PresenceSettings()
    detector = learned(settings)

    # light drifts up by 60 grey levels, far more than pixel_delta, over 300 frames: no item appears
    ramp = [detector.update(belt(70 + 60 * i / 300, seed=i)) for i in range(300)]
    assert set(ramp) == {E.EMPTY}

    # an item that stops under the camera for a long time stays present, it is not learned as belt
    stopped = with_item(belt(130))
    events = [detector.update(stopped) for _ in range(200)]
    assert events[:2] == [E.EMPTY, E.ENTERED]
    assert set(events[2:]) == {E.PRESENT}
    assert detector.update(belt(130, seed=1)) is E.LEFT
    assert detector.update(belt(130, seed=2)) is E.EMPTY


def test_debounce_and_hysteresis():
    settings = PresenceSettings(min_frames=3, enter_fraction=0.2, leave_fraction=0.05)
    detector = learned(settings)
    empty, item = belt(70, seed=99), with_item(belt(70, seed=98), 0.4)

    # a two-frame blip (a hand, a reflection) is below the three-frame debounce
    assert [detector.update(f) for f in (item, item, empty)] == [E.EMPTY, E.EMPTY, E.EMPTY]
    assert [detector.update(item) for _ in range(3)] == [E.EMPTY, E.EMPTY, E.ENTERED]

    # between the thresholds the item still counts as present: no flapping
    partly = with_item(belt(70, seed=97), 0.12)
    detector.update(partly)
    assert settings.leave_fraction < detector.changed_fraction < settings.enter_fraction
    assert detector.update(partly) is E.PRESENT
    assert detector.update(empty) is E.LEFT
    # and below enter_fraction nothing enters again
    assert [detector.update(partly) for _ in range(5)] == [E.EMPTY] * 5


def test_item_crossing_during_learning_is_not_learned():
    settings = PresenceSettings(background_frames=9)
    detector = PresenceDetector(settings)
    frames = [with_item(belt(70, seed=i)) if i in (3, 4, 5) else belt(70, seed=i) for i in range(9)]
    assert [detector.update(f) for f in frames] == [E.LEARNING] * 9
    assert detector.update(belt(70, seed=50)) is E.EMPTY
    assert detector.changed_fraction < 0.01


def test_roi_size_change_relearns_and_bad_input_is_refused():
    detector = learned(PresenceSettings(background_frames=3))
    assert detector.update(belt(70, size=(200, 320))) is E.LEARNING  # another aspect ratio
    with pytest.raises(ValueError, match="HxWx3"):
        detector.update(np.zeros((240, 320), np.uint8))


def test_sudden_light_change_is_relearned_after_a_still_period():
    settings = PresenceSettings(relearn_after_frames=20, background_frames=5)
    detector = learned(settings)
    brighter = [belt(140, seed=100 + i) for i in range(30)]  # lights switched on: everything differs at once

    events = [detector.update(frame) for frame in brighter]

    assert events[:2] == [E.EMPTY, E.ENTERED]
    left = events.index(E.LEFT)
    assert set(events[2:left]) == {E.PRESENT} and left == 2 + settings.relearn_after_frames
    assert events[left + 1 : left + 6] == [E.LEARNING] * 5
    assert events[left + 6 :] == [E.EMPTY] * (len(events) - left - 6)


def test_a_moving_item_is_never_relearned():
    settings = PresenceSettings(relearn_after_frames=5)
    detector = learned(settings)
    empty = belt(70, seed=1)
    # an item sliding slowly across the ROI for far longer than relearn_after_frames
    frames = []
    for step in range(60):
        frame = empty.copy()
        cv2.rectangle(frame, (step * 3, 60), (step * 3 + 120, 180), (235, 235, 230), -1)
        frames.append(frame)
    events = [detector.update(frame) for frame in frames]
    assert events.count(E.ENTERED) == 1 and E.LEFT not in events
