"""What the page shows, kept by the frame loop and read by the web server's thread.

The loop stores the newest frame by reference and each decision with a small copy of its crop; JPEG
encoding happens when a page asks, at most a few times a second, so a page nobody watches costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edge.preprocess import encode_jpeg

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels

# Longest side of the decisions' crops kept for the page: shown at 64 px, saved at this size when sent to
# review (the models' inputs are 224-260 px), 50 of them at most ~10 MB.
THUMBNAIL_PX = 256
JPEG_QUALITY = 80  # for a screen; the crop store keeps crops for training at 92
ROI_COLOUR, ITEM_COLOUR, TOUCHING_COLOUR = (255, 200, 0), (0, 220, 0), (0, 140, 255)  # BGR
REFERENCE_COLOUR = (255, 0, 255)  # the reference line where crossings are timed: magenta


@dataclass
class _Decided:
    message: dict[str, Any]
    crop: np.ndarray | None
    jpeg: bytes | None = None  # the crop encoded at its first request: a page redraws its table every second


@dataclass
class LiveView:
    max_decisions: int = 50
    min_interval_s: float = 0.2  # a snapshot is encoded at most this often, however many pages poll
    max_history: int = 360  # stats messages kept for the plots: an hour at the default 10 s interval
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _frame: np.ndarray | None = None
    _roi: Box | None = None
    _items: list[tuple[Box, bool, str]] = field(default_factory=list)  # (box, touching another, running vote)
    _belt: str = ""  # what the trigger mode is doing: "empty belt", "learning the empty belt", …
    _reference: tuple[tuple[int, int], tuple[int, int]] | None = None  # the reference line's ends, frame pixels
    _direction: tuple[int, int] | None = None  # the belt's travel: (axis, sign), None while unknown
    _status: dict[str, Any] = field(default_factory=dict)
    _decisions: deque[_Decided] = field(default_factory=deque)
    _snapshot: tuple[float, bytes] | None = None
    _history: deque[dict[str, Any]] = field(default_factory=deque)
    _line: dict[str, Any] = field(default_factory=dict)  # presence mode's figures as of the last stats message

    def frame(
        self,
        image: np.ndarray,
        roi: Box,
        items: list[tuple[Box, bool, str]],
        belt: str,
        reference: tuple[tuple[int, int], tuple[int, int]] | None = None,
        direction: tuple[int, int] | None = None,
    ) -> None:
        """From the frame loop: the newest frame (not copied: frames are never written to) and what is on it."""
        with self._lock:
            self._frame, self._roi, self._items, self._belt = image, roi, items, belt
            self._reference, self._direction = reference, direction

    def status(self, status: dict[str, Any]) -> None:
        with self._lock:
            self._status = dict(status)

    def decision(self, message: dict[str, Any], crop: np.ndarray | None) -> None:
        """Keeps a small copy of the crop: the crop itself is a view that would pin its whole frame (50
        decisions' crops pinned 46 MB of 640x480 frames in bench/edge.py)."""
        small = _thumbnail(crop) if crop is not None else None
        with self._lock:
            self._decisions.append(_Decided(message, small))
            while len(self._decisions) > self.max_decisions:
                self._decisions.popleft()

    def stats(self, message: dict[str, Any]) -> None:
        """From the frame loop, each stats message as it goes out: one point of the plots."""
        interval = message["last_interval"]
        point = {
            "t": round(time.time(), 1),
            "fps": message["fps"],
            "inference_ms": interval["inference_ms"],
            "latency_ms": interval["latency_ms"],
            "decisions": message["decisions"],
            "camera": message["camera"],
            "camera_error": message["camera_error"],
            "broker_error": message["broker_error"],
            "queue_depth": message["queue_depth"],
        }
        with self._lock:
            self._line = dict(message.get("line") or {})
            self._history.append(point)
            while len(self._history) > self.max_history:
                self._history.popleft()

    def history(self) -> list[dict[str, Any]]:
        """/api/stats: the stats messages kept, oldest first."""
        with self._lock:
            return list(self._history)

    def summary(self) -> dict[str, Any]:
        """/api/status: the device status, the last decision and what is in view now."""
        with self._lock:
            last = self._decisions[-1].message if self._decisions else None
            height, width = self._frame.shape[:2] if self._frame is not None else (None, None)
            return {
                **self._status,
                "frame": {"width": width, "height": height},
                "roi": self._roi,
                "items_in_view": len(self._items),
                "belt": self._belt,
                "direction": self._direction,
                "reference_line": self._reference,
                "line": self._line,
                "last_decision": last,
            }

    def decisions(self) -> list[dict[str, Any]]:
        """Newest first, each with the URL of the crop the model saw (when there was one)."""
        with self._lock:
            return [
                {**d.message, "crop_url": f"/crops/{d.message['item_id']}.jpg" if d.crop is not None else None}
                for d in reversed(self._decisions)
            ]

    def what_if(self, threshold: float) -> dict[str, Any]:
        """The kept decisions decided again at `threshold`: per top label, how many keep their lane, how
        many would go to reject, how many rejects would get their label's lane. A reject for another reason than
        its score (unfamiliar, touching, too long) stays one at any threshold."""
        with self._lock:
            decided = [d.message for d in self._decisions if d.message.get("scores")]
        per_label: dict[str, dict[str, int]] = {}
        for message in decided:
            top, confidence = max(message["scores"].items(), key=lambda pair: pair[1])
            counts = per_label.setdefault(top, {"unchanged": 0, "to_reject": 0, "from_reject": 0})
            was_reject = message["label"] == "reject"
            now_reject = confidence < threshold or message.get("reason") not in (None, "below_threshold")
            counts["unchanged" if was_reject == now_reject else "to_reject" if now_reject else "from_reject"] += 1
        return {"threshold": threshold, "decisions": len(decided), "per_label": dict(sorted(per_label.items()))}

    def snapshot_jpeg(self) -> bytes | None:
        """The newest frame with the ROI and the items' boxes drawn on it; None before the first frame."""
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now - self._snapshot[0] < self.min_interval_s:
                return self._snapshot[1]
            if self._frame is None:
                return None
            image, roi, items, reference = self._frame.copy(), self._roi, list(self._items), self._reference
        if roi is not None:
            cv2.rectangle(image, roi[:2], roi[2:], ROI_COLOUR, 2)
        if reference is not None:
            cv2.line(image, reference[0], reference[1], REFERENCE_COLOUR, 2)
        for box, touching, vote in items:
            colour = TOUCHING_COLOUR if touching else ITEM_COLOUR
            cv2.rectangle(image, box[:2], box[2:], colour, 2)
            cv2.putText(image, vote, (box[0] + 4, max(14, box[1] - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
        encoded = encode_jpeg(image, JPEG_QUALITY)
        with self._lock:
            self._snapshot = (now, encoded)
        return encoded

    def kept(self, item_id: str) -> tuple[dict[str, Any], np.ndarray] | None:
        """A kept decision and its crop, for sending it to review."""
        found = self._with_crop(item_id)
        return (found.message, found.crop) if found is not None else None  # type: ignore[return-value]

    def crop_jpeg(self, item_id: str) -> bytes | None:
        """The crop the model saw for a recent decision, looked up by id among the kept decisions only."""
        found = self._with_crop(item_id)
        if found is None:
            return None
        if found.jpeg is None:
            found.jpeg = encode_jpeg(found.crop, JPEG_QUALITY)  # type: ignore[arg-type]
        return found.jpeg

    def _with_crop(self, item_id: str) -> _Decided | None:
        with self._lock:
            found = next((d for d in self._decisions if d.message.get("item_id") == item_id), None)
        return found if found is not None and found.crop is not None else None


def _thumbnail(image: np.ndarray, longest: int = THUMBNAIL_PX) -> np.ndarray:
    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return image.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)  # INTER_AREA: 1.3 ms a decision, 9x this
