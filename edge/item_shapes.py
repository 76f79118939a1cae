"""What an item looks like in the change mask, and what does not: the shape rules of presence detection.

What differs from the belt is cleaned by shape: gaps inside an item closed and holes filled (a dark garment
on a dark belt shows as its light edges and folds), then everything thinner than a few working pixels removed
(seams and splices across the belt, scratches, small marks). Of what remains, a thin band across most of the
ROI is a seam; pieces at one place along the belt and close across it are one item seen in pieces (items on a
sorting line come one after another); a long region with a waist (two deep notches facing each other across
the belt) is two items touching, split there and both marked so that neither gets a lane; so is a region that,
looked at again at a finer resolution, holds two items one after the other with belt between them (a gap the
working resolution closes), or two solid items laid edge to edge whose joint outline has a waist there. Each
item's tilt and upright box let the crop stand it up like a product photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))  # joins an item's edges across a dark interior
_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # removes what is thinner: seams, scratches, marks
_NOTCH = 0.12  # a notch in an outline this deep (share of the region's width across the belt) may be a waist
_CUT = 0.7  # ... and two notches facing each other this close (same share) are one: two items touching
_SEAM_PX = 8  # working pixels: a band no thicker across the whole belt is a seam
# pieces this close across the belt (share of its width) at one place along it: one item (a pale garment on a
# pale belt shows as its top and bottom, a fifth of the belt apart: two items side by side, one a lane for nothing)
_SIDE_BY_SIDE_GAP = 0.25
_BAND_ACROSS = 0.6  # a region across this share of the ROI, and far shorter along the belt than its items: a splice
# ... and, wholly in view, at most this share of the view along the belt: splices measured up to 0.07 there (the
# matrix's eleven lines); a slim garment lying across a line of wider ones is 0.2-0.3 and was dropped as a splice
_BAND_LONGEST = 0.12
# at the finer resolution, a region's parts are looked at when together they are this share of the region the
# working resolution found (a pale garment on a pale belt may show there only as its edges and shadow) ...
_APART_SEEN = 0.6
# ... and its parts this big (share of its item pixels) are items, not loose pieces ...
_APART_SHARE = 0.2
# ... and two of them lie one after the other when, along the belt, they overlap by less than this share of the
# shorter (garments turned up to 25 degrees, laid a few millimetres apart, overlap by a little)
_APART_OVERLAP = 0.35
# ... and where they touch, their outline is read only where those pixels show nearly all of the region (two
# photos laid flat: 0.9-0.94; a white garment on a white belt or a pale photo's background eats into it,
# 0.72-0.86, and the outline is then the belt's doing) and are solid: an opening this size keeps this share
_SEEN_WHOLE = 0.88
_SOLID_TEST, _SOLID = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), 0.9
# ... and their outline is read without what is thinner than this (fine pixels): a seam passing under an item
# shows above and below it, and the notches either side of it are no waist
_THIN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
# ... and a waist there is two notches as deep as at working resolution, or one deeper and one shallower: two
# photos laid edge to edge, one reaching further across the belt than the other, leave one deep notch (measured
# 0.3-0.56) and a shallow one (0.06-0.12); a woman in a saree lying askew has a waist of 0.14 and 0.07-0.1, and
# is one item
_FINE_NOTCHES = ((_NOTCH, _NOTCH), (0.2, 0.05))
# ... and a notch whose area is under this times its depth squared is a slit, not a waist: the gap between a
# garment's legs on a photo whose background reads as belt (measured 0.07-0.1); between two items 0.15-1.1
_SLIT = 0.12


@dataclass(frozen=True)
class ItemView:
    """One item candidate in the ROI in this frame."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in ROI pixels
    area: float  # share of the ROI it covers
    touching: bool = False  # split off another item it touches
    tilt: float = 0.0  # degrees its long axis leans from upright (counter-clockwise positive); 0 when unclear
    upright: tuple[float, float, float, float] = (0, 0, 0, 0)  # turned upright: its middle x, y and width, height
    # the share of its smallest enclosing rectangle (at any angle) it covers, for a region long enough to be
    # looked at for a waist (else None): 0.91-0.96 for a photo lying flat (0.78-0.86 where the belt's colour eats
    # into its pale edges), 0.45-0.87 for two items laid touching (each at its own angle)
    fill: float | None = None

    @property
    def centre(self) -> tuple[float, float]:
        """The middle of its box, ROI pixels: between its leading and trailing edges, where a diverter aims
        (the centroid of its pixels moves with a photo's arms and shoes)."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def length(self, axis: int) -> int:
        """Its extent along `axis` (0: x, 1: y), ROI pixels."""
        return self.box[2 + axis] - self.box[axis]

    def stretch(self, axis: int, start: int, end: int) -> ItemView:
        """The stretch of this region from `start` to `end` along `axis` (its full extent across), as the view of
        one of the touching items it holds."""
        box = list(self.box)
        share = (end - start) / max(1, box[axis + 2] - box[axis])
        box[axis], box[axis + 2] = start, end
        x0, y0, x1, y1 = box
        upright = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
        return ItemView((x0, y0, x1, y1), self.area * share, True, 0.0, upright)


def box_area(box: tuple[int, int, int, int]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def box_intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def box_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box."""
    return box_intersection(a, b) / max(1, min(box_area(a), box_area(b)))


def clean(changed: np.ndarray) -> np.ndarray:
    """Close gaps, fill holes, then drop everything thin: what remains is item-shaped."""
    mask = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, CLOSE)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, contours, -1, 1, cv2.FILLED)
    # outside the frame counts as belt: a thin seam along the frame's edge is thin there too
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def find_items(
    mask: np.ndarray,
    scale: tuple[float, float],
    axis: int | None,
    split_longer_than: float | None,
    smallest_share: float,
    item_share: float,
    seam_shorter_than: float | None = None,
    banded: bool = False,
) -> list[ItemView]:
    """The item candidates in a cleaned change mask (working resolution), as ROI-pixel views. `scale`: ROI
    pixels per working pixel; `axis`: the belt's travel (0: x, 1: y) once known; a region longer than
    `split_longer_than` along it (ROI pixels) is looked at for a waist (on a `banded` belt only once wholly in
    view); pieces under `smallest_share` of the mask are ignored, a touching part under `item_share` is not
    split off; a band across most of the ROI shorter than `seam_shorter_than` along the travel (ROI pixels) is
    a seam, however thick."""
    labels, areas = _labelled(mask.astype(np.uint8))
    pieces: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (xs, ys, touching), working pixels
    for index in np.flatnonzero(areas[1:] >= smallest_share * mask.size) + 1:
        hit = labels == index
        (x, x1), (y, y1) = _extent(hit, 0), _extent(hit, 1)
        region = hit[y:y1, x:x1]
        long_enough = (
            axis is not None
            and split_longer_than is not None
            and (x1 - x, y1 - y)[axis] * scale[axis] > split_longer_than
        )
        if long_enough and banded:
            # at the ends of the view no band is looked for (`edge.belt_bands`): hinges there close into lumps
            # beside a region coming in or going out, notches that are no waist (an item on a modular belt cut
            # in two as it came in: two `touching` rejects). A pair laid touching is told apart once in view
            long_enough = (x, y)[axis] > 0 and (x1, y1)[axis] < mask.shape[1 - axis]
        for part, touching in _split_touching(region, axis if long_enough else None, item_share * mask.size):
            ys, xs = np.nonzero(part)
            pieces.append((xs + x, ys + y, touching))
    views = []
    band = None if axis is None or seam_shorter_than is None else seam_shorter_than / scale[axis]
    for xs, ys, touching in _side_by_side(pieces, axis, mask.shape):
        if _seam_like(xs, ys, mask.shape) or (band is not None and _band_across(xs, ys, mask.shape, axis, band)):
            continue
        box = (
            int(xs.min() * scale[0]),
            int(ys.min() * scale[1]),
            int(np.ceil((xs.max() + 1) * scale[0])),
            int(np.ceil((ys.max() + 1) * scale[1])),
        )
        tilt, upright = _orientation((xs + 0.5) * scale[0], (ys + 0.5) * scale[1])
        along = 0 if axis is None else box[axis + 2] - box[axis]
        fill = _rectangle_fill(xs, ys) if split_longer_than is not None and along > split_longer_than else None
        views.append(ItemView(box, float(xs.size) / mask.size, touching, tilt, upright, fill))
    return views


def _seam_like(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A thin band across most of the ROI: a seam or splice (thickened by motion blur), never an item."""
    width, height = int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1
    return (width <= _SEAM_PX and height >= 0.5 * shape[0]) or (height <= _SEAM_PX and width >= 0.5 * shape[1])


def _band_across(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, ...], axis: int, shorter_than: float) -> bool:
    """A band across most of the ROI far shorter along the belt than its items: a wide splice or a cleat (thicker
    than `_seam_like` allows once motion blur and closing have spread it), not an item. Wholly in view it must
    also be short against the view: a garment lying across the belt can be half as long as the line's others."""
    positions = xs if axis == 0 else ys
    along, view_along = float(np.ptp(positions)) + 1, shape[1 - axis]
    across = float(np.ptp(ys if axis == 0 else xs)) + 1
    at_an_end = positions.min() == 0 or positions.max() == view_along - 1  # an item coming in is short too
    return (
        along < shorter_than
        and across >= _BAND_ACROSS * shape[0 if axis == 0 else 1]
        and (at_an_end or along <= _BAND_LONGEST * view_along)
    )


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


def _rectangle_fill(xs: np.ndarray, ys: np.ndarray) -> float:
    """The share of the region's smallest enclosing rectangle, at any angle, that it covers. The rectangle is
    that of each row's first and last pixel (the outline; a tenth of the time of all the pixels)."""
    rows = ys - ys.min()
    first = np.full(int(rows.max()) + 1, xs.max() + 1)
    last = np.full(int(rows.max()) + 1, -1)
    np.minimum.at(first, rows, xs)
    np.maximum.at(last, rows, xs)
    row = np.flatnonzero(last >= 0)
    outline = np.column_stack([np.concatenate([first[row], last[row]]), np.concatenate([row, row])])
    _, (width, height), _ = cv2.minAreaRect(outline.astype(np.int32))
    return float(xs.size / ((width + 1) * (height + 1)))


def _orientation(xs: np.ndarray, ys: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
    """How far the region's long axis leans from upright, in degrees (counter-clockwise positive, as
    cv2.getRotationMatrix2D turns; from its second moments), and its box turned upright: middle x, y, width,
    height. A roundish region (less than 1.3 : 1) has no long axis to go by: tilt 0, its box as it is."""
    # each extent and mean worked out once (np.ptp is max - min): a few thousand points an item, every frame
    left, right, top, bottom = xs.min(), xs.max(), ys.min(), ys.max()
    box = ((left + right) / 2, (top + bottom) / 2, float(right - left) + 1, float(bottom - top) + 1)
    if xs.size < 10:
        return 0.0, box
    mean_x, mean_y = xs.mean(), ys.mean()
    dx, dy = xs - mean_x, ys - mean_y
    sxx, syy, sxy = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    spread = np.sqrt(((sxx - syy) / 2) ** 2 + sxy**2)
    major, minor = (sxx + syy) / 2 + spread, (sxx + syy) / 2 - spread
    if major < 1.3**2 * max(minor, 1e-6):
        return 0.0, box
    axis = np.arctan2(2 * sxy, sxx - syy) / 2  # the long axis from the x axis, radians, image y pointing down
    cos, sin = np.cos(axis), np.sin(axis)
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    (first, last), (near, far) = (along.min(), along.max()), (across.min(), across.max())
    mid_along, mid_across = (first + last) / 2, (near + far) / 2
    middle = (mean_x + mid_along * cos - mid_across * sin, mean_y + mid_along * sin + mid_across * cos)
    lean = np.degrees(axis) - 90.0 if axis > 0 else np.degrees(axis) + 90.0  # from upright, -90..90
    return float(-lean), (float(middle[0]), float(middle[1]), float(far - near) + 1, float(last - first) + 1)


def _split_touching(region: np.ndarray, axis: int | None, smallest: float) -> list[tuple[np.ndarray, bool]]:
    """The region as one part, or as two parts (touching) where it has a waist (`_waist`). Each part: its mask
    (the region's shape), touching."""
    waist = None if axis is None else _waist(region, axis, smallest)
    return [(region, False)] if waist is None else [(part, True) for part in waist[1]]


def _waist(
    region: np.ndarray,
    axis: int,
    smallest: float,
    depths: tuple[tuple[float, float], ...] = ((_NOTCH, _NOTCH),),
    slit: float = 0.0,
) -> tuple[float, list[np.ndarray]] | None:
    """Where the region has a waist: two notches in its outline as deep as one of `depths` says (the deeper,
    the shallower; shares of its width across the belt), facing each other across the belt, a short cut apart,
    leaving two items in their own right. Two items laid against each other leave such a waist; one garment
    rarely does (the notch between a trouser's legs has no partner across the waistband). A notch whose area is
    under `slit` times its depth squared (a slit: narrow for its depth) is not counted: that is belt showing
    through one item (between a garment's legs, on a photo whose background is the belt's colour). The cut's
    place along `axis` (the middle of its ends) and the two parts, or None."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    across = region.shape[axis]  # rows when the belt runs along x, columns when along y
    shallowest = min(shallower for _, shallower in depths)
    notches = [
        ((int(outline[far][0][0]), int(outline[far][0][1])), depth / 256 / across)
        for start, end, far, depth in _notches(outline)
        if depth / 256 > shallowest * across
        and (slit == 0 or _notch_area(outline, start, end) >= slit * (depth / 256) ** 2)
    ]
    best: tuple[float, float, list[np.ndarray]] | None = None
    for index, (p, p_depth) in enumerate(notches):
        for q, q_depth in notches[index + 1 :]:
            pair = max(p_depth, q_depth), min(p_depth, q_depth)
            if not any(pair[0] > deeper and pair[1] > shallower for deeper, shallower in depths):
                continue
            step = np.subtract(q, p)
            cut = float(np.hypot(*step))
            if abs(step[axis]) > abs(step[1 - axis]) or cut > _CUT * across:
                continue  # the cut must run across the belt, and be short
            parts = _cut(region, p, q, smallest)
            if parts and (best is None or cut < best[0]):
                best = (cut, (p[axis] + q[axis]) / 2, parts)
    return None if best is None else (best[1], best[2])


def _notches(outline: np.ndarray) -> np.ndarray:
    """The notches in an outline (its convexity defects): rows of start, end and deepest point (indices into
    the outline) and depth times 256; none for an outline OpenCV will not take (one that touches itself)."""
    hull = cv2.convexHull(outline, returnPoints=False)
    try:
        defects = cv2.convexityDefects(outline, hull) if len(hull) > 3 else None
    except cv2.error:
        defects = None
    return np.zeros((0, 4), np.int32) if defects is None else defects.reshape(-1, 4)


def _notch_area(outline: np.ndarray, start: int, end: int) -> float:
    """The area between the outline from `start` to `end` (indices, going round) and the hull's chord across."""
    notch = outline[start : end + 1] if start <= end else np.concatenate([outline[start:], outline[: end + 1]])
    return float(cv2.contourArea(notch))


def _cut(region: np.ndarray, p: tuple[int, int], q: tuple[int, int], smallest: float) -> list[np.ndarray] | None:
    """The region cut along p-q into its two largest pieces, or None unless both are items in their own right."""
    cut = region.astype(np.uint8)
    cv2.line(cut, p, q, 0, 2)
    labels, areas = _labelled(cut, connectivity=4)
    if len(areas) < 3:
        return None
    largest = np.argsort(areas[1:])[::-1][:2] + 1
    if areas[largest].min() < max(smallest, 0.25 * region.sum()):
        return None
    return [labels == index for index in largest]


def apart_at(item_pixels: np.ndarray, axis: int, smallest: float, region: float) -> int | None:
    """Where along `axis` (pixels of `item_pixels`: a region's box at a finer resolution than the working one,
    nonzero where it is not belt) two items lie one after the other, or None. Only where those pixels show most
    of the `region` (pixels) the working resolution found; each item must be a large part of it and at least
    `smallest` pixels; pieces of one garment (a pale one on a pale belt comes apart) lie at one place along the
    belt, side by side across it, and are not taken for two. Two items laid a centimetre apart have belt between
    them; two laid against each other touch, and where the pixels are solid (not the edges and folds of a pale
    garment) they are looked for in the region's outline (`_touching_at`)."""
    pixels = np.ascontiguousarray(item_pixels, dtype=np.uint8)
    seen = cv2.countNonZero(pixels)
    if seen < _APART_SEEN * region:
        return None
    cut = _between_parts(*_labelled(pixels), axis, smallest)
    if cut is not None or seen < _SEEN_WHOLE * region:
        return cut
    if cv2.countNonZero(cv2.morphologyEx(pixels, cv2.MORPH_OPEN, _SOLID_TEST)) < _SOLID * seen:
        return None
    return _touching_at(pixels, axis, smallest)


def _touching_at(pixels: np.ndarray, axis: int, smallest: float) -> int | None:
    """Where along `axis` two solid items laid against each other meet: the largest part of their outline (holes
    filled, so that a garment the belt's colour on a photo laid flat does not count; without what is thinner
    than `_THIN`, a seam passing under them or a strap, which would make notches of its own) has a waist
    (`_FINE_NOTCHES`) between two parts lying one after the other."""
    contours, _ = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    depths = _notches(max(contours, key=cv2.contourArea))[:, 3] / 256 if contours else np.zeros(0)
    if not np.any(depths > _NOTCH * pixels.shape[axis]):
        return None  # most regions: one item, no notch a waist could begin at (taking things off makes none)
    outline = cv2.morphologyEx(
        cv2.drawContours(np.zeros_like(pixels), contours, -1, 1, cv2.FILLED), cv2.MORPH_OPEN, _THIN
    )
    contours, _ = cv2.findContours(outline, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = cv2.drawContours(np.zeros_like(pixels), [max(contours, key=cv2.contourArea)], -1, 1, cv2.FILLED)
    waist = _waist(largest.astype(bool), axis, smallest, _FINE_NOTCHES, _SLIT)
    if waist is None or not _one_after_the_other(*(_extent(part, axis) for part in waist[1])):
        return None
    return round(waist[0])


def _between_parts(labels: np.ndarray, areas: np.ndarray, axis: int, smallest: float) -> int | None:
    """Where along `axis` the two largest parts (`_labelled`) meet, when both are items (`_APART_SHARE` of all
    and `smallest`) lying one after the other (overlapping by less than `_APART_OVERLAP`), else None."""
    areas = areas[1:]
    if len(areas) < 2:
        return None
    big = [i + 1 for i in np.argsort(areas)[::-1][:2] if areas[i] >= max(smallest, _APART_SHARE * areas.sum())]
    if len(big) < 2:
        return None
    (a0, a1), (b0, b1) = sorted(_extent(labels == i, axis) for i in big)
    return round((a1 + b0) / 2) if _one_after_the_other((a0, a1), (b0, b1)) else None


def _labelled(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The mask's connected parts: the label image and each label's pixels (label 0: the rest). What
    cv2.connectedComponentsWithStats gives but the boxes, which cost it five to seven times the labelling (0.1
    ms a 160x120 mask, 0.4 ms a 320x240 one): a box is worked out for the parts kept alone (`_extent`)."""
    count, labels = cv2.connectedComponents(mask, connectivity=connectivity)
    return labels, np.bincount(labels.ravel(), minlength=count)


def _extent(part: np.ndarray, axis: int) -> tuple[int, int]:
    """Where a part's mask begins and ends along `axis` (pixels, the end exclusive)."""
    along = np.nonzero(part.any(axis=axis))[0]
    return int(along.min()), int(along.max()) + 1


def _one_after_the_other(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Two parts' extents along the belt overlap by less than `_APART_OVERLAP` of the shorter."""
    (a0, a1), (b0, b1) = sorted((first, second))
    return a1 - b0 < _APART_OVERLAP * min(a1 - a0, b1 - b0)
