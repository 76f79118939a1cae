"""Is an item on the belt? Change against a learned image of the empty belt, with hysteresis.

Detection works on a small, blurred greyscale copy of the ROI: belt texture and sensor noise blur away,
an item does not, and a frame costs well under a millisecond. The item's box is then refined at the
frame's own resolution, inside the coarse box, so a crop hugs the item instead of carrying a few pixels
of belt on every side. The empty-belt model (at both resolutions) follows slow lighting drift, but only
while the belt is empty and only where the pixel still looks like belt, so an item is never learned into
the background. Items apart along the belt are told apart, each with its own box, so two items in view
at once are two items (`edge.tracking` follows them from frame to frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from edge.config import PresenceSettings

log = logging.getLogger(__name__)

WORK_WIDTH = 160  # pixels across the downscaled ROI; items are far larger than that resolution needs


@dataclass(frozen=True)
class ItemView:
    """One item in the ROI in this frame."""

    span: tuple[int, int]  # its columns at working resolution: where it is along the belt, to follow it
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the ROI at its own resolution, hugging the item
    in_full_view: bool  # touches neither the left nor the right ROI edge
    centred: float  # 1.0 with its box centred in the ROI, down to 0.0 at an edge: how good a view this is


class PresenceEvent(Enum):
    LEARNING = "learning"  # still learning the empty belt
    EMPTY = "empty"
    ENTERED = "entered"  # first frame the item counts as present (after min_frames debounce)
    PRESENT = "present"
    LEFT = "left"  # the item has gone; the next frame is EMPTY again


class PresenceDetector:
    """Feed it every ROI crop in order; it says when an item enters, stays and leaves."""

    def __init__(self, settings: PresenceSettings) -> None:
        self.settings = settings
        self.changed_fraction = 0.0  # share of ROI pixels that differ from the empty belt, last frame
        self.items: list[ItemView] = []  # the items in view in the last frame, along the belt (left first)
        self._learning: list[tuple[np.ndarray, np.ndarray]] = []  # (working, full-resolution) greys
        self._background: np.ndarray | None = None  # float32, working resolution
        self._background_full: np.ndarray | None = None  # float32, the ROI's own resolution
        self._present = False
        self._streak = 0  # consecutive frames above enter_fraction while empty
        self._still_frame: np.ndarray | None = None  # first frame of the current still period
        self._still = 0  # consecutive frames without motion while present

    @property
    def present(self) -> bool:
        return self._present

    @property
    def learning(self) -> bool:
        """Still learning the empty belt: nothing is detected yet."""
        return self._background is None

    def reset(self) -> None:
        """Forget the belt and learn it again (new camera, moved ROI)."""
        self._learning.clear()
        self._background = self._background_full = None
        self.items = []
        self._present = False
        self._streak = 0
        self._still_frame = None
        self._still = 0
        self.changed_fraction = 0.0

    def update(self, crop_bgr: np.ndarray) -> PresenceEvent:
        small = _prepare(crop_bgr)
        full = _grey(crop_bgr)
        if self._background is not None and small.shape != self._background.shape:
            log.warning("presence: ROI size changed to %s; learning the empty belt again", crop_bgr.shape[:2])
            self.reset()
        if self._background is None:
            return self._learn(small, full)

        diff = cv2.absdiff(small, self._background)
        changed = diff > self.settings.pixel_delta
        self.changed_fraction = float(np.count_nonzero(changed)) / changed.size
        self.items = self._locate_items(changed, full)

        if self._present:
            if self.changed_fraction < self.settings.leave_fraction:
                self._present = False
                return PresenceEvent.LEFT
            if self._stuck(small):
                log.warning(
                    "presence: %d frames 'present' without motion (light changed, or an item stopped on the "
                    "belt); learning the empty belt again",
                    self._still,
                )
                self.reset()
                return PresenceEvent.LEFT
            return PresenceEvent.PRESENT

        if self.changed_fraction >= self.settings.enter_fraction:
            self._streak += 1
            if self._streak >= self.settings.min_frames:
                self._present = True
                self._streak = 0
                self._still_frame, self._still = None, 0
                return PresenceEvent.ENTERED
            return PresenceEvent.EMPTY
        self._streak = 0
        if self.settings.background_rate > 0:
            # follow lighting drift where the pixel still looks like belt; a half-visible item stays out
            still_belt = (~changed).astype(np.uint8)
            rate = self.settings.background_rate
            cv2.accumulateWeighted(small, self._background, rate, mask=still_belt)
            full_mask = cv2.resize(still_belt, (full.shape[1], full.shape[0]), interpolation=cv2.INTER_NEAREST)
            cv2.accumulateWeighted(full, self._background_full, rate, mask=full_mask)
        return PresenceEvent.EMPTY

    def _locate_items(self, changed: np.ndarray, full: np.ndarray) -> list[ItemView]:
        """Each item: found at working resolution (noise ignored), its box refined at full resolution."""
        scale = full.shape[1] / changed.shape[1]
        height, width = full.shape
        views = []
        for x0, x1 in _spans_along_belt(changed, min_area=self.settings.enter_fraction * changed.size):
            rows = np.flatnonzero(changed[:, x0:x1].mean(axis=1) > 0.05)
            if rows.size == 0:
                continue
            y0, y1 = int(rows[0]), int(rows[-1]) + 1
            # the coarse box, one working pixel wider on every side, holds the whole item at full resolution
            fx0, fy0 = max(0, int((x0 - 1) * scale)), max(0, int((y0 - 1) * scale))
            fx1, fy1 = min(width, int(np.ceil((x1 + 1) * scale))), min(height, int(np.ceil((y1 + 1) * scale)))
            region = cv2.absdiff(full[fy0:fy1, fx0:fx1], self._background_full[fy0:fy1, fx0:fx1])
            fine = _box(region > self.settings.pixel_delta, 0.05)
            if fine is None:
                box = (int(x0 * scale), int(y0 * scale), int(np.ceil(x1 * scale)), int(np.ceil(y1 * scale)))
            else:
                box = (fx0 + fine[0], fy0 + fine[1], fx0 + fine[2], fy0 + fine[3])
            centred = max(0.0, 1.0 - abs((box[0] + box[2]) / 2 - width / 2) / (width / 2))
            views.append(ItemView((x0, x1), box, x0 > 0 and x1 < changed.shape[1], centred))
        return views

    def _stuck(self, small: np.ndarray) -> bool:
        """True once the scene has been still for relearn_after_frames frames while 'present'."""
        if self.settings.relearn_after_frames == 0:
            return False
        # compared with the first frame of the still period, not the previous one, so that a slowly
        # moving item accumulates enough change to count as motion
        reference = self._still_frame
        if reference is not None:
            moved = np.count_nonzero(cv2.absdiff(small, reference) > self.settings.pixel_delta) / small.size
            if moved < self.settings.leave_fraction:
                self._still += 1
                return self._still >= self.settings.relearn_after_frames
        self._still_frame, self._still = small, 0
        return False

    def _learn(self, small: np.ndarray, full: np.ndarray) -> PresenceEvent:
        self._learning.append((small, full))
        self.changed_fraction = 0.0
        if len(self._learning) >= self.settings.background_frames:
            # the median ignores an item that crosses during learning, a mean would smear it in
            self._background = np.median(np.stack([s for s, _ in self._learning]), axis=0).astype(np.float32)
            self._background_full = np.median(np.stack([f for _, f in self._learning]), axis=0).astype(np.float32)
            self._learning.clear()
        return PresenceEvent.LEARNING


def _box(mask: np.ndarray, share: float) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the columns and rows in which more than `share` of the pixels are set."""
    cols = np.flatnonzero(mask.mean(axis=0) > share)
    rows = np.flatnonzero(mask.mean(axis=1) > share)
    if cols.size == 0 or rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _spans_along_belt(mask: np.ndarray, min_area: float) -> list[tuple[int, int]]:
    """Items along the belt (left to right in the ROI): runs of columns with change, apart by a tenth of the
    ROI's width or more, each holding `min_area` changed pixels. Parts of one garment overlap along the belt
    or lie close (a dark garment on a dark belt shows as its light edges); two items on a belt are spaced."""
    changed_columns = np.flatnonzero(mask.mean(axis=0) > 0.05)
    if changed_columns.size == 0:
        return []
    apart = max(3, mask.shape[1] // 10)
    breaks = np.flatnonzero(np.diff(changed_columns) > apart)
    starts = [changed_columns[0], *changed_columns[breaks + 1]]
    ends = [*changed_columns[breaks], changed_columns[-1]]
    return [
        (int(x0), int(x1) + 1)
        for x0, x1 in zip(starts, ends, strict=True)
        if np.count_nonzero(mask[:, x0 : x1 + 1]) >= min_area
    ]


def _grey(crop_bgr: np.ndarray) -> np.ndarray:
    """Full-resolution greyscale float32, lightly blurred against sensor noise (for the tight box)."""
    return cv2.GaussianBlur(cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY), (3, 3), 0).astype(np.float32)


def _prepare(crop_bgr: np.ndarray) -> np.ndarray:
    """Downscaled, blurred greyscale float32 copy: cheap, and blind to fine belt texture and noise."""
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.size == 0:
        raise ValueError(f"expected an HxWx3 BGR crop, got shape {crop_bgr.shape}")
    height, width = crop_bgr.shape[:2]
    if width > WORK_WIDTH:
        small_h = max(1, round(height * WORK_WIDTH / width))
        crop_bgr = cv2.resize(crop_bgr, (WORK_WIDTH, small_h), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)
