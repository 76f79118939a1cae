"""The line's item lengths kept across restarts (edge.line_memory): written atomically and seldom, read back only
for the view they were measured in, and an unreadable file costs a relearning, never the daemon."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge.item_lengths import CHANGEOVER_AFTER, KEPT, LEARN_FROM, ItemLengths
from edge.line_memory import EVERY_S, FILE_NAME, LineMemory

VIEW = ((640, 480), 0)


def test_kept_lengths_come_back_for_the_same_view_only(tmp_path: Path):
    LineMemory(tmp_path).keep(*VIEW, [120, 130, 125], now=0.0)

    memory = LineMemory(tmp_path)  # the next start
    assert memory.recall(*VIEW) == [120, 130, 125]
    assert memory.recall((1280, 720), 0) == []  # another camera size: other pixels
    assert memory.recall((640, 480), 1) == []  # travel along the other axis
    assert not [p.name for p in tmp_path.iterdir() if p.name != FILE_NAME]  # no temporary file left


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
