"""What presence mode learned of the line kept across restarts (edge.line_memory), its items' lengths and the empty
belt: written atomically and seldom, read back only for the view they were measured in, and an unreadable file
costs a relearning, never the daemon."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge.item_lengths import CHANGEOVER_AFTER, KEPT, LEARN_FROM, ItemLengths
from edge.line_memory import BELT_EVERY_S, BELT_FILE_NAME, EVERY_S, FILE_NAME, LineMemory
from edge.presence import EmptyBelt

VIEW = ((640, 480), 0)
BELT_VIEW = ((640, 480), (0, 40, 640, 440))  # frame size, ROI box
HOUR = 3600.0


def a_belt(level: float = 80.0) -> EmptyBelt:
    rng = np.random.default_rng(0)
    mean = (level + rng.normal(0, 5, (100, 160, 3))).astype(np.float32)
    return EmptyBelt(mean, rng.uniform(0.5, 3.0, mean.shape).astype(np.float32), gain=0.93)


def test_kept_lengths_come_back_for_the_same_view_only(tmp_path: Path):
    LineMemory(tmp_path).keep(*VIEW, [120, 130, 125], now=0.0)

    memory = LineMemory(tmp_path)  # the next start
    assert memory.recall(*VIEW) == [120, 130, 125]
    assert memory.recall((1280, 720), 0) == []  # another camera size: other pixels
    assert memory.recall((640, 480), 1) == []  # travel along the other axis
    assert not [p.name for p in tmp_path.iterdir() if p.name != FILE_NAME]  # no temporary file left


def test_the_belts_velocity_comes_back_for_the_same_camera_size_only(tmp_path: Path):
    memory = LineMemory(tmp_path)
    assert memory.recall_velocity((640, 480)) is None
    memory.keep(*VIEW, [120], now=0.0)  # measured before the velocity was kept: none
    assert memory.recall_velocity((640, 480)) is None
    memory.keep(*VIEW, [120], now=0.0, at_once=True, velocity=(352.456, -3.0))
    assert LineMemory(tmp_path).recall_velocity((640, 480)) == (352.46, -3.0)
    assert LineMemory(tmp_path).recall_velocity((1280, 720)) is None


def test_writes_are_spaced_out_but_shutdown_writes_at_once(tmp_path: Path):
    memory = LineMemory(tmp_path)
    assert memory.keep(*VIEW, [100] * 5, now=1000.0)
    assert not memory.keep(*VIEW, [100] * 6, now=1000.0 + EVERY_S / 2)  # an SD card is not written each item
    assert len(LineMemory(tmp_path).recall(*VIEW)) == 5
    assert memory.keep(*VIEW, [100] * 7, now=1000.0 + EVERY_S / 2, at_once=True)
    assert len(LineMemory(tmp_path).recall(*VIEW)) == 7


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"frame_size": [640, 480], "axis": 0, "item_lengths": [100, -5]}), '["a list"]', "\xff"],
)
def test_an_unreadable_file_means_learning_again_not_a_crash(tmp_path: Path, content: str, caplog):
    (tmp_path / FILE_NAME).write_text(content, encoding="latin-1")
    with caplog.at_level(logging.ERROR):
        assert LineMemory(tmp_path).recall(*VIEW) == []
    assert str(tmp_path / FILE_NAME) in caplog.text and "learning them again" in caplog.text


def test_without_a_state_directory_nothing_is_kept(tmp_path: Path):
    memory = LineMemory(None)
    assert not memory.keep(*VIEW, [100] * 5, now=0.0, at_once=True)
    assert memory.recall(*VIEW) == []
    assert not memory.keep_belt(BELT_VIEW, a_belt(), now=0.0, at_once=True)
    assert memory.recall_belt(BELT_VIEW, HOUR) is None


def test_the_kept_belt_comes_back_for_the_same_view_only_and_not_when_old(tmp_path: Path, monkeypatch):
    belt = a_belt()
    LineMemory(tmp_path).keep_belt(BELT_VIEW, belt, now=0.0)

    kept = LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR)  # the next start
    assert kept is not None and kept.gain == belt.gain
    assert np.allclose(kept.mean, belt.mean, atol=0.13) and np.allclose(kept.spread, belt.spread, atol=0.002)
    assert LineMemory(tmp_path).recall_belt(((1280, 720), (0, 40, 640, 440)), HOUR) is None  # another camera
    assert LineMemory(tmp_path).recall_belt(((640, 480), (0, 0, 640, 480)), HOUR) is None  # the ROI moved
    assert not [p.name for p in tmp_path.iterdir() if p.name != BELT_FILE_NAME]  # no temporary file left
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + HOUR + 60)  # down for over an hour: anything may have changed
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR) is None
    monkeypatch.setattr(time, "time", lambda: now - 600)  # a clock set back: the age is unknown
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR) is None


def test_the_kept_belt_keeps_how_its_bands_slant_and_an_older_file_reads_as_straight(tmp_path: Path):
    # a restart under a camera rolled over a modular belt knows the hinges' slant from the first frame (read
    # afresh, a hinge seen before the fifth reading was an item: 13 decisions for 12, session 43)
    belt = a_belt()
    LineMemory(tmp_path).keep_belt(BELT_VIEW, EmptyBelt(belt.mean, belt.spread, belt.gain, (0.04, 0.0)), now=0.0)
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR).slants == (0.04, 0.0)

    # kept before session 43: no slants
    (tmp_path / BELT_FILE_NAME).write_bytes(_npz(**GOOD, gain=np.float64(1.0), kept_at=np.float64(time.time())))
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR).slants == (0.0, 0.0)


def test_the_belt_is_written_seldom_but_at_once_at_shutdown(tmp_path: Path):
    memory = LineMemory(tmp_path)
    assert memory.keep_belt(BELT_VIEW, a_belt(80.0), now=1000.0)
    assert not memory.keep_belt(BELT_VIEW, a_belt(90.0), now=1000.0 + BELT_EVERY_S / 2)
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR).mean.mean() == pytest.approx(80.0, abs=0.1)
    assert memory.keep_belt(BELT_VIEW, a_belt(90.0), now=1000.0 + BELT_EVERY_S / 2, at_once=True)
    assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR).mean.mean() == pytest.approx(90.0, abs=0.1)


def _npz(**arrays: np.ndarray) -> bytes:
    data = io.BytesIO()
    np.savez(data, **arrays)
    return data.getvalue()


GOOD = {"view": np.array([640, 480, 0, 40, 640, 440]), "mean": np.full((4, 4, 3), 80.0), "spread": np.ones((4, 4, 3))}


@pytest.mark.parametrize(
    "content",
    [
        b"PK\x03\x04 cut short",  # a zip's start, the rest lost
        b"not a belt at all",
        _npz(**GOOD),  # no gain nor time kept
        _npz(**GOOD, gain=np.float64(1.0), kept_at=np.float64(0.0)),  # kept in 1970: too old to trust
        _npz(**{**GOOD, "mean": np.full((4, 4, 3), np.nan)}, gain=np.float64(1.0), kept_at=np.float64(time.time())),
        _npz(**{**GOOD, "spread": np.ones((4, 4))}, gain=np.float64(1.0), kept_at=np.float64(time.time())),
        _npz(**GOOD, gain=np.float64(0.0), kept_at=np.float64(time.time())),
        _npz(**GOOD, gain=np.array([object()], dtype=object), kept_at=np.float64(time.time())),  # pickled
        _npz(**GOOD, gain=np.float64(1.0), slants=np.array([0.04]), kept_at=np.float64(time.time())),
        _npz(**GOOD, gain=np.float64(1.0), slants=np.float64(0.04), kept_at=np.float64(time.time())),
        _npz(**GOOD, gain=np.float64(1.0), slants=np.array([np.nan, 0.0]), kept_at=np.float64(time.time())),
    ],
)
def test_an_unreadable_belt_means_learning_it_again_not_a_crash(tmp_path: Path, content: bytes, caplog):
    (tmp_path / BELT_FILE_NAME).write_bytes(content)
    with caplog.at_level(logging.INFO):
        assert LineMemory(tmp_path).recall_belt(BELT_VIEW, HOUR) is None
    assert str(tmp_path / BELT_FILE_NAME) in caplog.text and "learning it again" in caplog.text


def test_a_run_of_too_long_items_is_a_changeover_a_pair_now_and_then_is_not():
    lengths = ItemLengths([100] * KEPT)
    for _ in range(3):  # pairs laid touching now and then, single items between them
        for _ in range(CHANGEOVER_AFTER - 1):
            lengths.too_long(200)
        lengths.single(100)
    assert lengths.usual == 100 and lengths.changeovers == 0

    for length in (240, 250, 260, 250, 245)[:CHANGEOVER_AFTER]:  # a longer product, item after item
        lengths.too_long(length)
    assert lengths.changeovers == 1 and lengths.usual == 250 and lengths.longest is None  # learning it again
    assert len(lengths.singles) == CHANGEOVER_AFTER >= LEARN_FROM  # trusted at once
