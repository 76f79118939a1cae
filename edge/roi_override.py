"""The ROI drawn on the commissioning page: it overrides ``camera.roi`` and is kept in the state directory
(``<state_directory>/roi.json``), so it survives restarts while ``/etc`` stays read-only under the hardened
unit. The page asks for a change on its own thread; the frame loop takes it between items.

The file is written to a temporary name and renamed, so a SIGKILL mid-write leaves the old ROI or the
new one, never half of one. A file that cannot be read is reported and left in place (the config's ROI
is used meanwhile), so nothing anyone set is lost to a daemon that could not read it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from edge.atomic_file import write_json_atomically
from edge.config import Roi, validation_problems

log = logging.getLogger(__name__)

FILE_NAME = "roi.json"
_UNCHANGED = object()  # no change waiting for the frame loop

RoiSource = Literal["page", "config", "whole frame"]


class RoiOverride:
    def __init__(self, configured: Roi | None, state_directory: Path | None) -> None:
        self.configured = configured
        self.path = state_directory / FILE_NAME if state_directory is not None else None
        self.problem: str | None = None  # why a kept override could not be used, for logs and check-config
        self._drawn: Roi | None = self._read()
        self._pending: object = _UNCHANGED
        self._lock = threading.Lock()

    @property
    def roi(self) -> Roi | None:
        """The ROI to use: the one drawn on the page, else the config's (None: the whole frame)."""
        return self._drawn if self._drawn is not None else self.configured

    @property
    def source(self) -> RoiSource:
        return "page" if self._drawn is not None else "config" if self.configured is not None else "whole frame"

    @property
    def changing(self) -> bool:
        """A change from the page waits for the frame loop."""
        return self._pending is not _UNCHANGED

    def describe(self) -> dict[str, Any]:
        """For /api/roi and check-config."""
        with self._lock:
            pending = None if self._pending is _UNCHANGED else {"roi": _dump(self._pending)}  # type: ignore[arg-type]
        return {
            "roi": _dump(self.roi),
            "source": self.source,
            "configured": _dump(self.configured),
            "pending": pending,
            "kept_in": str(self.path) if self.path is not None else None,
            "problem": self.problem,
        }

    def request(self, roi: Roi | None) -> None:
        """From the page: keep `roi` (None: back to the config's) and hand it to the frame loop.

        Raises OSError when it cannot be kept; nothing changes then."""
        self._write(roi)
        with self._lock:
            self._pending = roi

    def take_change(self) -> tuple[bool, Roi | None]:
        """From the frame loop, between items: (True, the ROI to use now) once after each request."""
        with self._lock:
            if self._pending is _UNCHANGED:
                return False, None
            self._drawn, self._pending = self._pending, _UNCHANGED  # type: ignore[assignment]
        self.problem = None
        log.info("ROI now %s (from the %s)", _dump(self.roi), self.source)
        return True, self.roi

    def _read(self) -> Roi | None:
        if self.path is None:
            return None
        for unfinished in self.path.parent.glob(".roi-*.json"):  # a write killed before its rename
            unfinished.unlink(missing_ok=True)
        if not self.path.exists():
            return None
        try:
            return Roi.model_validate(json.loads(self.path.read_text(encoding="utf-8"))["roi"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ValidationError):
                why = "; ".join(validation_problems(exc))
            else:
                why = str(exc) if not isinstance(exc, KeyError) else "no 'roi' in it"
            self.problem = f"{self.path}: the ROI drawn on the page is not readable ({why}); using camera.roi"
            return None

    def _write(self, roi: Roi | None) -> None:
        if self.path is None:
            return  # no state directory: the change holds until the daemon stops
        if roi is None:
            self.path.unlink(missing_ok=True)
            return
        body = {"roi": _dump(roi), "set_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json_atomically(self.path, body)


def _dump(roi: Roi | None) -> dict[str, Any] | None:
    return roi.model_dump() if roi is not None else None
