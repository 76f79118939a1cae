"""The ROI drawn on the page: kept in the state directory, taken by the frame loop once, never half-written."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from edge.camera import Frame
from edge.config import PresenceSettings, Roi
from edge.inference import InferenceWorker
from edge.items import ItemBook
from edge.modes.presence import PresenceMode
from edge.roi_override import RoiOverride

CONFIGURED = Roi(x=0.0, y=0.25, width=1.0, height=0.5)
DRAWN = Roi(x=0.1, y=0.2, width=0.6, height=0.7)


def test_a_drawn_roi_is_kept_and_used_after_a_restart(tmp_path: Path):
    override = RoiOverride(CONFIGURED, tmp_path / "state")
    assert (override.roi, override.source) == (CONFIGURED, "config")

    override.request(DRAWN)
    assert override.changing and override.roi == CONFIGURED  # not yet: the frame loop takes it between items
    assert override.take_change() == (True, DRAWN)
    assert override.take_change() == (False, None) and not override.changing
    assert (override.roi, override.source) == (DRAWN, "page")
    assert json.loads((tmp_path / "state" / "roi.json").read_text())["roi"] == DRAWN.model_dump()
    assert not [p.name for p in (tmp_path / "state").iterdir() if p.name != "roi.json"]  # no temporary left

    restarted = RoiOverride(CONFIGURED, tmp_path / "state")
    assert (restarted.roi, restarted.source, restarted.problem) == (DRAWN, "page", None)


def test_a_write_killed_before_its_rename_leaves_the_kept_roi_and_is_cleaned_up(tmp_path: Path):
    RoiOverride(CONFIGURED, tmp_path).request(DRAWN)
    (tmp_path / ".roi-k1ll3d.json").write_text('{"roi": {"x": 0.3')  # SIGKILL between write and rename
    restarted = RoiOverride(CONFIGURED, tmp_path)
    assert (restarted.roi, restarted.problem) == (DRAWN, None)
    assert [p.name for p in tmp_path.iterdir()] == ["roi.json"]


def test_going_back_to_the_config_removes_the_kept_roi(tmp_path: Path):
    override = RoiOverride(CONFIGURED, tmp_path)
    override.request(DRAWN)
    override.take_change()
    override.request(None)
    assert override.take_change() == (True, CONFIGURED)
    assert not (tmp_path / "roi.json").exists()
    assert RoiOverride(None, tmp_path).source == "whole frame"


def test_an_unreadable_kept_roi_is_reported_left_in_place_and_the_config_used(tmp_path: Path):
    for content, why in (
        ('{"roi": {"x": 0.5, "y": 0, "width": 0.9, "height": 1}', "Expecting"),  # cut short
        ('{"roi": {"x": 0.5, "y": 0, "width": 0.9, "height": 1}}', "x + width <= 1"),
        ('{"region": {}}', "no 'roi' in it"),
    ):
        (tmp_path / "roi.json").write_text(content)
        override = RoiOverride(CONFIGURED, tmp_path)
        assert override.roi == CONFIGURED and override.source == "config"
        assert (
            override.problem is not None and str(tmp_path / "roi.json") in override.problem and why in override.problem
        )
        assert (tmp_path / "roi.json").read_text() == content  # nothing anyone set is thrown away


def test_without_a_state_directory_the_roi_holds_until_the_daemon_stops(tmp_path: Path):
    override = RoiOverride(None, None)
    override.request(DRAWN)
    assert override.take_change() == (True, DRAWN)
    assert override.describe()["kept_in"] is None


def test_presence_mode_learns_the_belt_again_in_a_new_roi(tmp_path: Path):
    # a belt whose right half looks different (a darker band): as big as the left half, so only a mode that
    # learns the new region again does not take the difference for an item
    belt = np.full((100, 200, 3), 90, np.uint8)
    belt[:, 100:] = 40
    book = ItemBook(InferenceWorker(None), wait_s=1.0)  # type: ignore[arg-type]  # never started: nothing classified
    ids = iter(range(1, 100))
    mode = PresenceMode(PresenceSettings(), Roi(x=0, y=0, width=0.5, height=1), lambda: f"item-{next(ids)}")
    frames = (Frame(belt, index, float(index), float(index)) for index in range(1000))
    for frame in itertools.islice(frames, 40):
        mode.on_frame(frame, book)
    assert mode.idle() and len(book) == 0

    mode.use_roi(Roi(x=0.5, y=0, width=0.5, height=1))
    for frame in itertools.islice(frames, 40):
        mode.on_frame(frame, book)
    assert mode.idle() and len(book) == 0, "the new region's belt was taken for an item"
