"""Where are items on the belt? Change against a learned model of the moving, empty belt.

A real belt moves: its grain, seams and scuff marks pass under the camera all the time, the light drifts and
flickers, and a dark garment on a dark belt differs from it by a few grey levels. So the empty belt is learned
per pixel as a colour *and how much it varies there* (mean and spread, in colour, on a small blurred copy of
the ROI): where the belt's texture passes, a pixel varies and needs a larger change to count; where the belt
is plain, a small change is an item. Each frame is first divided by the light's gain (measured on the pixels
that look like belt), so drift and mains flicker cancel. The model keeps learning while the line runs, on the
pixels that look like belt only, so an item is never learned into it.

What changed is cleaned by shape: gaps inside an item closed and holes filled (a dark garment on a dark belt
shows as its light edges and folds), then everything thinner than a few working pixels removed (seams and
splices across the belt, scratches, small marks). Each remaining region is an item candidate. A region that
narrows to almost nothing along the belt between two broad parts is two items touching: it is split there and
both halves are marked `touching`, so neither gets a lane.

A frame costs about a millisecond on one core (160 pixels across, whatever the camera); bench/belt.py
measures it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import PresenceSettings

log = logging.getLogger(__name__)

WORK_WIDTH = 160  # pixels across the downscaled ROI; items are far larger than that resolution needs
_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))  # joins an item's edges across a dark interior
_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # removes what is thinner: seams, scratches, marks
_NOTCH = 0.12  # a notch in an outline this deep (share of the region's width across the belt) may be a waist
_CUT = 0.7  # ... and two notches facing each other this close (same share) are one: two items touching
_SEAM_PX = 8  # working pixels: a band no thicker across the whole belt is a seam
_SIDE_BY_SIDE_GAP = 0.1  # pieces this close across the belt (share of its width) at one place along it: one item


@dataclass(frozen=True)
class ItemView:
    """One item candidate in the ROI in this frame."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in ROI pixels
    centre: tuple[float, float]  # centroid of its pixels, ROI pixels
    area: float  # share of the ROI it covers
    touching: bool = False  # split off another item it touches
    tilt: float = 0.0  # degrees its long axis leans from upright (counter-clockwise positive); 0 when unclear
    upright: tuple[float, float, float, float] = (0, 0, 0, 0)  # turned upright: its middle x, y and width, height

    def length(self, axis: int) -> int:
        """Its extent along `axis` (0: x, 1: y), ROI pixels."""
        return self.box[2 + axis] - self.box[axis]


class PresenceDetector:
    """Feed it every ROI crop in order; `items` then holds the item candidates of that frame."""

    def __init__(self, settings: PresenceSettings) -> None:
        self.settings = settings
        self.items: list[ItemView] = []
        self.changed_fraction = 0.0  # share of the ROI that differs from the empty belt, last frame
        self.gain = 1.0  # the light now, relative to when the belt was learned
        self.axis: int | None = None  # the belt's travel: 0 along x, 1 along y (set by whoever knows it)
        # a region longer than this along the belt (ROI pixels) may be two items touching: looked at for a
        # place where it narrows (set from the line's usual item length by whoever knows it)
        self.split_longer_than: float | None = None
        self._learning: list[np.ndarray] = []
        self._mean: np.ndarray | None = None  # float32 HxWx3, working resolution, at gain 1
        self._spread: np.ndarray | None = None  # float32 HxWx3: how much the belt varies at each pixel
        self._belt_mask: np.ndarray | None = None  # bool HxW: the pixels that looked like belt last frame
        self._grey_mean = np.zeros(0, np.float32)  # the belt's mean in grey, for the light's gain
        self._limit = np.zeros(0, np.float32)  # HxWx3: the change that counts, per pixel and channel
        self._still_frame: np.ndarray | None = None  # first frame of the current still period
        self._still = 0

    @property
    def learning(self) -> bool:
        """Still learning the empty belt: nothing is detected yet."""
        return self._mean is None

    def reset(self) -> None:
        """Forget the belt and learn it again (new camera, moved ROI, light changed at once)."""
        self._learning.clear()
        self._mean = self._spread = self._belt_mask = None
        self._still_frame, self._still = None, 0
        self.items, self.changed_fraction, self.gain = [], 0.0, 1.0

    def update(self, crop_bgr: np.ndarray) -> list[ItemView]:
        small = _prepare(crop_bgr)
        if self._mean is not None and small.shape != self._mean.shape:
            log.warning("presence: ROI size changed to %s; learning the empty belt again", crop_bgr.shape[:2])
            self.reset()
        if self._mean is None:
            self._learn(small)
            return self.items
        changed = self._changed(small)
        mask = _clean(changed)
        self.changed_fraction = float(np.count_nonzero(mask)) / mask.size
        scale = crop_bgr.shape[1] / small.shape[1], crop_bgr.shape[0] / small.shape[0]
        self.items = self._candidates(mask, scale)
        self._follow_the_belt(small, changed)
        if self.items and self._stuck(small):
            log.warning(
                "presence: %d frames with something in view and nothing moving (the light changed at once, or "
                "the belt stopped with an item on it); learning the empty belt again",
                self._still,
            )
            self.reset()
        return self.items

    # ---- the empty belt --------------------------------------------------------------------
    def _learn(self, small: np.ndarray) -> None:
        self._learning.append(small)
        if len(self._learning) < self.settings.background_frames:
            return
        # median and median absolute deviation: an item crossing during learning is ignored, as is a seam
        frames = np.stack(self._learning)
        self._mean = np.median(frames, axis=0).astype(np.float32)
        self._spread = (1.4826 * np.median(np.abs(frames - self._mean), axis=0)).astype(np.float32)
        self._belt_mask = np.ones(small.shape[:2], bool)
        self._learning.clear()
        self._derive()

    def _derive(self) -> None:
        """What each frame compares against, worked out once per model update instead of per pixel test."""
        assert self._mean is not None and self._spread is not None
        self._grey_mean = cv2.cvtColor(self._mean, cv2.COLOR_BGR2GRAY)
        self._limit = np.maximum(self.settings.sigmas * self._spread, float(self.settings.pixel_delta))

    def _changed(self, small: np.ndarray) -> np.ndarray:
        """Pixels that differ from the belt by more than its own variation there, after the light's gain."""
        assert self._mean is not None and self._spread is not None and self._belt_mask is not None
        # the gain from every other pixel that looked like belt last frame: plenty, at a quarter of the cost
        grey_now = cv2.cvtColor(small[::2, ::2], cv2.COLOR_BGR2GRAY)
        grey_belt = self._grey_mean[::2, ::2]
        belt = self._belt_mask[::2, ::2] & (grey_belt > 4)
        if np.count_nonzero(belt) > 0.1 * belt.size:  # with the belt mostly covered, keep the last gain
            self.gain = float(np.median(grey_now[belt] / grey_belt[belt]))
        difference = cv2.absdiff(small * (1.0 / self.gain), self._mean)
        return (difference > self._limit).any(axis=2)

    def _follow_the_belt(self, small: np.ndarray, changed: np.ndarray) -> None:
        """Keep learning where the pixel looks like belt (and a little away from anything that does not)."""
        assert self._mean is not None and self._spread is not None
        belt = ~cv2.dilate(changed.astype(np.uint8), _CLOSE).astype(bool)
        self._belt_mask = belt
        rate = self.settings.background_rate
        if rate <= 0:
            return
        normalised = small / self.gain
        weight = (rate * belt)[:, :, None].astype(np.float32)
        deviation = np.abs(normalised - self._mean)
        self._mean += weight * (normalised - self._mean)
        self._spread += weight * (1.2533 * deviation - self._spread)  # mean |dev| * sqrt(pi/2) = sigma
        self._derive()

    def _stuck(self, small: np.ndarray) -> bool:
        """True once something has been in view without any motion for relearn_after_frames frames."""
        if self.settings.relearn_after_frames == 0:
            return False
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        reference = self._still_frame
        if reference is not None:
            moved = np.count_nonzero(cv2.absdiff(grey, reference) > self.settings.pixel_delta)
            if moved < 0.01 * grey.size:
                self._still += 1
                return self._still >= self.settings.relearn_after_frames
        self._still_frame, self._still = grey, 0
        return False

    # ---- item candidates -------------------------------------------------------------------
    def _candidates(self, mask: np.ndarray, scale: tuple[float, float]) -> list[ItemView]:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        smallest = self.settings.leave_fraction * mask.size
        pieces: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (xs, ys, touching), working pixels
        for index in range(1, count):
            if stats[index, cv2.CC_STAT_AREA] < smallest:
                continue
            x, y, w, h = stats[index, :4]
            region = labels[y : y + h, x : x + w] == index
            long_enough = (
                self.axis is not None
                and self.split_longer_than is not None
                and (w, h)[self.axis] * scale[self.axis] > self.split_longer_than
            )
            for part, touching in _split_touching(
                region, self.axis if long_enough else None, self.settings.enter_fraction * mask.size
            ):
                ys, xs = np.nonzero(part)
                pieces.append((xs + x, ys + y, touching))
        views = []
        for xs, ys, touching in _side_by_side(pieces, self.axis, mask.shape):
            if _seam_like(xs, ys, mask.shape):
                continue
            box = (
                int(xs.min() * scale[0]),
                int(ys.min() * scale[1]),
                int(np.ceil((xs.max() + 1) * scale[0])),
                int(np.ceil((ys.max() + 1) * scale[1])),
            )
            centre = ((xs.mean() + 0.5) * scale[0], (ys.mean() + 0.5) * scale[1])
            tilt, upright = _orientation((xs + 0.5) * scale[0], (ys + 0.5) * scale[1])
            views.append(ItemView(box, centre, float(xs.size) / mask.size, touching, tilt, upright))
        return views


def _seam_like(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A thin band across most of the ROI: a seam or splice (thickened by motion blur), never an item."""
    width, height = int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1
    return (width <= _SEAM_PX and height >= 0.5 * shape[0]) or (height <= _SEAM_PX and width >= 0.5 * shape[1])


def _side_by_side(
    pieces: list[tuple[np.ndarray, np.ndarray, bool]], axis: int | None, shape: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Pieces at the same place along the belt and close across it are one item seen in pieces (a garment
    the belt's colour in places): items on a sorting line come one after another, not side by side."""
    if axis is None or len(pieces) < 2:
        return pieces
    across_gap = _SIDE_BY_SIDE_GAP * shape[axis]  # rows across when the belt runs along x
    extents = [(p[axis].min(), p[axis].max(), p[1 - axis].min(), p[1 - axis].max()) for p in pieces]
    group = list(range(len(pieces)))

    def root(index: int) -> int:
        while group[index] != index:
            index = group[index]
        return index

    for i, (a0, a1, c0, c1) in enumerate(extents):
        for j in range(i + 1, len(pieces)):
            b0, b1, d0, d1 = extents[j]
            overlap = min(a1, b1) - max(a0, b0)
            if overlap >= 0.5 * min(a1 - a0, b1 - b0) and max(c0, d0) - min(c1, d1) <= across_gap:
                group[root(j)] = root(i)
    joined: dict[int, list[tuple[np.ndarray, np.ndarray, bool]]] = {}
    for index, piece in enumerate(pieces):
        joined.setdefault(root(index), []).append(piece)
    return [
        (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), any(p[2] for p in parts))
        for parts in joined.values()
    ]


def _orientation(xs: np.ndarray, ys: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
    """How far the region's long axis leans from upright, in degrees (counter-clockwise positive, as
    cv2.getRotationMatrix2D turns; from its second moments), and its box turned upright: middle x, y, width,
    height. A roundish region (less than 1.3 : 1) has no long axis to go by: tilt 0, its box as it is."""
    box = ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, float(np.ptp(xs)) + 1, float(np.ptp(ys)) + 1)
    if xs.size < 10:
        return 0.0, box
    dx, dy = xs - xs.mean(), ys - ys.mean()
    sxx, syy, sxy = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    spread = np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    major, minor = (sxx + syy) / 2 + spread, (sxx + syy) / 2 - spread
    if major < 1.3**2 * max(minor, 1e-6):
        return 0.0, box
    axis = np.arctan2(2 * sxy, sxx - syy) / 2  # the long axis from the x axis, radians, image y pointing down
    cos, sin = np.cos(axis), np.sin(axis)
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    mid_along, mid_across = (along.min() + along.max()) / 2, (across.min() + across.max()) / 2
    middle = (xs.mean() + mid_along * cos - mid_across * sin, ys.mean() + mid_along * sin + mid_across * cos)
    lean = np.degrees(axis) - 90.0 if axis > 0 else np.degrees(axis) + 90.0  # from upright, -90..90
    return float(-lean), (float(middle[0]), float(middle[1]), float(np.ptp(across)) + 1, float(np.ptp(along)) + 1)


def _split_touching(region: np.ndarray, axis: int | None, smallest: float) -> list[tuple[np.ndarray, bool]]:
    """The region as one part, or as two parts (touching) where it has a waist: two deep notches in its
    outline, facing each other across the belt, a short cut apart. Two garments laid against each other leave
    such a waist; one garment rarely does (the notch between a trouser's legs has no partner across the
    waistband). Each part: its mask (the region's shape), touching."""
    whole = [(region, False)]
    if axis is None:
        return whole
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(outline, returnPoints=False)
    try:
        defects = cv2.convexityDefects(outline, hull) if len(hull) > 3 else None
    except cv2.error:  # a self-touching outline OpenCV will not take
        return whole
    if defects is None:
        return whole
    across = region.shape[axis]  # rows when the belt runs along x, columns when along y
    deep = [int(far) for _, _, far, depth in defects.reshape(-1, 4) if depth / 256 > _NOTCH * across]
    notches = [(int(outline[far][0][0]), int(outline[far][0][1])) for far in deep]
    best: tuple[float, list[np.ndarray]] | None = None
    for index, p in enumerate(notches):
        for q in notches[index + 1 :]:
            step = np.subtract(q, p)
            cut = float(np.hypot(*step))
            if abs(step[axis]) > abs(step[1 - axis]) or cut > _CUT * across:
                continue  # the cut must run across the belt, and be short
            parts = _cut(region, p, q, smallest)
            if parts and (best is None or cut < best[0]):
                best = (cut, parts)
    return whole if best is None else [(part, True) for part in best[1]]


def _cut(region: np.ndarray, p: tuple[int, int], q: tuple[int, int], smallest: float) -> list[np.ndarray] | None:
    """The region cut along p-q into its two largest pieces, or None unless both are items in their own right."""
    cut = region.astype(np.uint8)
    cv2.line(cut, p, q, 0, 2)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cut, connectivity=4)
    if count < 3:
        return None
    largest = np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:2] + 1
    areas = stats[largest, cv2.CC_STAT_AREA]
    if areas.min() < max(smallest, 0.25 * region.sum()):
        return None
    return [labels == index for index in largest]


def _clean(changed: np.ndarray) -> np.ndarray:
    """Close gaps, fill holes, then drop everything thin: what remains is item-shaped."""
    mask = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, _CLOSE)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, contours, -1, 1, cv2.FILLED)
    # outside the frame counts as belt: a thin seam along the frame's edge is thin there too
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _prepare(crop_bgr: np.ndarray) -> np.ndarray:
    """Downscaled, blurred float32 BGR copy: cheap, and blind to fine belt grain and sensor noise."""
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.size == 0:
        raise ValueError(f"expected an HxWx3 BGR crop, got shape {crop_bgr.shape}")
    height, width = crop_bgr.shape[:2]
    if width > WORK_WIDTH:
        small_h = max(1, round(height * WORK_WIDTH / width))
        crop_bgr = cv2.resize(crop_bgr, (WORK_WIDTH, small_h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(crop_bgr, (3, 3), 0).astype(np.float32)
