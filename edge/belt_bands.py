"""Bands across the belt: a modular belt's hinges, splices, cleats, told from items before shapes are read.

A modular plastic belt has a hinge across it every few centimetres; each pixel sees one pass in a fifth to a
third of the frames. The per-pixel belt model (`edge.presence`) learns the belt between the hinges, so every
hinge in view differs from it, and hinges a few working pixels apart were joined by the shape rules' closing
into regions that looked like items (210 decisions for 30 items, session 25).

What tells a hinge from an item is that it crosses the whole belt with one and the same change. Each frame,
per strip across the belt and column along it, the mean change is that strip's offset. A column is a clear
band where something differs all across the belt but the side guards (in the column or one either side:
hinges lie a little slanted), most of its strips share one offset, and it is a few columns wide at most. The
clear bands' offset is the belt's band in this frame; other columns that differ all across are bands too
where enough of their strips have that same offset (an item hides the rest), or where the belt model has
learned part of a hinge as belt (it differs over part of the belt, yet its change is one all across and a
band's); on a belt with many clear bands such a band may be twice as wide, two hinges run together where they
lean towards each other (a cluster of them made 10 decisions for nothing in 30 items, held-out benchmark's
seed 1). A pixel of a band that lies
between the learned belt and the belt plus the band's offset is belt. An item differs over part of the belt's
width, or over many columns along the travel: it is not a band. A plain item lying across more than 70 % of
the view, whose plain parts make columns under 8 wide, can be read as bands (docs/belt.md, "Known limits");
at the ends of the view, where such an item comes in and goes out as a thin column, no band is looked for.

A camera turned about its axis (mounted a degree or two off square: common) slants every band across the view:
at 2 degrees a hinge moves 4-6 working pixels along the travel from one side of the belt to the other, and no
column holds it (72 decisions for 30 items on a white modular belt, session 43). The slant is read from the frames
(`band_slant`: the strips' profiles along the travel line up at one slant, and only there; where an item lies
they are not read) and the frame is sheared by it before bands are looked for, so that they are columns again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from edge import medians
from edge.channels import any_channel, every_channel, worst_channel

STRIP = 8  # working pixels across the belt per strip: thin enough that a slanted hinge stays in a column
FITS = 0.75  # share of a strip's pixels its offset must explain: the strip shows one change
CLEAR_SHARE = 0.5  # share of the strips across the ROI a clear band is seen in
PART_SHARE = 0.2  # ... and a band partly under items, with the clear bands' offset
LIKE = 0.35  # a strip's offset is the band's when within this share of it (hinges blur by their slant)
EDGE_SHARE = 0.15  # share of the ROI at each side, across the belt, that may be side guards (no band there)
# columns along the travel: a band no wider (a hinge 3-6 ROI pixels wide, slanted over 4 working columns across
# the belt, looked at one column either side); an item is wider
WIDEST = 8
# on a banded belt (clear bands over this share of the view along the travel) a band with the clear bands' offset
# may be up to WIDEST_PAIR wide: two hinges a few pixels apart, where neighbouring hinges lean towards each other,
# run together. Held to WIDEST elsewhere: on a plain belt a white card's plain edge is one change all across too
BANDED, WIDEST_PAIR = 0.1, 16
_ACROSS_COLUMNS, _ACROSS_ROWS = np.ones((1, 3), np.uint8), np.ones((3, 1), np.uint8)  # `_near` as a dilation
# slants tried, working pixels a band moves along the travel per working pixel across the belt: up to 5.7 degrees
# either way, in steps that move a band under a pixel over the 120-160 working pixels across a view
SLANTS = np.round(np.linspace(-0.1, 0.1, 41), 3)
# the strips' profiles lined up at the best slant add up to this much more than at the median slant (a hinge every
# 10 working pixels lines up again, in part, a few steps of slant away: 1.8-1.9 on a 2-degree roll) ...
SLANT_PEAK = 1.3
# ... and this share of the strips (guards aside) follows the sum of the others that well (correlation)
SLANT_FOLLOW, SLANT_STRIPS = 0.3, 0.8
# columns where this share of the belt differs, in runs wider than a pair of hinges, hold an item (45-75 % of the
# belt's width); a hinge slanted 4 degrees differs in a fifth to a third of each column it crosses
SLANT_ITEM = 0.4
# the slant used is the median of the last SLANT_READS readings, once there are SLANT_READS_FIRST. A reading costs
# 0.1-0.2 ms, and a belt without bands gives none: after the belt is learned one is tried every SLANT_EVERY frames
# SLANT_FIRST_TRIES times (a rolled modular belt gives 5 readings in 10 tries), then every SLANT_LATER frames (under
# 1 % of frames: the detector's p99 holds), which follows a camera moved later
SLANT_READS, SLANT_READS_FIRST, SLANT_EVERY, SLANT_FIRST_TRIES, SLANT_LATER = 9, 5, 4, 40, 150


@dataclass(frozen=True)
class Bands:
    """This frame's bands across the belt, and what each adds to the belt per strip across it."""

    axis: int  # the travel: 0 along x (bands are columns), 1 along y (bands are rows)
    columns: np.ndarray  # the columns along the travel (rows, for travel along y) that hold a band
    share: float  # of the view along the travel: how much the bands cover
    offsets: np.ndarray  # strips x columns x 3: what the band adds to the belt in each strip across it
    slant: float  # the frame was sheared by this slant (`band_slant`) before the columns were found
    signature: np.ndarray  # the clear bands' offset (BGR): what a hinge adds to the belt
    # the frame's difference and limit as the columns were found in them (oriented as `columns`, sheared by `slant`)
    frame: tuple[np.ndarray, np.ndarray] = field(repr=False, compare=False)

    def explain(self, changed: np.ndarray) -> None:
        """Clear `changed` (HxW, the frame's, in place) where the band explains the pixel: between the learned belt
        and the belt plus the band's offset (blur and a hinge's edge mix the two)."""
        if self.axis == 1:
            changed = changed.T
        if self.slant:  # worked out on the sheared frame, where the band is columns, and the result sheared back
            sheared = _sheared(changed, self.slant)
            explained = sheared.copy()
            self._explain(explained)
            changed &= ~_sheared(sheared & ~explained, -self.slant)
        else:
            self._explain(changed)

    def without_thin_hinges(self, changed: np.ndarray) -> np.ndarray:
        """`changed` (HxW, the frame's) without lines across the belt under three working pixels along the travel
        that change the belt the way the bands do (darker where they are darker), wherever they lie: hinges the
        band search missed, never an item's body (tens of working pixels along the belt). A hinge is missed where
        it is faint and slants its own way: at 800x600 (5 ROI pixels a working pixel, a hinge every 8) each differs
        in one column a row and moves 2-3 columns from one side of the belt to the other, so no column (or one
        either side) differs all across; closing joined such hinges into slivers that became items and into
        notches that cut items in two (34 decisions for 30 items, random line seed 121). The other sign is kept:
        a white garment on a white belt is mostly a thin bright outline. For the item shapes only: the belt
        model goes on not learning these pixels."""
        darker = float(self.signature.mean()) < 0
        difference = self.frame[0]  # oriented as the columns, sheared by the slant
        if not self.slant:  # in the frame's own orientation: a transposed copy costs more than the rest
            kernel = _ACROSS_ROWS if self.axis == 1 else _ACROSS_COLUMNS
            difference = difference.transpose(1, 0, 2) if self.axis == 1 else difference
            return changed & ~(_thin(changed, kernel) & ((_grey(difference) < 0) == darker))
        oriented = _sheared(changed.T if self.axis == 1 else changed, self.slant)
        hinges = _sheared(_thin(oriented, _ACROSS_COLUMNS) & ((_grey(difference) < 0) == darker), -self.slant)
        return changed & ~(hinges.T if self.axis == 1 else hinges)

    def covering(self, shape: tuple[int, int]) -> np.ndarray:
        """HxW: the band's columns (rows, for travel along y), slanted as the frame's bands are."""
        oriented = shape[::-1] if self.axis == 1 else shape
        covered = np.zeros(oriented, bool)
        covered[:, self.columns] = True
        if self.slant:
            covered = _sheared(covered, -self.slant)
        return covered.T if self.axis == 1 else covered

    def _explain(self, changed: np.ndarray) -> None:
        columns, (difference, limit) = self.columns, self.frame
        offsets = _per_row(self.offsets, changed.shape[0])
        difference, limit = _columns(difference, columns), _columns(limit, columns)
        beyond = np.maximum(difference - np.maximum(offsets, 0.0), np.minimum(offsets, 0.0) - difference) - limit
        changed[:, columns] &= worst_channel(beyond) > 0


class BandSlants:
    """How bands across the belt slant, for the travel along x and y (`slants`, 0 until read): the median of the
    last readings (`band_slant`), from frames offered now and then."""

    def __init__(self, slants: tuple[float, float] = (0.0, 0.0)) -> None:
        self._slants = list(slants)
        self._reads: list[deque[float]] = [deque(maxlen=SLANT_READS), deque(maxlen=SLANT_READS)]
        self._tries, self._since_try = 0, 0  # readings tried; frames since the last

    @property
    def slants(self) -> tuple[float, float]:
        return self._slants[0], self._slants[1]

    def now_and_then(
        self, difference: np.ndarray, limit: np.ndarray, changed: np.ndarray, axes: tuple[int, ...]
    ) -> None:
        """A frame looked at: read from it when a reading is due."""
        self._since_try += 1
        if self._since_try >= (SLANT_EVERY if self._tries < SLANT_FIRST_TRIES else SLANT_LATER):
            self._tries, self._since_try = self._tries + 1, 0
            self.read(difference, limit, changed, axes)

    def read(self, difference: np.ndarray, limit: np.ndarray, changed: np.ndarray, axes: tuple[int, ...]) -> None:
        """A reading from this frame (as `band_slant` takes it) for each of `axes`, where it gives one."""
        for axis in axes:
            slant = band_slant(difference, limit, changed, axis)
            if slant is not None:
                reads = self._reads[axis]
                reads.append(slant)
                if len(reads) >= SLANT_READS_FIRST:
                    self._slants[axis] = float(np.median(reads))


def find_bands(
    difference: np.ndarray, limit: np.ndarray, changed: np.ndarray, axis: int, slant: float = 0.0
) -> Bands | None:
    """The bands across the belt in this frame, or None. `difference`: the frame minus the learned belt,
    HxWx3, signed; `limit`: the change that counts per pixel and channel; `changed`: where the frame differs,
    HxW; `axis`: the travel (0 along x, 1 along y); `slant`: how the bands slant (`band_slant`)."""
    if axis == 1:  # columns along the travel are then rows: look at the transposed frame
        difference, limit, changed = difference.transpose(1, 0, 2), limit.transpose(1, 0, 2), changed.T
    if slant:
        difference, limit = _sheared(difference, slant), _sheared(limit, slant, np.inf)
        changed = _sheared(changed, slant)
    strips = changed.shape[0] // STRIP
    if strips < 3:
        return None
    # a band crosses the belt: all across it but the guards, something differs in the column or one either
    # side (a hinge lies a little slanted), and what an item leaves of a hinge with the item makes up the rest.
    # Items lie across part of the belt, so most frames have no such column: then this is all they cost
    rows = strips * STRIP
    differing = _rows_differing(changed, rows)  # rows that differ, per column (or one either side)
    spanned = differing >= (1 - 2 * EDGE_SHARE) * rows
    # ... and a clear band is a few columns wide at most, and not at the ends of the view along the travel,
    # where a large plain item coming in or going out is a thin column that differs all across too
    maybe = spanned & ~_wider_than(spanned, WIDEST) & ~_at_the_ends(spanned)
    if not maybe.any():
        return None
    spanned = _near(spanned)
    offset, seen, least_limit = _strips(difference[:rows], limit[:rows], strips, spanned)
    column_offset = (offset * seen[:, :, None]).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)[:, None]
    agree = seen & every_channel(np.abs(offset - column_offset[None]) <= least_limit)
    clear = (_near(agree).sum(axis=0) >= CLEAR_SHARE * strips) & _near(maybe)  # ... one offset in most strips
    clear &= ~_wider_than(clear, WIDEST)
    agree &= clear  # the clear bands' strips
    if not agree.any():
        return None
    signature = medians.median(offset[agree])

    # the same band where items hide part of it: strips with the clear bands' offset
    tolerance = np.maximum(least_limit, LIKE * np.abs(signature))
    like = seen & every_channel(np.abs(offset - signature) <= tolerance)
    band = (_near(like).sum(axis=0) >= PART_SHARE * strips) | clear
    band &= spanned & ~_wider_than(band, WIDEST_PAIR if clear.mean() >= BANDED else WIDEST)
    # ... and a band the belt model has half learned, too faint over part of the belt to differ there
    half, half_offset = _half_learned(difference[:rows], strips, differing, spanned, signature)
    half &= ~band
    band |= half
    offset = np.where(half[None, :, None], half_offset, offset)
    like |= agree | half[None]
    # each strip its own offset where it has the band's, else the band's (under an item)
    offsets = np.where(like[:, band, None], offset[:, band], signature.astype(np.float32))
    if not band.any():
        return None
    return Bands(axis, np.flatnonzero(band), float(band.mean()), offsets, slant, signature, (difference, limit))


def band_slant(difference: np.ndarray, limit: np.ndarray, changed: np.ndarray, axis: int) -> float | None:
    """How far bands across the belt slant (one of `SLANTS`: working pixels along the travel per working pixel
    across, from the middle of the view), read from one frame, or None when it shows no band all across the belt.
    `difference`: the frame minus the learned belt, HxWx3, signed; `limit`: the change that counts; `changed`:
    where it differs, HxW. Each strip's mean change along the travel is its profile; lined up at the bands' slant,
    a band's profiles add up, and the strips between the guards follow the sum of the others (belt grain adds up
    at no slant). Read on a banded belt only: sheared by the slant, the frame's bands cover a tenth of the view
    (`BANDED`), as a modular belt's hinges do. Where an item lies (wide runs of columns that differ over part of
    the belt) the profiles are not read."""
    if axis == 1:
        difference, limit, changed = difference.transpose(1, 0, 2), limit.transpose(1, 0, 2), changed.T
    strips, along = difference.shape[0] // STRIP, difference.shape[1]
    guard = round(EDGE_SHARE * strips)
    if strips - 2 * guard < 3:
        return None
    items = _near(_near(_wider_than(changed.mean(axis=0) >= SLANT_ITEM, WIDEST_PAIR)))
    if items.mean() > 0.5:
        return None
    grey = _grey(difference[: strips * STRIP])
    profiles = cv2.resize(grey, (along, strips), interpolation=cv2.INTER_AREA)[guard : strips - guard]
    profiles -= profiles[:, ~items].mean(axis=1, keepdims=True)
    profiles[:, items] = 0.0
    # slants x strips x columns: each strip's profile where it lies at each slant
    lined_up = np.take(profiles, _slant_places(strips, guard, along))
    power = (lined_up.sum(axis=1) ** 2).sum(axis=1)
    best = int(np.lexsort((np.abs(SLANTS), -power))[0])  # of slants that line up alike (whole pixels), the least
    if power[best] < SLANT_PEAK * np.partition(power, power.size // 2)[power.size // 2]:  # the median: odd count
        return None
    strips_there = lined_up[best]
    others = strips_there.sum(axis=0) - strips_there  # each strip against the sum of the others
    norms = np.linalg.norm(strips_there, axis=1) * np.linalg.norm(others, axis=1)
    follow = np.einsum("sc,sc->s", strips_there, others) >= SLANT_FOLLOW * np.maximum(norms, 1e-6)
    if follow.mean() < SLANT_STRIPS:
        return None
    # a banded belt, sheared by it: a splice or two on a plain belt also line up (a camera tilted 3 % slants a
    # splice near the view's edge by as much as a rolled camera), and are found well enough unsheared
    bands = find_bands(difference, limit, changed, 0, float(SLANTS[best]))
    return float(SLANTS[best]) if bands is not None and bands.share >= BANDED else None


@lru_cache(maxsize=4)
def _slant_places(strips: int, guard: int, along: int) -> np.ndarray:
    """Slants x strips x columns: where (flat index into the strips between the guards x columns) each strip's
    column lies when the bands slant by each of `SLANTS`."""
    across = (np.arange(guard, strips - guard) + 0.5) * STRIP - strips * STRIP / 2
    shifts = np.rint(SLANTS[:, None] * across[None, :]).astype(np.intp)
    columns = np.clip(np.arange(along)[None, None, :] + shifts[:, :, None], 0, along - 1)
    return columns + (np.arange(across.size) * along)[None, :, None]


def _sheared(values: np.ndarray, slant: float, outside: float = 0.0) -> np.ndarray:
    """HxW or HxWx3 (rows across the belt, columns along it) sheared by `slant`: row r shifted so that what
    was at column c + slant * (r - H / 2) is at column c (whole pixels); `outside` (False for a mask) where that
    lies beyond the frame. OpenCV's remap: half of what copying runs of rows costs in numpy."""
    boolean = values.dtype == bool
    source = np.ascontiguousarray(values.view(np.uint8) if boolean else values)
    map_x, map_y = _shear_maps(values.shape[0], values.shape[1], slant)
    border = (outside,) * 4
    sheared = cv2.remap(source, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return sheared.view(bool) if boolean else sheared


@lru_cache(maxsize=8)
def _shear_maps(rows: int, along: int, slant: float) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.remap`'s maps for `_sheared`: where each pixel of the sheared frame comes from."""
    shifts = np.rint(slant * (np.arange(rows) + 0.5 - rows / 2))
    map_x = (np.arange(along)[None, :] + shifts[:, None]).astype(np.float32)
    map_y = np.repeat(np.arange(rows, dtype=np.float32)[:, None], along, axis=1)
    return map_x, map_y


def _half_learned(
    difference: np.ndarray, strips: int, differing: np.ndarray, spanned: np.ndarray, signature: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bands the belt model has half learned, and their offset per strip (the column's own where a strip's is
    not). A belt moving about two thirds of its hinge pitch a frame shows each pixel the hinges at the same few
    phases; where light and tilt line them up, the belt model learns their passes as the belt's own variation,
    and a hinge there no longer differs, though its change is the same as where it does (session 36: a white
    modular belt, 30 px a frame, 48 px pitch; 13 decisions for nothing in 30 items, each a hinge or two that
    differed over the lower third of the belt only). Such a column differs over part of the belt in a run a
    band's width at most, and in the strips all across the belt but the guards its change is one (within `LIKE`
    of its median) and a band's (the clear bands' sign, at least `LIKE` of their strength). An item differs over
    part of the belt too, but where it ends the strips are belt: no change."""
    rows, along = strips * STRIP, difference.shape[1]
    partial = (differing >= PART_SHARE * rows) & ~spanned
    partial &= ~_wider_than(partial, WIDEST) & ~_at_the_ends(partial)
    offsets = np.zeros((strips, along, 3), np.float32)
    if not partial.any():
        return partial, offsets
    columns = np.flatnonzero(_near(partial))
    offset = _strip_means(_columns(difference, columns), strips)
    own = medians.median(offset)  # each column's change across the belt
    strongest = int(np.argmax(np.abs(signature)))
    a_band = (np.sign(own[:, strongest]) == np.sign(signature[strongest])) & (
        worst_channel(np.abs(own)) >= LIKE * np.abs(signature).max()
    )
    like = np.zeros((strips, along), bool)
    like[:, columns] = a_band & every_channel(np.abs(offset - own) <= LIKE * worst_channel(np.abs(own))[:, None])
    offsets[:, columns] = np.where(like[:, columns, None], offset, own)
    half = np.zeros(along, bool)
    half[columns] = (_near(like).sum(axis=0) >= (1 - 2 * EDGE_SHARE) * strips)[columns]
    return half, offsets


def _strips(difference: np.ndarray, limit: np.ndarray, strips: int, looked_at: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each strip across the belt and column along it: its offset (the mean change, BGR), whether that
    offset is a change all over the strip (`seen`), and the strip's least limit (BGR). `difference` and `limit`
    hold whole strips; only the columns `looked_at` are worked out (the others: no change)."""
    along, columns = difference.shape[1], np.flatnonzero(looked_at)
    difference, limit = _columns(difference, columns), _columns(limit, columns)
    mean = _strip_means(difference, strips)
    uniform = _within(difference, _per_row(mean, strips * STRIP), limit).reshape(strips, STRIP, -1).mean(axis=1)
    least = limit.reshape(strips, STRIP, columns.size, 3).min(axis=1)
    offset = np.zeros((strips, along, 3), np.float32)
    least_limit = np.full((strips, along, 3), np.inf, np.float32)
    seen = np.zeros((strips, along), bool)
    offset[:, columns], least_limit[:, columns] = mean, least
    seen[:, columns] = (uniform >= FITS) & any_channel(np.abs(mean) > least)
    return offset, seen, least_limit


def _columns(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxCx3 (contiguous): the `columns` alone (np.take: a quarter of what indexing costs). For travel
    along y `values` is a transposed frame, whose columns are rows in memory: taken as rows, they cost a quarter
    of what np.take across the rows does (110 against 30 us, twice on a frame with bands)."""
    if values.strides[0] < values.strides[1]:
        return np.ascontiguousarray(np.take(values.swapaxes(0, 1), columns, axis=0).swapaxes(0, 1))
    return np.take(values, columns, axis=1)


def _strip_means(values: np.ndarray, strips: int) -> np.ndarray:
    """Whole strips x columns x 3 (contiguous) -> strips x columns x 3: each strip's mean in each column."""
    return cv2.resize(values, (values.shape[1], strips), interpolation=cv2.INTER_AREA).reshape(strips, -1, 3)


def _within(difference: np.ndarray, expected: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """HxW: where `difference` is within `limit` of `expected` in every channel (all HxWx3)."""
    excess = cv2.subtract(cv2.absdiff(np.ascontiguousarray(difference), expected), np.ascontiguousarray(limit))
    return worst_channel(excess) <= 0


def _per_row(strip_values: np.ndarray, rows: int) -> np.ndarray:
    """Strips x columns x 3 -> rows x columns x 3: each strip's value on its rows, the last strip's on the rows
    below the last whole strip."""
    per_row = np.repeat(strip_values, STRIP, axis=0)
    return np.concatenate([per_row, np.repeat(per_row[-1:], rows - per_row.shape[0], axis=0)])


def _thin(flags: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Where `flags` (HxW bool) is set in a run shorter than `kernel` (3 pixels along a row or down a column)."""
    return flags & ~cv2.morphologyEx(flags.view(np.uint8), cv2.MORPH_OPEN, kernel).view(bool)


def _grey(difference: np.ndarray) -> np.ndarray:
    """HxWx3 signed BGR -> HxW: the grey level's change (OpenCV; a transposed view is copied first)."""
    return cv2.cvtColor(np.ascontiguousarray(difference), cv2.COLOR_BGR2GRAY)


def _rows_differing(changed: np.ndarray, rows: int) -> np.ndarray:
    """Per column of `changed` (HxW bool), how many of its first `rows` rows differ there or in a column either
    side: `_near` summed down the columns, in OpenCV (a half to a third of numpy's cost, every frame). A
    transposed frame (travel along y) is dilated and summed along its rows in memory."""
    if changed.strides[0] < changed.strides[1]:
        near = cv2.dilate(changed.T[:, :rows].view(np.uint8), _ACROSS_ROWS)
        return cv2.reduce(near, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]
    near = cv2.dilate(changed[:rows].view(np.uint8), _ACROSS_COLUMNS)
    return cv2.reduce(near, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0]


def _near(flags: np.ndarray) -> np.ndarray:
    """Set in the column (last axis) or the one either side: a slanted hinge moves a column every few strips."""
    near = flags.copy()
    near[..., 1:] |= flags[..., :-1]
    near[..., :-1] |= flags[..., 1:]
    return near


def _at_the_ends(flags: np.ndarray) -> np.ndarray:
    """Where `flags` is set in a run that reaches the first or the last column."""
    ends = np.zeros_like(flags)
    if flags[0]:
        ends[: np.argmin(flags) if not flags.all() else flags.size] = True
    if flags[-1]:
        ends[flags.size - (np.argmin(flags[::-1]) if not flags.all() else flags.size) :] = True
    return ends


def _wider_than(flags: np.ndarray, widest: int) -> np.ndarray:
    """Where `flags` is set in a run longer than `widest`."""
    padded = np.concatenate([[False], flags, [False]])
    runs = np.flatnonzero(padded[1:] != padded[:-1]).reshape(-1, 2)  # each run's start and stop
    wide = np.zeros_like(flags)
    for start, stop in runs[runs[:, 1] - runs[:, 0] > widest]:
        wide[start:stop] = True
    return wide
