"""How far the belt moves while the camera exposes a frame, read from the items on it.

A moving belt smears everything on it along the travel by the distance it moves during the exposure; across the
travel nothing moves. So the picture's power spectrum along the travel is the one across it times sinc²(f·L), a
box L pixels long: the smear. The lens and the sensor's pixels blur both ways alike and cancel in the ratio; the
sensor's noise, which is not smeared, lies as a floor under it; texture that runs more one way than the other
scales it. Fitting L, the floor and the scale to the ratio, averaged over reads of many items, gives the smear
within a pixel on the simulator's lines (demo/line.py: smears of 0 to 12 px, every belt, 320x240 to 1280x720;
docs/belt.md, "Motion blur").

Why the daemon reads it: a smear costs more right lanes than a coarser camera does. On the simulator's dark-grey
line at 640x480, a 5 px smear sent 139 of 210 unseen garments' crops to the right lane, none 160, three times the
pixels 150 (README, "The camera: pixels and exposure"). The exposure is the camera's setting, not Sortline's: the
figure tells the installer to shorten it (stats ``line.motion_blur_px``, /metrics, the commissioning page).
"""

from __future__ import annotations

import cv2
import numpy as np

PATCH = 64  # pixels a side of the squares whose spectra are read: room for smears up to a quarter of it
MOST_PATCHES = 8  # read in a frame, spread over the items in it: enough texture, little time
EVERY = 3  # frames between reads: the smear changes only when someone changes the camera or the belt's speed
PER_ITEM = 3  # reads of one item at most
READS = 24  # before the first figure (eight items at least); after it each read weighs as much as one of these
LENGTHS = np.arange(0.0, 16.5, 0.5)  # the smears tried, in pixels (0: a flat ratio, nothing smeared)
FLOORS = np.linspace(0.0, 0.5, 26)  # the noise floor's share tried
_FREQUENCIES = np.arange(1, PATCH // 2 + 1) / PATCH  # cycles per pixel, without the mean
# sinc²(f·L) scaled onto the floor, every (length, floor) pair: the shapes the ratio is fitted to, in logs
_SHAPES = np.log(
    (1 - FLOORS[None, :, None]) * np.sinc(LENGTHS[:, None, None] * _FREQUENCIES[None, None, :]) ** 2
    + FLOORS[None, :, None]
)
_WINDOW = np.hanning(PATCH).astype(np.float32)
PLAIN = 1.6  # grey levels: texture weaker than this (its standard deviation across the travel) has no smear to read
_PLAIN_POWER = PLAIN**2 * float((_WINDOW**2).sum())  # what such texture gives a frequency of a windowed square


class MotionBlur:
    """The smear along the travel (`px`, None until read), from the frames presence mode shows it."""

    def __init__(self) -> None:
        self.reset()

    def look(self, roi_bgr: np.ndarray, axis: int, items: dict[int, tuple[int, int, int, int]]) -> None:
        """One frame of the belt running along `axis` (0: x, 1: y), with the items in it (`items`: a key that stays
        the item's while it is in view -> its box, x0, y0, x1, y1 in the ROI's pixels). Every `EVERY`th frame
        with an item is read, and each item `PER_ITEM` times at most: only the items are read, because a belt's
        own texture runs along the travel (worn streaks) and reads as a smear where there is none, and many of
        them, because one garment's stripes or folds can lie all one way."""
        self._times_read = {key: self._times_read.get(key, 0) for key in items}  # the items still in view
        boxes = {key: box for key, box in items.items() if self._times_read[key] < PER_ITEM}
        if not boxes:
            return
        self._frames += 1
        if self._frames % EVERY:
            return
        spectra = _spectra(roi_bgr, axis, list(boxes.values()))
        if spectra is None:
            return
        for key in boxes:
            self._times_read[key] += 1
        self._reads += 1
        weight = 1.0 / min(self._reads, READS)
        self._along += weight * (spectra[0] - self._along)
        self._across += weight * (spectra[1] - self._across)
        if self._reads >= READS:
            self.px = _smear(self._along, self._across)

    def reset(self) -> None:
        """Another view (the ROI moved): read afresh."""
        self.px: float | None = None
        self._frames = 0  # with an item still to read
        self._reads = 0
        self._times_read: dict[int, int] = {}  # each item in view: how often it was read
        self._along = np.zeros(_FREQUENCIES.size)
        self._across = np.zeros(_FREQUENCIES.size)


def _spectra(
    roi_bgr: np.ndarray, axis: int, boxes: list[tuple[int, int, int, int]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean power spectra along and across the travel of up to `MOST_PATCHES` squares inside the items, or None
    where no item holds one or they are too plain to read."""
    corners = [
        (y, x)
        for x0, y0, x1, y1 in boxes
        for y in range(y0, y1 - PATCH + 1, PATCH)
        for x in range(x0, x1 - PATCH + 1, PATCH)
    ]
    if not corners:
        return None
    chosen = np.linspace(0, len(corners) - 1, min(MOST_PATCHES, len(corners))).round().astype(int)
    patches = np.stack([roi_bgr[y : y + PATCH, x : x + PATCH] for y, x in (corners[i] for i in chosen)])
    grey = cv2.cvtColor(patches.reshape(-1, PATCH, 3), cv2.COLOR_BGR2GRAY).reshape(-1, PATCH, PATCH)
    grey = grey.astype(np.float32) if axis == 0 else grey.transpose(0, 2, 1).astype(np.float32)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    along = (np.abs(np.fft.rfft(grey * _WINDOW[None, None, :], axis=2)) ** 2).mean(axis=(0, 1))[1:]
    across = (np.abs(np.fft.rfft(grey * _WINDOW[None, :, None], axis=1)) ** 2).mean(axis=(0, 2))[1:]
    if across.mean() < _PLAIN_POWER:
        return None
    return along, across


def _smear(along: np.ndarray, across: np.ndarray) -> float:
    """The box length whose sinc² (over a noise floor, times a scale) fits the along/across ratio best, in logs."""
    ratio = np.log(np.maximum(along, 1e-9) / np.maximum(across, 1e-9))
    residual = ratio[None, None, :] - _SHAPES
    residual -= residual.mean(axis=2, keepdims=True)  # the scale: whatever fits best
    error = (residual**2).mean(axis=2)
    length, _ = np.unravel_index(int(np.argmin(error)), error.shape)
    return float(LENGTHS[length])
