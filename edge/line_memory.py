"""What presence mode learned about the line's items, kept across restarts in ``<state_directory>/line.json``.

A daemon restarted while the belt runs (an update, a crash, a reboot) used to judge its next items by the rules
of a line never seen: no item length yet, so two items laid touching without a waist between them got one lane,
and the first five items after every restart were judged more loosely. Now the lengths of the line's last
single items are kept with the frame size and the travel axis they were measured in, and a restart with the
same camera picks them up as soon as it knows the travel; another frame size or axis learns them afresh.

Written atomically (a SIGKILL mid-write leaves the old file or the new one), when something new was learned
but at most once every `EVERY_S` seconds, and at shutdown: a board's SD card is not worn by a write per item.
A file that cannot be read is reported once and the line is learned again; nothing else depends on it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from edge.atomic_file import write_json_atomically
from edge.item_lengths import KEPT

log = logging.getLogger(__name__)

FILE_NAME = "line.json"
EVERY_S = 60.0  # at most one write a minute while the line runs


class LineMemory:
    def __init__(self, state_directory: Path | None) -> None:
        self.path = state_directory / FILE_NAME if state_directory is not None else None
        self._written_at = float("-inf")  # monotonic

    def recall(self, frame_size: tuple[int, int], axis: int) -> list[int]:
        """The kept lengths of single items (camera pixels along the travel) if they were measured on a frame of
        this size (width, height) along this axis (0: x, 1: y); else none."""
        if self.path is None or not self.path.exists():
            return []
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))
            lengths = [int(v) for v in kept["item_lengths"]][-KEPT:]
            if any(v <= 0 for v in lengths):
                raise ValueError("an item length is not positive")
            same = list(kept["frame_size"]) == list(frame_size) and int(kept["axis"]) == axis
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("%s: the line's item lengths kept there are unreadable (%s); learning them again", self.path, exc)
            return []
        if not same:
            log.info(
                "%s: item lengths kept for another view (frame %s, axis %s); learning them again",
                self.path,
                kept["frame_size"],
                kept["axis"],
            )
            return []
        log.info("presence: %d item lengths of this line kept from the last run", len(lengths))
        return lengths

    def keep(
        self, frame_size: tuple[int, int], axis: int, lengths: list[int], now: float, *, at_once: bool = False
    ) -> bool:
        """Write the lengths unless the last write was under `EVERY_S` ago (`now`: monotonic seconds) and
        `at_once` is not asked for; returns whether they were written. A failed write is logged, not raised:
        the line goes on, and learns again after the next restart."""
        if self.path is None or (not at_once and now - self._written_at < EVERY_S):
            return False
        self._written_at = now
        try:
            write_json_atomically(
                self.path,
                {
                    "frame_size": list(frame_size),
                    "axis": axis,
                    "item_lengths": lengths,
                    "kept_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
        except OSError as exc:
            log.error("%s: cannot keep the line's item lengths (%s)", self.path, exc)
            return False
        return True
