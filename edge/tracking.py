"""Following items along the belt from frame to frame, and timing them at the reference line.

Each frame the presence detector reports item candidates. A track follows one item: its last box, moved on
by the belt's velocity for the time since it was seen, is where the item should be now, and the candidate most
like that box continues the track (where the item was, if no candidate is near where it should be). The
belt's velocity (direction and speed) is configured or learned from the tracks themselves: items lie still on
a belt, so every item in full view moves with it. A candidate that continues no track starts one, which counts
as an item after ``min_frames`` frames, if it covers ``new_item_area`` of the view; a smaller one (down to half
that) once it has been followed wholly in view where the belt moved it for a few frames (`_SMALL`). A track
unseen for ``leave_frames`` frames has left.

The detector can err both ways, and the tracker notices: a candidate that lies inside another track's
expected place is a piece of that item (a dark garment shown as two parts), not a new item; a track whose
expected place is swallowed by another track's candidate has merged with it (two items touching). Both are
counted, and an item that touched another is marked so it never gets a confident lane. Two items that came
into view already touching show as one region until the detector finds the waist between them: from that
frame on they are two tracks (the leading one keeps the item). Tracks that share a region share it out along
the travel, each where it is expected, so each touching item keeps its own place, crossing time and decision.

When an item's centre passes the reference line (a line across the belt, at a set share of the ROI along the
travel), the time it crossed is fitted to its path over the frames it was in full view (one frame, for an item
nearly as long as the view, with the belt's speed known): a PLC fires the diverter from that time, the belt
speed and the diverter's distance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np

from edge.item_shapes import ItemView, box_area, box_intersection, box_overlap

Direction = tuple[int, int]  # (axis, sign): axis 0 is x, 1 is y; sign +1 when items move to larger x / y

DIRECTIONS: dict[str, Direction] = {
    "left_to_right": (0, 1),
    "right_to_left": (0, -1),
    "top_to_bottom": (1, 1),
    "bottom_to_top": (1, -1),
}
_LEARN_FROM = 6  # steps of whole items along the travel before a learned direction and speed are used
_MATCH = 0.2  # share of the smaller box that must overlap for a candidate to continue a track
_ANCHOR_S = 0.5  # an item that moved less than two working pixels in this long: the belt stood, measure afresh
_STOOD_S = 0.3  # an item whose path took this much longer than the belt's speed explains stood still on its way
_SAME_SHIFT_PX = 8  # sides of a box that moved by this much the same (two working pixels) moved alike
# an item at least this share of the view long along the travel may be in full view for one frame only (a
# garment 86 % of a 480 px view long at 24 px a frame, session 40): timed by that frame. A sliver seen a few frames
# at the view's edge (an `untimed` reject) is far shorter
_LONG = 0.5
# a candidate under `new_item_area` but at least `_SMALL` of it is an item only once seen wholly in view this many
# frames in a row, each where the belt moved it: a garment a fifth of the belt wide (1-2 % of a 640x480 view)
# never reached the share a new item needs and was never seen (session 40: 6-14 of 30 cut-out garments 20-30 %
# of the belt's width missed on six belts). A shaking camera's edge is that small too, but comes and goes or
# stays put; pieces of a modular belt's hinges move with the belt: there only new items count (`small_items`)
_SMALL, _SMALL_FRAMES = 0.5, 5


@dataclass
class Track:
    view: ItemView
    first_seen: float  # the frames' clock
    last_seen: float = field(init=False)  # the frames' clock, when its item was last seen
    seen: int = 1  # frames seen in a row
    missed: int = 0  # frames not seen in a row
    confirmed: bool = False  # an item: seen min_frames times in a row, and once in full view (or longer than it)
    touching: bool = False  # touches another item in this frame
    touching_frames: int = 0  # frames it touched another while in full view
    in_full_view: bool = False  # clear of the ROI's edges where items come in and go out
    longest: int = 0  # the most it has measured along the belt while in full view, ROI pixels
    split: bool = False  # was seen in pieces (a suspected split, counted once)
    merged: bool = False  # was swallowed by another track's candidate (a suspected merge, counted once)
    touching_part: bool = False  # one of items told apart in one region (a waist, its length): may share it unconfirmed
    spanned: bool = False  # reached from the edge where items come in to where they go out: longer than the view
    one_item: bool = False  # too long for one of the line's items, but one all the same (a photo, a bag): not divided
    path: list[tuple[float, float, float]] = field(default_factory=list)  # (time, centre x, y) while in full view
    crossed_at: float | None = None  # when its centre crossed the reference line (the frames' clock)
    speed_px_s: float | None = None  # its own speed, fitted to its path
    anchor: tuple[float, ItemView] | None = None  # (time, view) the belt's motion is next measured from

    def __post_init__(self) -> None:
        self.last_seen = self.first_seen

    def fit_crossing(
        self,
        along: Callable[[tuple[float, float]], float],
        reference: float,
        belt_speed: float | None,
        *,
        long: bool = False,
    ) -> None:
        """The time its centre was at `reference` along the travel. With the belt's speed known, each frame of
        its path says when it crossed (its time + distance left / speed) and the median of those is taken: an
        outline seen a little differently from frame to frame (white on a white belt) moves its centre, not the
        median. Else a straight line through its path. An item nearly as long as the view (`long`) can be in
        full view for one frame only; with the belt's speed known, that frame says it."""
        times = np.array([t for t, _, _ in self.path])
        positions = np.array([along((x, y)) for _, x, y in self.path])
        if len(times) == 1 and long and belt_speed:
            self.crossed_at = float(times[0] + (reference - positions[0]) / belt_speed)
            return
        if len(times) < 2 or np.ptp(positions) < 1e-6:
            return
        slope, intercept = np.polyfit(times - times[0], positions, 1)
        if slope > 0:
            self.speed_px_s = float(slope)
        if belt_speed:
            crossings = times + (reference - positions) / belt_speed
            if np.ptp(times) - np.ptp(positions) / belt_speed > _STOOD_S:
                # the belt stood still on its way: each frame before the stop says it crossed earlier by the
                # stop's length; the frames since the belt ran again (the last ones) say when it did
                since = np.median(crossings[-3:])
                crossings = crossings[crossings >= since - _STOOD_S / 2]
            self.crossed_at = float(np.median(crossings))
        elif slope > 0:
            self.crossed_at = float(times[0] + (reference - intercept) / slope)


class BeltTracker:
    def __init__(
        self,
        min_frames: int,
        leave_frames: int,
        roi_size: tuple[int, int],
        *,
        new_item_area: float = 0.0,
        direction: str = "auto",
        reference_line: float = 0.5,
    ) -> None:
        self.min_frames = min_frames
        self.new_item_area = new_item_area  # share of the ROI a candidate needs to start a track
        self.leave_frames = leave_frames
        self.roi_size = roi_size  # (width, height) in ROI pixels
        self.configured = DIRECTIONS.get(direction)
        self.reference_line = reference_line
        self.tracks: list[Track] = []  # in the order the items appeared
        self.velocity = np.zeros(2)  # the belt's, ROI pixels per second, learned from the tracks
        self._steps = np.zeros(2, int)  # steps the velocity was learned from, along x and along y
        self._small: list[list[tuple[float, ItemView]]] = []  # small candidates followed so far, each frame's view
        self.small_items = True  # whether small candidates may become items (not on a modular belt: `_SMALL`)
        self.fragments = 0  # items seen in pieces at least once (suspected splits)
        self.merges = 0  # items swallowed by another's candidate at least once (suspected merges: touching)

    def start_from(self, velocity: tuple[float, float]) -> None:
        """The belt's velocity a run before measured on this view: travel and speed known from the first item
        (counted as `_LEARN_FROM` steps along each axis), then followed as items move."""
        self.velocity = np.array(velocity, float)
        self._steps[:] = _LEARN_FROM

    @property
    def direction(self) -> Direction | None:
        """(axis, sign) of the travel: configured, else learned once enough items have moved."""
        if self.configured is not None:
            return self.configured
        axis = int(np.argmax(np.abs(self.velocity)))
        if self._steps[axis] < _LEARN_FROM:
            return None
        return axis, 1 if self.velocity[axis] > 0 else -1

    @property
    def speed_px_s(self) -> float | None:
        """The belt's speed along its travel, ROI pixels per second (None until measured)."""
        direction = self.direction
        if direction is None or self._steps[direction[0]] < _LEARN_FROM:
            return None
        return float(abs(self.velocity[direction[0]]))

    def along(self, point: tuple[float, float], direction: Direction | None = None) -> float:
        """How far along the travel (the belt's, or `direction`) a point is, from the edge where items come in
        (ROI pixels)."""
        axis, sign = direction or self.direction or (0, 1)
        return point[axis] if sign > 0 else self.roi_size[axis] - point[axis]

    def update(self, views: list[ItemView], now: float) -> tuple[list[Track], list[Track]]:
        """Follow the items into this frame (captured at `now`, seconds); returns (tracks that became items,
        items that left)."""
        # where each item should be now: moved on by the belt since it was last seen (a slow board takes one
        # frame in three, and not evenly)
        expected = {id(t): _moved(t.view.box, self.velocity * max(0.0, now - t.last_seen)) for t in self.tracks}
        for track in self.tracks:
            track.touching = False
        track_of: dict[int, int] = {}  # view index -> track index
        view_of: dict[int, int] = {}
        # first each item where it should be now; then, for items that matched nothing, where it was: a clock
        # that jumps (a file read unpaced, a stalled board) must not lose an item, and an item just gone out of
        # view must not take the place it left from the next item, which moved into it
        for places in (expected, {id(t): t.view.box for t in self.tracks}):
            self._match(places, views, track_of, view_of)
        entered = []
        for vi, view in enumerate(views):
            if vi in track_of:
                continue
            owner = self._inside_expected(view, expected, view_of)
            if owner is not None and view.touching and views[view_of[owner]].touching:
                self._tell_apart(owner, vi, views, view_of, track_of)
                continue
            if owner is not None:  # a piece of an item already followed: part of it, not a new item
                self.fragments += not self.tracks[owner].split
                self.tracks[owner].split = True
                track_of[vi] = owner
                continue
            if view.area >= self.new_item_area:
                self.tracks.append(Track(view, now, touching_part=view.touching))
            elif (track := self._small_item(view, now)) is not None:
                self.tracks.append(track)
            else:
                continue
            view_of[len(self.tracks) - 1] = vi
            track_of[vi] = len(self.tracks) - 1
        self._small = [seen for seen in self._small if seen[-1][0] == now and len(seen) < _SMALL_FRAMES]
        sharing: dict[int, list[Track]] = {vi: [self.tracks[ti]] for ti, vi in view_of.items()}  # view -> tracks
        for ti, track in enumerate(self.tracks):
            if ti in view_of:
                continue
            swallower = next((vi for vi in view_of.values() if _inside(expected[id(track)], views[vi].box)), None)
            if swallower is not None and (track.confirmed or track.touching_part):  # two items show as one
                self.merges += not track.merged
                track.merged = True
                sharing[swallower].append(track)
                continue
            track.seen, track.missed = 0, track.missed + 1
        for vi, tracks in sharing.items():
            if len(tracks) == 1:
                self._step(tracks[0], views[vi], now)
                continue
            # a track begun this frame (a new item, or the part a waist gave a track of its own) is where it was seen
            places = [expected.get(id(t), t.view.box) for t in tracks]
            for track, part in zip(tracks, self._shared_out(views[vi], places), strict=True):
                if part is None:  # squeezed out of the region: not seen in it this frame
                    track.seen, track.missed = 0, track.missed + 1
                else:
                    self._step(track, part, now)
        for track in self.tracks:
            if track.touching and track.in_full_view:
                track.touching_frames += 1
            # what never comes into full view is not an item: a seam or a shadow at the edge, a flicker
            if not track.confirmed and track.seen >= self.min_frames and (track.in_full_view or track.spanned):
                track.confirmed = True
                entered.append(track)
        left = [t for t in self.tracks if t.missed > self.leave_frames]
        self.tracks = [t for t in self.tracks if t.missed <= self.leave_frames]
        for track in (t for t in left if t.crossed_at is None):  # it left before or without crossing: extrapolate
            self.time_crossing(track)
        return entered, [t for t in left if t.confirmed]

    def _small_item(self, view: ItemView, now: float) -> Track | None:
        """A track for a small candidate (see `_SMALL`) once it has been followed, wholly in view, where the belt
        moved it for `_SMALL_FRAMES` frames in a row, with the frames it was followed as its path; else None
        (it is followed on, or starts being followed)."""
        speed, direction = self.speed_px_s, self.direction
        if (
            not self.small_items
            or view.area < _SMALL * self.new_item_area
            or not speed
            or direction is None
            or not self._clear_of_edges(view.box)
        ):
            return None
        axis = direction[0]
        for seen in self._small:
            then, before = seen[-1]
            moved = view.centre[axis] - before.centre[axis]
            expected = self.velocity[axis] * (now - then)
            if (
                then < now
                and box_overlap(_moved(before.box, self.velocity * (now - then)), view.box) >= 0.5
                and abs(moved - expected) <= 0.25 * abs(expected) + 4
            ):
                seen.append((now, view))
                break
        else:
            self._small.append([(now, view)])
            return None
        if len(seen) < _SMALL_FRAMES:
            return None
        (first_seen, first), *_ = seen
        track = Track(first, first_seen)
        track.seen, track.last_seen = len(seen) - 1, seen[-2][0]
        track.path = [(t, *v.centre) for t, v in seen[:-1]]
        return track

    def time_crossing(self, track: Track) -> None:
        """When its path crosses the reference line, extrapolated either way: an item that left before or
        without crossing it, or one still on its way when the daemon stops (then a crossing still due)."""
        travel = self.direction or _travel_of(track)  # the first item after a start passes before it is learned
        if travel is not None:
            along = functools.partial(self.along, direction=travel)
            reference = self.reference_line * self.roi_size[travel[0]]
            track.fit_crossing(along, reference, self.speed_px_s, long=self._long(track, travel[0]))

    def _match(
        self,
        places: dict[int, tuple[int, int, int, int]],
        views: list[ItemView],
        track_of: dict[int, int],
        view_of: dict[int, int],
    ) -> None:
        """Continue each track not yet matched with the view not yet taken most like its place (intersection
        over union), of those that overlap the place by at least `_MATCH` of the smaller box. Most like, not
        most overlapping: a piece of the next item lies wholly inside an item's place, and the place of a
        track that lost its item (a sliver seen coming in, moved on since) wholly inside that item's view; both
        overlap fully, and neither is the item."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            if ti in view_of:
                continue
            place = places[id(track)]
            for vi, view in enumerate(views):
                if vi not in track_of and box_overlap(place, view.box) >= _MATCH:
                    pairs.append((_alike(place, view.box), ti, vi))
        for _, ti, vi in sorted(pairs, reverse=True):
            if ti not in view_of and vi not in track_of:
                track_of[vi], view_of[ti] = ti, vi

    @property
    def reference(self) -> float:
        """The reference line's position along the travel, ROI pixels from where items come in."""
        axis = (self.direction or (0, 1))[0]
        return self.reference_line * self.roi_size[axis]

    def _step(self, track: Track, view: ItemView, now: float) -> None:
        """The track's item is at `view` now: learn the belt's velocity, extend its path, time its crossing."""
        track.view, track.last_seen = view, now
        track.seen, track.missed = track.seen + 1, 0
        track.touching = track.touching or view.touching
        track.in_full_view = self._clear_of_edges(view.box)
        self._measure_belt(track, view, now)
        if track.in_full_view:
            track.path.append((now, *view.centre))
        if self.direction is None:
            return
        axis = self.direction[0]
        track.spanned = track.spanned or (view.box[axis] <= 0 and view.box[2 + axis] >= self.roi_size[axis])
        if not track.in_full_view:
            return
        track.longest = max(track.longest, view.length(axis))
        if track.crossed_at is None and self.along(view.centre) >= self.reference:
            track.fit_crossing(self.along, self.reference, self.speed_px_s, long=self._long(track, axis))

    def _long(self, track: Track, axis: int) -> bool:
        """Measured at least `_LONG` of the view along the travel: in full view a few frames at most."""
        return track.longest >= _LONG * self.roi_size[axis]

    def _measure_belt(self, track: Track, view: ItemView, now: float) -> None:
        """Learn the belt's velocity from how far an item moved since its anchor (a place and time it was seen
        at): only once it moved by two working pixels, so a standing belt, whose items' outlines flicker by a
        pixel, teaches nothing; and along an axis only while its box's two sides there moved alike (a splice
        joining it at one side, or its shadow, changes the box's height, not how it moves along the belt) and
        touch neither edge of the view, because one coming into view moves its box's middle at half the belt's
        speed (on a slow belt, 5 px a frame, its sides' 5 and 0 px pass as moved alike)."""
        anchor = track.anchor
        if track.touching or track.seen < 2:
            track.anchor = None
            return
        alike = None if anchor is None else _sides_alike(anchor[1].box, view.box)
        if anchor is None or now - anchor[0] > _ANCHOR_S or not alike.any():
            track.anchor = (now, view)  # the belt stood, or the item changed its outline: measure afresh
            return
        shift = np.subtract(view.centre, anchor[1].centre)
        if np.abs(shift).max() < _SAME_SHIFT_PX or now <= anchor[0]:
            return
        # an axis whose sides moved apart measures nothing; nor does the other one unless it moved (an item
        # coming into view: its height holds while its middle moves along the belt, across it by its tilt)
        moved = alike if alike.all() else alike & (np.abs(shift) >= _SAME_SHIFT_PX)
        measured = self._inside(anchor[1].box) & self._inside(view.box) & moved
        if self.configured is not None:  # the travel is known: only the speed along it is learned
            measured[1 - self.configured[0]] = False
        for axis in np.flatnonzero(measured):
            steps = self._steps[axis]
            weight = 1.0 / (steps + 1) if steps < 20 else 0.05
            self.velocity[axis] += weight * (shift[axis] / (now - anchor[0]) - self.velocity[axis])
            self._steps[axis] += 1
        track.anchor = (now, view)

    def _inside(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """Along x and along y: the box touches neither edge of the view."""
        return np.array([box[0] > 0 and box[2] < self.roi_size[0], box[1] > 0 and box[3] < self.roi_size[1]])

    def divide(self, track: Track, parts: list[ItemView]) -> list[Track]:
        """`track` followed one region that is several items touching: `parts`, leading first. The leading part
        stays the track's (it came into view first, so its item was opened first: decisions stay in belt
        order); each other part starts a track of its own (returned). The region moved with the belt as one, so
        each part's path so far is the region's, moved by where the part lies in it; all are touching, whatever
        view they are in."""
        boxes = [view.box for view in parts]
        middle = (
            (min(b[0] for b in boxes) + max(b[2] for b in boxes)) / 2,
            (min(b[1] for b in boxes) + max(b[3] for b in boxes)) / 2,
        )
        followed = track.path
        new = [Track(view, track.first_seen, touching_part=True) for view in parts[1:]]
        self.tracks += new
        for part, view in zip([track, *new], parts, strict=True):
            dx, dy = view.centre[0] - middle[0], view.centre[1] - middle[1]
            part.view, part.last_seen = view, track.last_seen
            part.path = [(t, x + dx, y + dy) for t, x, y in followed]
            part.touching_part, part.crossed_at = True, None
            part.touching_frames += 1
            part.longest = view.length(self.direction[0]) if self.direction else 0
            if self.direction is not None and self.along(view.centre) >= self.reference:
                part.fit_crossing(self.along, self.reference, self.speed_px_s)
        return new

    def divide_evenly(self, track: Track, count: int) -> list[Track]:
        """`track`'s region is `count` items touching, laid one after another: equal stretches of it along the
        travel (see `divide`). Needs the travel known."""
        assert self.direction is not None, "the travel must be known to divide a region along it"
        axis, sign = self.direction
        start, end = track.view.box[axis], track.view.box[axis + 2]
        edges = np.linspace(start, end, count + 1).round().astype(int).tolist()
        parts = [track.view.stretch(axis, a, b) for a, b in pairwise(edges)]
        return self.divide(track, parts[::-1] if sign > 0 else parts)

    def _tell_apart(
        self, owner: int, vi: int, views: list[ItemView], view_of: dict[int, int], track_of: dict[int, int]
    ) -> None:
        """The detector split the region `owner` followed at a waist: two items touching (see `divide`)."""
        mine = view_of[owner]
        keep, other = (vi, mine) if self.along(views[vi].centre) > self.along(views[mine].centre) else (mine, vi)
        self.divide(self.tracks[owner], [views[keep], views[other]])
        view_of[owner], track_of[keep] = keep, owner
        view_of[len(self.tracks) - 1], track_of[other] = other, len(self.tracks) - 1

    def _shared_out(self, view: ItemView, expected: list[tuple[int, int, int, int]]) -> list[ItemView | None]:
        """One region, several items touching: each gets the stretch of it along the travel where it is expected
        (cut halfway between neighbours), the region's extent across. None for an item left no stretch. While
        the travel is unknown, the first keeps the region and the others their expected places."""
        if self.direction is None:
            return [replace(view, touching=True)] + [ItemView(box, view.area, True) for box in expected[1:]]
        axis = self.direction[0]
        order = sorted(range(len(expected)), key=lambda i: expected[i][axis] + expected[i][axis + 2])
        start, end = view.box[axis], view.box[axis + 2]
        halfway = [round((expected[a][axis + 2] + expected[b][axis]) / 2) for a, b in pairwise(order)]
        cuts = np.clip(np.maximum.accumulate([start, *halfway, end]), start, end).tolist()
        parts: list[ItemView | None] = [None] * len(expected)
        for k, i in enumerate(order):
            if cuts[k + 1] - cuts[k] >= _SAME_SHIFT_PX:
                parts[i] = view.stretch(axis, cuts[k], cuts[k + 1])
        return parts

    def _clear_of_edges(self, box: tuple[int, int, int, int]) -> bool:
        """Clear of the ROI's edges where items come in and go out (of every edge while the travel is unknown)."""
        inside = self._inside(box)
        direction = self.direction
        return bool(inside.all() if direction is None else inside[direction[0]])

    def _inside_expected(self, view: ItemView, expected: dict[int, tuple], view_of: dict[int, int]) -> int | None:
        """The followed track whose expected place holds most of this candidate, if any does."""
        for ti, track in enumerate(self.tracks):
            if ti in view_of and id(track) in expected and _inside(view.box, expected[id(track)]):
                return ti
        return None


def _moved(box: tuple[int, int, int, int], by: np.ndarray) -> tuple[int, int, int, int]:
    dx, dy = round(float(by[0])), round(float(by[1]))
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def _travel_of(track: Track) -> Direction | None:
    """The travel as the track's own path in full view shows it (first place to last), if it moved."""
    if len(track.path) < 2:
        return None
    moved = np.subtract(track.path[-1][1:], track.path[0][1:])
    axis = int(np.argmax(np.abs(moved)))
    return (axis, 1 if moved[axis] > 0 else -1) if abs(moved[axis]) >= _SAME_SHIFT_PX else None


def _sides_alike(before: tuple[int, int, int, int], after: tuple[int, int, int, int]) -> np.ndarray:
    """Along x and along y: the box's two sides moved alike, so the item moved that way as one, its box neither
    growing nor shrinking there (a shadow or a fold changing, pieces of it joining, a splice across the belt
    joining it at one side)."""
    lead, trail = np.subtract(after[:2], before[:2]), np.subtract(after[2:], before[2:])
    return np.abs(lead - trail) <= _SAME_SHIFT_PX


def _alike(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union: 1 for the same box, small for a sliver of a large one."""
    shared = box_intersection(a, b)
    return shared / max(1, box_area(a) + box_area(b) - shared)


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    """Most (60 %) of `inner` lies within `outer`."""
    return box_intersection(inner, outer) >= 0.6 * max(1, box_area(inner))
