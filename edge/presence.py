"""Where are items on the belt? Change against a learned model of the moving, empty belt.

A real belt moves: its grain, seams and scuff marks pass under the camera all the time, the light drifts and
flickers, and a dark garment on a dark belt differs from it by a few grey levels. So the empty belt is learned
per pixel as a colour *and how much it varies there* (mean and spread, in colour, on a small blurred copy of
the ROI): where the belt's texture passes, a pixel varies and needs a larger change to count; where the belt
is plain, a small change is an item. Each frame is first divided by the light's gain (measured on the pixels
that look like belt), so drift and mains flicker cancel, and per channel by the light's colour where that
changed (a lamp of another colour, a camera's automatic white balance); where the camera clips (a white belt at
the light's peak reads 255 however bright the light), the gain is read from the rest, and the belt is expected
no brighter than the camera shows. The model keeps learning while the line runs, on the pixels that look like
belt only (and not clipped), so an item is never learned into it, and not while the belt stands: a standing belt
shows one stretch of itself, and items on it stay items however long it stands. Where part of the view stays
unlike the belt for longer than the running belt takes to carry an item past (the camera knocked aside), the
belt is learned again.

Bands across the belt (a modular belt's hinges, splices: `edge.belt_bands`) are taken for belt first. What
changed is then read by shape (`edge.item_shapes`): seams, marks and pieces are told from items, and two items
touching are told apart. A region wholly in view is looked at again at twice that resolution, where two items
laid a centimetre or two apart still have belt between them that the working resolution closes, and two laid
edge to edge show the waist their outlines make.

A frame costs under 2 ms on one core at the median, under 3 ms at p99 (160 pixels across, whatever the camera):
`bench/belt.py --detection-only` measures it, README has the figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from edge import medians
from edge.belt_bands import BANDED, Bands, BandSlants, find_bands
from edge.channels import any_channel
from edge.config import PresenceSettings
from edge.item_shapes import CLOSE, ItemView, apart_at, box_overlap, clean, find_items

log = logging.getLogger(__name__)

WORK_WIDTH = 160  # pixels across the downscaled ROI; items are far larger than that resolution needs
# after learning, what was learned is checked on frames the belt moves in, every second and third in turn: a
# fixed stride can keep meeting a patterned belt in one phase (a hinge every 48 px, 24 px a frame: every second
# frame shows the hinges in the same places), and the check then learns them into the belt
CHECK_GAPS = (2, 3)
CHECKED_WHEN_UNDER = 0.02  # share of the belt a check learned again: under this, what was learned stands
STANDING_FRAMES = 15  # frames without motion after which the belt stands: its model stops learning
BANDED_LATELY = 45  # frames (3 s at 15 fps) after bands across the belt were last seen that it counts as banded
STOOD_BEFORE_NEW = 0.2  # share of what stands out, new since the frame before, that makes a still scene "at once"
# what lies this near something that stood out the frame before was there: an item moves up to 7 working pixels
# a frame (28 px of a 640-px ROI, 420 px/s at 15 fps) as a belt stops
NEAR = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
# on a belt with bands across it the light's gain is the most common ratio of now to the learned belt: read
# from a histogram of GAIN_BINS_PER_UNIT bins per unit of ratio, then the median of the ratios within GAIN_NEAR
# of its peak
GAIN_BINS_PER_UNIT, GAIN_NEAR = 200, 0.05
# a level (working copy, blurred) at which the camera has clipped: a white belt under a bright lamp reads this
# however much brighter the light gets, so it says nothing of the light's gain, nor how bright the belt is
CLIPPED = 250.0
CLIPPED_ENOUGH = 0.02  # share of the view: unclipped belt pixels enough to read the light's gain from
# pixels across the ROI where a region wholly in view is looked at again for two items a little apart: twice the
# working resolution sees 11 px of belt between two items on a 640-px view, and costs a quarter of the camera's own
FINE_WIDTH = 2 * WORK_WIDTH
# there a pixel is an item's when it differs from the belt by this many times the change that counts at working
# resolution: the belt's grain and the sensor's noise, which the coarser copy averages away, show more
APART_LIMIT = 2.0
_SPECK = np.ones((3, 3), np.uint8)  # what is thinner than this there is noise, not an item
# where the finer look would cut a region in two, a band this many fine pixels either side of the cut: what it
# takes for belt there must mostly (less than BELT_AT_DIFFERS of it differing) be belt at the working limit too
BELT_AT_HALF, BELT_AT_DIFFERS = 2, 0.5
# looks in a row (one every LOOK_EVERY frames: two items laid close are in full view for a dozen frames or more) a
# region must be seen holding two items before it is told apart: a crease across a pale garment on a pale belt can
# look like belt between two items for a frame
APART_LOOKS, LOOK_EVERY = 2, 2
# share of the first frame after a start that may differ from the belt the last run kept: items in view cover up
# to about half of a crowded line's view; another belt, another lamp or a camera that moved differ almost everywhere
KEPT_DIFFERS_AT_MOST = 0.5
# the light's colour against the learned belt's, per channel, that is a change of colour: under it the reading's
# own noise (p99 0.002-0.013 on the matrix's and the modular belts, at most 0.018), and the belt model's learning
# follows slow changes
TINTED_AT_LEAST = 0.03
PLAIN_WITHIN = 0.03  # the colour is read where the belt's brightness is the gain's within this
# a pixel unlike the belt for this many frames in a row while the belt moves is not an item's (until whoever knows
# the belt's speed and the line's items says how long an item takes to pass: `stays_at_most`)
STAYS_AT_MOST = 300
# share of the view stayed unlike the belt that long that makes it learned again: the camera knocked 8-14 px aside
# while the belt ran left the rails' edges and the belt's streaks where they were not, a region across the whole
# view from then on (session 41: 22-26 of 30 items missed, 2-11 `too_long` rejects)
STAYED_SHARE = 0.01
# the light then against the light when it was kept: beyond this either way, it is not the same scene. The gain
# hides a grey belt swapped for a lighter or darker grey one (light grey kept, dark grey now: 35 % differs)
KEPT_LIGHT_WITHIN = 1.33


@dataclass(frozen=True)
class EmptyBelt:
    """The learned empty belt: colour and spread per pixel (HxWx3 float32, working resolution, at the light it
    was first learned in) and the light's gain when it was taken."""

    mean: np.ndarray
    spread: np.ndarray
    gain: float
    # how bands across it slant (`BandSlants`), travel along x and y: a restart on a rolled camera knows it at once
    slants: tuple[float, float] = (0.0, 0.0)


class PresenceDetector:
    """Feed it every ROI crop in order; `items` then holds the item candidates of that frame."""

    def __init__(self, settings: PresenceSettings) -> None:
        self.settings = settings
        self.items: list[ItemView] = []
        self.gain = 1.0  # the light now, relative to when the belt was learned
        self.tint: np.ndarray | None = None  # its colour, per channel (BGR) beside the gain; None: as learned
        # frames the belt moves while an item passes a pixel, at most (set from the line's items and the belt's
        # speed by whoever knows them)
        self.stays_at_most = STAYS_AT_MOST
        self.relearned = 0  # times part of the view stayed unlike the running belt, and it was learned again
        self._stayed = np.zeros((0, 0), np.uint16)  # HxW: frames in a row each pixel differed while the belt moved
        self.axis: int | None = None  # the belt's travel: 0 along x, 1 along y (set by whoever knows it)
        # a region longer than this along the belt (ROI pixels) may be two items touching: looked at for a
        # waist (set from the line's usual item length by whoever knows it)
        self.split_longer_than: float | None = None
        # a band across the belt shorter than this along it (ROI pixels) is a splice or cleat, not an item (set
        # from the line's usual item length by whoever knows it)
        self.seam_shorter_than: float | None = None
        self.relearned_share = 0.0  # of the belt model, by the last check after learning (`_check_learned`)
        self.checks = 0  # checks since the belt was learned
        self._learning: list[np.ndarray] = []
        self._mean: np.ndarray | None = None  # float32 HxWx3, working resolution, at gain 1
        self._spread: np.ndarray | None = None  # float32 HxWx3: how much the belt varies at each pixel
        self._belt_mask: np.ndarray | None = None  # bool HxW: the pixels that looked like belt last frame
        self._bands: list[Bands | None] = [None, None]  # this frame's across the belt, travel along x and y
        self.band_slants = BandSlants()  # how bands across the belt slant (a camera turned about its axis)
        self._grey_mean = np.zeros(0, np.float32)  # the belt's mean in grey, for the light's gain
        self._peak = 0.0  # the belt's brightest channel anywhere: whether the camera may clip it
        self._limit = np.zeros(0, np.float32)  # HxWx3: the change that counts, per pixel and channel
        self._still_frame: np.ndarray | None = None  # first frame of the current still period, at gain 1
        self._still = 0  # frames since it without motion
        # what stood out in the first frame of the still period, and in the frame before it
        self._still_began: tuple[np.ndarray, np.ndarray | None] | None = None
        self._last_mask: np.ndarray | None = None  # what stood out last frame
        self._checking: list[np.ndarray] | None = None  # frames for `_check_learned`, while it is due
        self._moving_frames = 0  # frames the belt moved in, since the check began
        self._next_check = CHECK_GAPS[0]  # ... and the one of them to look at next
        self._last_grey: np.ndarray | None = None  # the frame before, for whether the belt moves
        self._apart: list[tuple[tuple[int, int, int, int], int]] = []  # regions holding two items: looks in a row
        self._frames = 0  # frames detected in since the belt was learned: which of them look again
        self._since_banded = BANDED_LATELY  # frames since bands across the belt covered a tenth of the view
        self._kept: EmptyBelt | None = None  # the belt the last run kept, for the first frame

    @property
    def learning(self) -> bool:
        """Still learning the empty belt: nothing is detected yet."""
        return self._mean is None

    @property
    def standing(self) -> bool:
        """The belt stands still (nothing in view has moved for STANDING_FRAMES frames)."""
        return self._mean is not None and self._still >= STANDING_FRAMES

    @property
    def banded_lately(self) -> bool:
        """Bands across the belt (a modular belt's hinges) covered a tenth of the view in one of the last
        `BANDED_LATELY` frames: pieces of hinges, moving with the belt, are about as big as small items there."""
        return self._since_banded < BANDED_LATELY

    def reset(self) -> None:
        """Forget the belt and learn it again (new camera, moved ROI, light changed at once)."""
        self._learning.clear()
        self._mean = self._spread = self._belt_mask = None
        self._still_frame, self._still, self._still_began, self._last_mask = None, 0, None, None
        self._checking, self._last_grey, self._moving_frames, self._next_check = None, None, 0, CHECK_GAPS[0]
        self._bands = [None, None]
        self.band_slants = BandSlants()
        self._apart, self._frames, self._since_banded = [], 0, BANDED_LATELY
        self.checks = 0
        self.items, self.gain, self.tint, self._stayed = [], 1.0, None, np.zeros((0, 0), np.uint16)
        self._kept = None

    def start_from(self, belt: EmptyBelt) -> None:
        """Start from the empty belt a run before kept (`edge.line_memory`) instead of learning it while items
        pass unseen: it is tried on the next frame, and used if that frame differs from it no more than items in
        view would and under much the same light, then checked by the same longer look as a freshly learned
        belt."""
        self.reset()
        self._kept = belt

    @property
    def checked_belt(self) -> EmptyBelt | None:
        """The empty belt once a longer look has agreed with it: what is worth keeping."""
        if self._mean is None or self._spread is None or self._checking is not None:
            return None
        return EmptyBelt(self._mean, self._spread, self.gain, self.band_slants.slants)

    def update(self, crop_bgr: np.ndarray) -> list[ItemView]:
        small = _prepare(crop_bgr)
        if self._mean is not None and small.shape != self._mean.shape:
            log.warning("presence: ROI size changed to %s; learning the empty belt again", crop_bgr.shape[:2])
            self.reset()
        if self._kept is not None:
            self._try_kept(small)
        if self._mean is None:
            self._learn(small)
            return self.items
        changed = self._changed(small)
        stays = not self.standing and self._stays(changed)
        banded = self._banded()
        self._since_banded = 0 if banded else self._since_banded + 1
        mask = clean(self._item_pixels(changed))
        scale = crop_bgr.shape[1] / small.shape[1], crop_bgr.shape[0] / small.shape[0]
        items = find_items(
            mask,
            scale,
            self.axis,
            self.split_longer_than,
            self.settings.leave_fraction,
            self.settings.enter_fraction,
            self.seam_shorter_than,
            banded=banded,
        )
        self.items = self._told_apart(crop_bgr, items, scale)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        self._follow_stillness(grey * (1.0 / self.gain), mask)
        if not self.standing:  # a standing belt shows one stretch of itself: its spread is not learned
            self._follow_the_belt(small, changed)
        self._check_learned(small, grey)
        if self.items and 0 < self.settings.relearn_after_frames <= self._still and self._appeared_at_once():
            log.warning(
                "presence: %d frames with something in view that came at once and does not move (the light "
                "changed, or the camera moved); learning the empty belt again",
                self._still,
            )
            self.reset()
        elif stays:
            self.relearned += 1
            self.reset()
        return self.items

    # ---- two items close together -------------------------------------------------------------
    def _told_apart(self, crop_bgr: np.ndarray, views: list[ItemView], scale: tuple[float, float]) -> list[ItemView]:
        """Each region wholly in view, looked at again at `FINE_WIDTH`: where it holds two items lying one after
        the other (`apart_at`: laid a centimetre or two apart, a gap the working resolution closes, or edge to
        edge with a waist in their outline) in `APART_LOOKS` looks in a row, it is two touching views, so that
        each item gets its own decision and neither a lane. Once told apart, the tracker keeps them apart in the
        frames between looks."""
        axis = self.axis
        self._frames += 1
        if axis is None or self._frames % LOOK_EVERY:
            return views
        size = crop_bgr.shape[1 - axis]  # the ROI's extent along the travel
        fine = min(1.0, FINE_WIDTH / crop_bgr.shape[1])  # fine pixels per ROI pixel, each way
        roi_pixels = crop_bgr.shape[0] * crop_bgr.shape[1] * fine**2
        told: list[ItemView] = []
        apart: list[tuple[tuple[int, int, int, int], int]] = []
        for view in views:
            start, end = view.box[axis], view.box[axis + 2]
            cut = None
            if not view.touching and start > 0 and end < size:
                difference, limit = self._differences(crop_bgr, view.box, scale, fine)
                pixels = cv2.morphologyEx(
                    any_channel(difference > APART_LIMIT * limit).astype(np.uint8), cv2.MORPH_OPEN, _SPECK
                )
                # what the working resolution saw of it, and the least an item is, in fine pixels
                cut = apart_at(pixels, axis, self.settings.enter_fraction * roi_pixels, view.area * roi_pixels)
                if cut is not None and not _belt_at(cut, axis, pixels, difference, limit):
                    cut = None
            if cut is not None:
                looks = 1 + max((n for box, n in self._apart if box_overlap(box, view.box) >= 0.5), default=0)
                apart.append((view.box, looks))
                if looks < APART_LOOKS:
                    cut = None
            if cut is None:
                told.append(view)
            else:
                at = start + round(cut / fine)
                told += [view.stretch(axis, start, at), view.stretch(axis, at, end)]
        self._apart = apart
        return told

    def _differences(
        self, crop_bgr: np.ndarray, box: tuple[int, int, int, int], scale: tuple[float, float], fine: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Within `box` (ROI pixels), at `fine` of the ROI's resolution: how much the frame differs from the belt
        and the change that counts at working resolution, per pixel and channel. The learned belt and its
        variation are brought up to that resolution for the box alone."""
        assert self._mean is not None
        x0, y0, x1, y1 = box
        (sx, sy), (height, width) = scale, self._mean.shape[:2]
        seen = crop_bgr[y0:y1, x0:x1]
        if fine < 1.0:
            shape = (max(1, round((x1 - x0) * fine)), max(1, round((y1 - y0) * fine)))
            seen = cv2.resize(seen, shape, interpolation=cv2.INTER_AREA)
        seen = cv2.GaussianBlur(seen, (3, 3), 0).astype(np.float32)
        seen *= 1.0 / self._light()
        wx0, wy0 = max(0, int(x0 / sx) - 1), max(0, int(y0 / sy) - 1)
        wx1, wy1 = min(width, int(np.ceil(x1 / sx)) + 1), min(height, int(np.ceil(y1 / sy)) + 1)
        fx, fy = sx * fine, sy * fine  # fine pixels per working pixel
        shape = (round((wx1 - wx0) * fx), round((wy1 - wy0) * fy))
        ox, oy = round(x0 * fine - wx0 * fx), round(y0 * fine - wy0 * fy)
        inside = slice(oy, oy + seen.shape[0]), slice(ox, ox + seen.shape[1])
        mean = cv2.resize(self._mean[wy0:wy1, wx0:wx1], shape, interpolation=cv2.INTER_LINEAR)[inside]
        limit = cv2.resize(self._limit[wy0:wy1, wx0:wx1], shape, interpolation=cv2.INTER_LINEAR)[inside]
        seen = seen[: mean.shape[0], : mean.shape[1]]
        return cv2.absdiff(seen, mean), limit

    # ---- the empty belt --------------------------------------------------------------------
    def _learn(self, small: np.ndarray) -> None:
        self._learning.append(small)
        if len(self._learning) < self.settings.background_frames:
            return
        # median and median absolute deviation: an item crossing during learning is ignored, as is a seam; each
        # frame first brought to the light of their median, so that the flicker is not learned as the belt's
        # spread (unless the camera clips: a clipped frame says nothing of its light)
        frames = np.stack(self._learning)
        if np.mean(frames >= CLIPPED) < CLIPPED_ENOUGH:
            median = medians.median(frames)
            lights = np.median(frames / np.maximum(median, 1.0), axis=(1, 2, 3))
            frames /= lights[:, None, None, None]
        self._mean = medians.median(frames).astype(np.float32)
        self._spread = _spread(frames, self._mean)
        self._belt_mask = np.ones(small.shape[:2], bool)
        self._learning.clear()
        self._checking = []
        self._derive()
        # bands across the belt may slant: known before the first frame is looked at, read from every other frame
        # learned from (0.1-0.2 ms a reading, each way while the travel is unknown: 5 ms on this frame, once)
        for frame in frames[::2]:
            signed, changed = self._differs(frame)
            self.band_slants.read(signed, self._limit, changed, self._axes)

    def _try_kept(self, small: np.ndarray) -> None:
        """Use the kept belt if this frame agrees with it but for what items in view would cover, under much
        the same light."""
        kept, self._kept = self._kept, None
        assert kept is not None
        if kept.mean.shape != small.shape:
            return
        self._mean, self._spread = kept.mean.copy(), kept.spread.copy()
        self.band_slants = BandSlants(kept.slants)  # until readings of its own take over
        self._belt_mask = np.ones(small.shape[:2], bool)
        self._derive()
        differs = float(np.mean(self._changed(small)))
        light = self.gain / kept.gain
        if differs > KEPT_DIFFERS_AT_MOST or not 1 / KEPT_LIGHT_WITHIN <= light <= KEPT_LIGHT_WITHIN:
            log.warning(
                "presence: the empty belt kept by the last run does not fit the view (%.0f %% of it differs, the "
                "light %.2f times as bright): another belt, lamp or camera position; learning it again",
                100 * differs,
                light,
            )
            self.reset()
            return
        log.info(
            "presence: starting from the empty belt kept by the last run (%.0f %% of the view differs)", 100 * differs
        )
        self._checking = []  # checked by a longer look, as a freshly learned belt is

    def _derive(self) -> None:
        """What each frame compares against, worked out once per model update instead of per pixel test."""
        assert self._mean is not None and self._spread is not None
        self._grey_mean = cv2.cvtColor(self._mean, cv2.COLOR_BGR2GRAY)
        self._peak = float(self._mean.max())
        self._limit = np.maximum(self.settings.sigmas * self._spread, float(self.settings.pixel_delta))

    def _changed(self, small: np.ndarray) -> np.ndarray:
        """Pixels that differ from the belt by more than its own variation there, after the light's gain, and
        that no band across the belt explains."""
        assert self._mean is not None and self._spread is not None and self._belt_mask is not None
        # the gain from every other pixel that looked like belt last frame: plenty, at a quarter of the cost
        quarter = np.ascontiguousarray(small[::2, ::2])
        grey_now = cv2.cvtColor(quarter, cv2.COLOR_BGR2GRAY)
        grey_belt = self._grey_mean[::2, ::2]
        belt = self._belt_mask[::2, ::2] & (grey_belt > 4)
        if np.count_nonzero(belt) > 0.1 * belt.size:  # with the belt mostly covered, keep the last gain
            belt = self._lit(grey_now, grey_belt, belt)
            ratio = grey_now / np.maximum(grey_belt, 1.0)  # now against the belt, per pixel
            self.gain = self._gain(ratio, belt)
            self.tint = self._tint(small, quarter, ratio, belt)
        signed, changed = self._differs(small)
        self.band_slants.now_and_then(signed, self._limit, changed, self._axes)
        self._bands = self._find_bands(signed, changed)
        for bands in self._bands:
            if bands is not None:  # where a band's offset explains a pixel, it is belt
                bands.explain(changed)
        return changed

    def _differs(self, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame at the learned light minus the belt as the camera can show it (signed), and where that is
        more than the belt's own variation."""
        assert self._mean is not None
        scale = 1.0 / self._light()
        normalised = small * scale
        if max(1.0, self.gain) * self._peak < CLIPPED:  # nowhere near the camera's ceiling: the usual case
            signed = cv2.subtract(normalised, self._mean)
            difference = np.abs(signed)
        else:  # the belt as the camera can show it; where it was learned clipped, it was at least that bright
            expected = np.minimum(self._mean, CLIPPED * scale)
            signed = cv2.subtract(normalised, expected)
            difference = np.abs(signed)
            if self._peak >= CLIPPED:
                difference *= ~((self._mean >= CLIPPED) & (normalised > expected))
        return signed, any_channel(difference > self._limit)

    def _find_bands(self, signed: np.ndarray, changed: np.ndarray) -> list[Bands | None]:
        """Bands across the belt (a modular belt's hinges, splices), for travel along x and along y: before the
        travel is known, across either way."""
        bands: list[Bands | None] = [None, None]
        for axis in self._axes:
            bands[axis] = find_bands(signed, self._limit, changed, axis, self.band_slants.slants[axis])
        return bands

    @property
    def _axes(self) -> tuple[int, ...]:
        """The travel's axis, or both while it is not known."""
        return (0, 1) if self.axis is None else (self.axis,)

    def _between_bands(self) -> np.ndarray:
        """HxW: not in a column (or row) where this frame has a band across the belt."""
        assert self._mean is not None
        between = np.ones(self._mean.shape[:2], bool)
        for bands in self._bands:
            if bands is not None:
                between &= ~bands.covering(between.shape)
        return between

    def _item_pixels(self, changed: np.ndarray) -> np.ndarray:
        """What the item shapes are read from: `changed`, on a banded belt without the hinges its bands missed."""
        for bands in self._bands:
            if bands is not None and bands.share >= BANDED:
                changed = bands.without_thin_hinges(changed)
        return changed

    def _banded(self) -> bool:
        """Bands across the belt (a modular belt's hinges) covered a tenth of the view in the last frame looked at."""
        return max((bands.share for bands in self._bands if bands is not None), default=0.0) >= BANDED

    def _light(self) -> float | np.ndarray:
        """What a frame is divided by to bring it to the light the belt was learned in: the gain, and per channel
        (BGR) where the light's colour changed."""
        return self.gain if self.tint is None else self.gain * self.tint

    def _lit(self, grey_now: np.ndarray, grey_belt: np.ndarray, belt: np.ndarray) -> np.ndarray:
        """The pixels to read the light from: those that look like belt. Where the camera clips (a white belt at
        the light's peak reads 255 however bright the light), now or as the belt was learned, a ratio says
        nothing: then it is read from the rest of the belt, if enough is left."""
        if max(1.0, self.gain) * self._peak >= CLIPPED or grey_now.max() >= CLIPPED:
            unclipped = belt & (grey_now < CLIPPED) & (grey_belt * max(1.0, self.gain) < CLIPPED)
            if np.count_nonzero(unclipped) > CLIPPED_ENOUGH * belt.size:
                return unclipped
        return belt

    def _gain(self, ratio: np.ndarray, belt: np.ndarray) -> float:
        """The light now against the learned belt: the median ratio over the pixels `belt`. Where bands across the
        belt (a modular belt's hinges) covered a tenth of the view last frame, the pixels that were belt may hold
        hinges now: a fifth to a third of them 20-30 % darker would pull the median down by a few per cent, more
        than the belt's own variation, so there the most common ratio is taken instead (the median of those near
        it)."""
        ratios = ratio[belt]
        if not self._banded():
            return float(medians.median(ratios))
        counts = np.bincount(np.minimum(ratios * GAIN_BINS_PER_UNIT, 3 * GAIN_BINS_PER_UNIT).astype(int))
        peak = np.argmax(cv2.GaussianBlur(counts.astype(np.float32)[None], (9, 1), 0)) / GAIN_BINS_PER_UNIT
        return float(medians.median(ratios[np.abs(ratios - peak) <= GAIN_NEAR]))

    def _tint(self, small: np.ndarray, quarter: np.ndarray, ratio: np.ndarray, belt: np.ndarray) -> np.ndarray | None:
        """The light's colour now against the learned belt's, per channel: the belt's mean now over its mean as
        learned, over the same in grey, where the belt is as bright as the gain says (not a hinge, seam or mark
        passing: a hinge 40 levels darker takes a dark channel to nothing and the others by a third). A lamp of
        another colour or a camera's white balance moves the channels apart at once: blue up a tenth and red down
        a tenth made the whole view differ from the belt for as long as it lasted. None where no channel moved by
        `TINTED_AT_LEAST`, or where it did not move alike all over the view (`_everywhere`)."""
        assert self._mean is not None and self._belt_mask is not None
        # the usual frame first, cheaply: at every fourth pixel that looked like belt last frame (hinges and marks
        # too), hardly a move
        coarse = _colour(small[::4, ::4], self._mean[::4, ::4], self._belt_mask[::4, ::4])
        if self.tint is None and max(abs(t - 1.0) for t in coarse) < TINTED_AT_LEAST / 2:
            return None
        plain = belt & (np.abs(ratio - self.gain) <= PLAIN_WITHIN)
        if np.count_nonzero(plain) < 0.1 * plain.size:
            return self.tint
        learned = np.ascontiguousarray(self._mean[::2, ::2])  # as `quarter`
        tint = np.float32(_colour(quarter, learned, plain))
        if np.abs(tint - 1.0).max() < TINTED_AT_LEAST or not self._everywhere(quarter, learned, plain, tint):
            return None
        return tint

    @staticmethod
    def _everywhere(quarter: np.ndarray, learned: np.ndarray, plain: np.ndarray, tint: np.ndarray) -> bool:
        """The light's colour moved alike in each quarter of the view that shows enough plain belt (at least half
        of `tint`'s move there): a camera's white balance, a lamp over all of it. A warmer lamp over half the belt
        read as half its move everywhere, so the other half then differed too; such a part of the view has the
        belt learned again instead (`_stays`)."""
        move = tint - 1.0
        height, width = plain.shape
        for rows in (slice(0, height // 2), slice(height // 2, height)):
            for columns in (slice(0, width // 2), slice(width // 2, width)):
                where = plain[rows, columns]
                if np.count_nonzero(where) < 0.1 * where.size:
                    continue  # too little plain belt there to read the light from
                moved = np.float32(_colour(quarter[rows, columns], learned[rows, columns], where)) - 1.0
                if np.abs(moved - move).max() > 0.5 * np.abs(move).max():
                    return False
        return True

    def _follow_the_belt(self, small: np.ndarray, changed: np.ndarray) -> None:
        """Keep learning where the pixel looks like belt (and a little away from anything that does not)."""
        assert self._mean is not None and self._spread is not None
        belt = ~cv2.dilate(changed.astype(np.uint8), CLOSE).astype(bool)
        belt &= self._between_bands()  # a band passing is not the belt as learned: neither learned nor gain
        self._belt_mask = belt
        rate = self.settings.background_rate
        if rate <= 0:
            return
        if small.max() >= CLIPPED:  # a clipped pixel is at least as bright as it shows: it teaches nothing
            belt = belt & cv2.inRange(small, (0.0, 0.0, 0.0), (CLIPPED - 0.01,) * 3).astype(bool)
        weight = belt.astype(np.float32)
        weight *= rate
        weight = cv2.merge([weight, weight, weight])  # per channel: numpy broadcasts an HxWx1 ten times slower
        step = small / self._light() - self._mean  # in place from here: a frame's worth of temporaries fewer
        deviation = np.abs(step)
        step *= weight
        self._mean += step
        deviation *= 1.2533  # mean |dev| * sqrt(pi/2) = sigma
        deviation -= self._spread
        deviation *= weight
        self._spread += deviation
        self._derive()

    def _check_learned(self, small: np.ndarray, grey: np.ndarray) -> None:
        """After the belt is learned, until a look agrees with it: learn it again where a longer look disagrees.
        `background_frames` frames in a row are about a second: started on a running, crowded line, an item that
        lay under part of the view for most of them is learned into the belt there. The belt passing there then
        differs from the model, so it is never learned back, and items crossing the ghost come out in pieces or
        joined to it (bench: a restart on a crowded line, misses and phantoms for the next 12 s). So the next
        `background_frames` frames in which the belt moves, one in two or three (`CHECK_GAPS`), give a median over
        several seconds, and where it differs from the model (as an item would) it replaces it. A belt standing
        still is not looked at: an item stopped on it would be learned."""
        if self._checking is None:  # checked: nothing more to do on any frame
            self._last_grey = None
            return
        last, self._last_grey = self._last_grey, grey
        if last is None or last.shape != grey.shape:
            return
        moving = self._moved(grey, last)
        self._moving_frames += moving
        if not moving or self._moving_frames < self._next_check:
            return
        self._next_check += CHECK_GAPS[len(self._checking) % len(CHECK_GAPS)]
        self._checking.append(small / self._light())
        if len(self._checking) < self.settings.background_frames:
            return
        assert self._mean is not None and self._spread is not None
        frames, self._checking = np.stack(self._checking), None
        median = medians.median(frames).astype(np.float32)
        spread = _spread(frames, median)
        # measured by the longer look's spread: the model's own is swollen where an item came and went in it
        limit = np.maximum(self.settings.sigmas * spread, float(self.settings.pixel_delta))
        wrong = any_channel(np.abs(median - self._mean) > limit)
        self.relearned_share = float(wrong.mean())
        self.checks += 1
        if wrong.any():
            self._mean[wrong], self._spread[wrong] = median[wrong], spread[wrong]
            self._derive()
        if self.relearned_share > CHECKED_WHEN_UNDER:  # the look itself may have had an item in it: look again
            self._checking = []
            log.info(
                "presence: %.1f %% of the belt learned again (something lay there while it was learned)",
                100 * self.relearned_share,
            )

    def _stays(self, changed: np.ndarray) -> bool:
        """Count, per pixel, the frames in a row it differed from the belt while the belt moved; whether a share of
        the view has stayed unlike the belt for longer than an item takes to pass. No item is there: the belt is
        not what was learned (the camera knocked aside, a lamp over part of it), and it is learned again, as at
        a start, then checked by a longer look. (Looking again only where a longer look disagreed left a knocked
        modular belt's hinges in pieces near its edge: 84 against 57 items missed on 16 knocked lines, and one
        piece an item.) An item held still on a running belt (caught at a guide) is learned into it so."""
        if self._checking is not None:  # just learned: the check looks at it anyway
            return False
        if self._stayed.shape != changed.shape:
            self._stayed = np.zeros(changed.shape, np.uint16)
        self._stayed += 1  # a pixel unlike the belt for 65536 frames starts again from 0: no matter
        self._stayed *= changed
        stayed = np.count_nonzero(self._stayed >= self.stays_at_most)
        if stayed < STAYED_SHARE * changed.size:
            return False
        log.warning(
            "presence: %.1f %% of the view has been unlike the empty belt for %d frames while the belt ran, longer "
            "than an item takes to pass (the camera moved, or a lamp changed over part of the belt); learning the "
            "empty belt again",
            100 * stayed / changed.size,
            self.stays_at_most,
        )
        return True

    def _follow_stillness(self, grey: np.ndarray, mask: np.ndarray) -> None:
        """Count the frames since anything moved (`grey` at the learned light, so drift and flicker are no
        motion), and keep what stood out as the still period began, and the frame before."""
        reference = self._still_frame
        if reference is not None and not self._moved(grey, reference):
            self._still += 1
        else:
            self._still_frame, self._still = grey, 0
            self._still_began = (mask, self._last_mask)
        self._last_mask = mask

    def _appeared_at_once(self) -> bool:
        """What stands out in the still period was not there (or near) the frame before it began: a lamp
        switched on or a camera knocked shows what appeared at once; a belt that stopped with items on it shows
        what was moving a frame ago. Worked out only when a still period has lasted, not on every frame."""
        assert self._still_began is not None
        mask, before = self._still_began
        if before is None:
            before = np.zeros_like(mask)
        new = mask & ~cv2.dilate(before.astype(np.uint8), NEAR).astype(bool)
        return np.count_nonzero(new) > STOOD_BEFORE_NEW * np.count_nonzero(mask)

    def _moved(self, grey: np.ndarray, before: np.ndarray) -> bool:
        """Something moved between two grey frames: 1 % of the pixels changed by more than `pixel_delta`."""
        return bool(np.count_nonzero(cv2.absdiff(grey, before) > self.settings.pixel_delta) >= 0.01 * grey.size)


def _belt_at(cut: int, axis: int, items: np.ndarray, difference: np.ndarray, limit: np.ndarray) -> bool:
    """Whether what the finer look takes for belt where it would cut a region in two (`items`: what it takes for
    items there) is belt at the working resolution's own limit too (`difference`, `limit`: `_differences`).
    Two items laid apart have belt between them; a dark garment on a pale card, on a dark belt, comes apart at
    the finer look's looser limit into the card's two pale strips, and what lies between them still differs
    from the belt (a 210-item dark rubber line: one trousers photo, two `touching` rejects)."""
    band = slice(max(0, cut - BELT_AT_HALF), cut + BELT_AT_HALF + 1)
    at = (slice(None), band) if axis == 0 else (band, slice(None))
    between = items[at] == 0
    differs = any_channel(difference[at] > limit[at])
    return bool(not between.any() or np.count_nonzero(differs[between]) < BELT_AT_DIFFERS * np.count_nonzero(between))


def _spread(frames: np.ndarray, median: np.ndarray) -> np.ndarray:
    """How much the belt varies at each pixel over `frames` (NxHxWx3) about their `median`: the median absolute
    deviation as a standard deviation, then twice more without the deviations beyond three of it. A modular
    belt's hinges pass each pixel in a fifth to a third of the frames and swell the plain median deviation (by
    half on `modular-blue`: 1.64 against 1.08 grey levels); the limit from it then sees the hinges only in part,
    and parts of hinges look like items. On a plain belt trimming lowers it by a tenth (dark rubber: 0.60 ->
    0.54), where the limit's `pixel_delta` floor holds anyway."""
    ordered = np.sort(np.abs(frames - median), axis=0)  # each pixel's deviations, least first
    spread = 1.4826 * medians.middle(ordered)
    for _ in range(2):  # (sorted, so those within three spreads are the first ones, at least one)
        spread = 1.4826 * _median_of_first(ordered, np.count_nonzero(ordered <= 3 * spread, axis=0))
    return spread.astype(np.float32)


def _median_of_first(ordered: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per pixel, the median of the first `count` values of `ordered` (sorted along axis 0): what np.nanmedian
    gives with the other values masked out, in a tenth of the time. The frame that ended the learning took
    140 ms with it, a stall of the frame loop in which a live camera's frames are dropped (seconds on a
    loaded board: an item passed unseen)."""
    low = np.take_along_axis(ordered, ((count - 1) // 2)[None], axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2)[None], axis=0)[0]
    return (low + high) / 2


def _colour(now: np.ndarray, learned: np.ndarray, where: np.ndarray) -> list[float]:
    """Per channel (BGR), the mean of `now` over that of `learned` where `where`, over the same in grey: how the
    light's colour moved, its brightness left out."""
    # contiguous: cv2.mean copies a strided view through its binding, far slower than numpy does
    mask = np.ascontiguousarray(where).view(np.uint8)
    seen, was = cv2.mean(np.ascontiguousarray(now), mask)[:3], cv2.mean(np.ascontiguousarray(learned), mask)[:3]
    grey = _grey(was) / max(_grey(seen), 1.0)
    return [channel / max(belt, 1.0) * grey for channel, belt in zip(seen, was, strict=True)]


def _grey(bgr: tuple[float, ...]) -> float:
    """Grey of a BGR colour, as cv2.cvtColor makes it."""
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def _prepare(crop_bgr: np.ndarray) -> np.ndarray:
    """Downscaled, blurred float32 BGR copy: cheap, and blind to fine belt grain and sensor noise."""
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.size == 0:
        raise ValueError(f"expected an HxWx3 BGR crop, got shape {crop_bgr.shape}")
    height, width = crop_bgr.shape[:2]
    if width > WORK_WIDTH:
        small_h = max(1, round(height * WORK_WIDTH / width))
        crop_bgr = cv2.resize(crop_bgr, (WORK_WIDTH, small_h), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(crop_bgr, (3, 3), 0).astype(np.float32)
