"""What presence mode learned about the line, kept across restarts in the state directory: the lengths of its
items and the belt's velocity (``line.json``), and the empty belt (``empty_belt.npz``).

A daemon restarted while the belt runs (an update, a crash, a reboot) used to judge its next items by the rules
of a line never seen: no item length yet, so two items laid touching without a waist between them got one lane,
and the first five items after every restart were judged more loosely. Now the lengths of the line's last
single items are kept with the frame size and the travel axis they were measured in, and the belt's velocity
with them, so a restart with the same camera knows the travel from its first frame and picks the lengths up at
once; another frame size or axis learns them afresh.

Nor did it see anything while it learned the empty belt again (the first 20 frames, 1.3 s at 15 fps): an item
passing then got no decision, about one every two restarts on the belt benchmark's lines. Now the belt model
(`edge.presence`: each pixel's colour and spread, a few hundred kB) is kept with the frame size and ROI it was
learned in, and a restart with the same view starts from it; the detector tries it on the first frame and
checks it on the next ones, so another belt, lamp or camera position is learned afresh.

Written atomically (a SIGKILL mid-write leaves the old file or the new one), when something new was learned
but at most once every `EVERY_S` seconds (the belt every `BELT_EVERY_S`: it changes slowly, and the light's
gain is measured on every frame anyway), and at shutdown: a board's SD card is not worn by a write per item.
A file that cannot be read is reported once and the line is learned again; nothing else depends on it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic_file import write_atomically, write_json_atomically
from edge.item_lengths import KEPT
from edge.presence import EmptyBelt

log = logging.getLogger(__name__)

FILE_NAME = "line.json"
EVERY_S = 60.0  # at most one write a minute while the line runs
BELT_FILE_NAME = "empty_belt.npz"
BELT_EVERY_S = 600.0  # the belt model at most every ten minutes

# what reading line.json or one of its fields can raise: the file cut short, edited by hand, from another version
_UNREADABLE = (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError)

BeltView = tuple[tuple[int, int], tuple[int, int, int, int]]  # frame size (width, height), ROI box (x0, y0, x1, y1)


class LineMemory:
    def __init__(self, state_directory: Path | None) -> None:
        self.path = state_directory / FILE_NAME if state_directory is not None else None
        self.belt_path = state_directory / BELT_FILE_NAME if state_directory is not None else None
        self._written_at = self._belt_written_at = float("-inf")  # monotonic

    def recall(self, frame_size: tuple[int, int], axis: int) -> list[int]:
        """The kept lengths of single items (camera pixels along the travel) if they were measured on a frame of
        this size (width, height) along this axis (0: x, 1: y); else none."""
        try:
            if (kept := self._kept()) is None:
                return []
            lengths = [int(v) for v in kept["item_lengths"]][-KEPT:]
            if any(v <= 0 for v in lengths):
                raise ValueError("an item length is not positive")
            same = list(kept["frame_size"]) == list(frame_size) and int(kept["axis"]) == axis
        except _UNREADABLE as exc:
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

    def recall_velocity(self, frame_size: tuple[int, int]) -> tuple[float, float] | None:
        """The belt's velocity (camera pixels a second along x and y) kept for a frame of this size; else None.
        Unreadable here is said by `recall`, which reads the same file."""
        try:
            if (kept := self._kept()) is None:
                return None
            vx, vy = (float(v) for v in kept["belt_velocity_px_s"])
            same = list(kept["frame_size"]) == list(frame_size)
        except _UNREADABLE:
            return None
        if not same or not (math.isfinite(vx) and math.isfinite(vy)) or vx == vy == 0:
            return None
        return vx, vy

    def _kept(self) -> Any:
        """``line.json`` as written, None where there is none; raises one of `_UNREADABLE` where it cannot be
        read (its fields are read by the caller, which may raise the same)."""
        if self.path is None or not self.path.exists():
            return None
        return json.loads(self.path.read_text(encoding="utf-8"))

    def keep(
        self,
        frame_size: tuple[int, int],
        axis: int,
        lengths: list[int],
        now: float,
        *,
        at_once: bool = False,
        velocity: tuple[float, float] | None = None,
    ) -> bool:
        """Write the lengths (and the belt's velocity, when measured) unless the last write was under `EVERY_S`
        ago (`now`: monotonic seconds) and `at_once` is not asked for; returns whether they were written. A
        failed write is logged, not raised: the line goes on, and learns again after the next restart."""
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
                    **({} if velocity is None else {"belt_velocity_px_s": [round(v, 2) for v in velocity]}),
                    "kept_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
        except OSError as exc:
            log.error("%s: cannot keep the line's item lengths (%s)", self.path, exc)
            return False
        return True

    def recall_belt(self, view: BeltView, kept_for_s: float) -> EmptyBelt | None:
        """The empty belt kept by the last run, if it was learned in this view (frame size and ROI) and kept at
        most `kept_for_s` seconds ago (by the wall clock: a clock set back since counts as too old); else None."""
        if self.belt_path is None or not self.belt_path.exists():
            return None
        try:
            with np.load(self.belt_path, allow_pickle=False) as kept:
                kept_view = [int(v) for v in kept["view"]]
                mean, spread = kept["mean"].astype(np.float32), kept["spread"].astype(np.float32)
                gain, kept_at = float(kept["gain"]), float(kept["kept_at"])
                # kept since session 43: a file kept before says nothing of slanted bands
                slants = kept["slants"].astype(np.float64).ravel().tolist() if "slants" in kept.files else [0.0, 0.0]
            if not 0 < gain < np.inf:
                raise ValueError(f"a light's gain of {gain}")
            if mean.ndim != 3 or mean.shape[2] != 3 or spread.shape != mean.shape:
                raise ValueError(f"a belt of shape {mean.shape} and spread {spread.shape}")
            if not (np.isfinite(mean).all() and np.isfinite(spread).all() and mean.min() >= 0 and spread.min() >= 0):
                raise ValueError("values that no camera gives")
            if len(slants) != 2 or not all(abs(slant) <= 1 for slant in slants):
                raise ValueError(f"bands slanted by {slants}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.error("%s: the empty belt kept there is unreadable (%s); learning it again", self.belt_path, exc)
            return None
        if kept_view != [*view[0], *view[1]]:
            log.info("%s: the empty belt was kept for another view (%s); learning it again", self.belt_path, kept_view)
            return None
        if not 0 <= (age := time.time() - kept_at) <= kept_for_s:
            log.info("%s: the empty belt was kept %.0f s ago; learning it again", self.belt_path, age)
            return None
        return EmptyBelt(mean, spread, gain, (slants[0], slants[1]))

    def keep_belt(self, view: BeltView, belt: EmptyBelt, now: float, *, at_once: bool = False) -> bool:
        """Write the belt model unless the last write was under `BELT_EVERY_S` ago (`now`: monotonic seconds)
        and `at_once` is not asked for; as `keep`, a failed write is logged, not raised. Half precision: a
        tenth of a grey level is far below what the detector tells apart, and it halves the write."""
        if self.belt_path is None or (not at_once and now - self._belt_written_at < BELT_EVERY_S):
            return False
        self._belt_written_at = now
        data = io.BytesIO()
        np.savez(
            data,
            view=np.array([*view[0], *view[1]]),
            mean=belt.mean.astype(np.float16),
            spread=belt.spread.astype(np.float16),
            gain=np.float64(belt.gain),
            slants=np.array(belt.slants, np.float64),
            kept_at=np.float64(time.time()),
        )
        try:
            write_atomically(self.belt_path, data.getvalue())
        except OSError as exc:
            log.error("%s: cannot keep the empty belt (%s)", self.belt_path, exc)
            return False
        return True
