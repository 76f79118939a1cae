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
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Bands:
    """This frame's bands across the belt, and what each adds to the belt per strip across it."""

    axis: int  # the travel: 0 along x (bands are columns), 1 along y (bands are rows)
    columns: np.ndarray  # the columns along the travel (rows, for travel along y) that hold a band
    share: float  # of the view along the travel: how much the bands cover
    offsets: np.ndarray  # strips x columns x 3: what the band adds to the belt in each strip across it

    def explain(self, difference: np.ndarray, limit: np.ndarray, changed: np.ndarray) -> None:
        """Clear `changed` (HxW, in place) where the band explains the pixel: between the learned belt and the
        belt plus the band's offset (blur and a hinge's edge mix the two)."""
        if self.axis == 1:
            difference, limit, changed = difference.transpose(1, 0, 2), limit.transpose(1, 0, 2), changed.T
        columns = self.columns
        offsets = _per_row(self.offsets, changed.shape[0])
        difference, limit = _columns(difference, columns), _columns(limit, columns)
        beyond = np.maximum(difference - np.maximum(offsets, 0.0), np.minimum(offsets, 0.0) - difference) - limit
        changed[:, columns] &= worst_channel(beyond) > 0


def find_bands(difference: np.ndarray, limit: np.ndarray, changed: np.ndarray, axis: int) -> Bands | None:
    """The bands across the belt in this frame, or None. `difference`: the frame minus the learned belt,
    HxWx3, signed; `limit`: the change that counts per pixel and channel; `changed`: where the frame differs,
    HxW; `axis`: the travel (0 along x, 1 along y)."""
    if axis == 1:  # columns along the travel are then rows: look at the transposed frame
        difference, limit, changed = difference.transpose(1, 0, 2), limit.transpose(1, 0, 2), changed.T
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
    return Bands(axis, np.flatnonzero(band), float(band.mean()), offsets) if band.any() else None


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
