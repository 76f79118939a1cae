"""The reference line and the belt's scale set on the commissioning page, over ``trigger.presence``'s.

Where the line across the belt is (its crossing times every decision's ``crossed_at``) and how many millimetres
a pixel is on the belt plane (``belt_speed_mm_s``) are best set by looking at the belt: the page lets the
engineer click the line and mark a known length. Both are kept in ``<state_directory>/belt.json`` (written
atomically, like the ROI), so they survive restarts while ``/etc`` stays read-only; an unreadable file is
reported and left in place, and the config's values are used meanwhile.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from edge.atomic_file import write_json_atomically
from edge.config import PresenceSettings

log = logging.getLogger(__name__)

FILE_NAME = "belt.json"
MAX_MM_PER_PX = 1000.0  # a metre a pixel: anything coarser is a slip of the mouse


class BeltCalibration:
    def __init__(self, presence: PresenceSettings, state_directory: Path | None) -> None:
        self.configured = {"reference_line": presence.reference_line, "mm_per_px": presence.mm_per_px}
        self.path = state_directory / FILE_NAME if state_directory is not None else None
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._set: dict[str, float] = self._read()  # what the page set: reference_line and/or mm_per_px
        self.version = 0  # counts changes, so the frame loop picks each up once

    @property
    def reference_line(self) -> float:
        return self._set.get("reference_line", self.configured["reference_line"])  # type: ignore[return-value]

    @property
    def mm_per_px(self) -> float | None:
        return self._set.get("mm_per_px", self.configured["mm_per_px"])

    def describe(self) -> dict[str, Any]:
        """For /api/belt and check-config."""
        with self._lock:
            page = dict(self._set)
        return {
            "reference_line": self.reference_line,
            "mm_per_px": self.mm_per_px,
            "from_page": sorted(page),
            "configured": self.configured,
            "kept_in": str(self.path) if self.path is not None else None,
            "problem": self.problem,
        }

    def set(self, **values: float) -> None:
        """From the page: `reference_line` (share of the ROI along the travel) and/or `mm_per_px`.
        Raises ValueError for a value out of range, OSError when it cannot be kept; nothing changes then."""
        for name, value in values.items():
            _check(name, value)
        with self._lock:
            updated = {**self._set, **{name: float(value) for name, value in values.items()}}
            self._write(updated)
            self._set = updated
            self.version += 1
        log.info("belt calibration set on the page: %s", values)

    def reset(self) -> None:
        """Back to the config's values."""
        with self._lock:
            if self.path is not None:
                self.path.unlink(missing_ok=True)
            self._set = {}
            self.version += 1

    def _read(self) -> dict[str, float]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            kept = json.loads(self.path.read_text(encoding="utf-8"))
            values = {name: float(kept[name]) for name in ("reference_line", "mm_per_px") if kept.get(name) is not None}
            for name, value in values.items():
                _check(name, value)
            return values
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            self.problem = (
                f"{self.path}: the belt calibration set on the page is not readable ({exc}); using the config's"
            )
            log.error("%s", self.problem)
            return {}

    def _write(self, values: dict[str, float]) -> None:
        if self.path is not None:
            write_json_atomically(self.path, {**values, "set_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _check(name: str, value: float) -> None:
    if name not in ("reference_line", "mm_per_px"):
        raise ValueError(f"unknown belt setting {name!r}")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if name == "reference_line" and not 0 < value < 1:
        raise ValueError(f"reference_line must lie inside the region (0 to 1 along the travel), got {value}")
    if name == "mm_per_px" and not 0 < value <= MAX_MM_PER_PX:
        raise ValueError(f"mm_per_px must be above 0 and at most {MAX_MM_PER_PX:g}, got {value}")
