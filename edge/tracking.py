"""Following items along the belt from frame to frame, so each one is one item however many share the view.

Each frame the presence detector reports the items in view by where they are along the belt (a span of
columns). A track follows one of them: a span that overlaps a track's last span, widened by how far an item
can move in a frame, continues that track; a new span starts a track, which counts as an item after
``min_frames`` frames (debounce); a track not seen for ``leave_frames`` frames has left. Two tracks that
come to overlap one span are items touching each other: their views show both, so they are marked and
their crops are not used while they touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.presence import ItemView


@dataclass
class Track:
    view: ItemView  # the item's latest view
    seen: int = 1  # frames seen in a row
    missed: int = 0  # frames not seen in a row
    confirmed: bool = False  # seen min_frames times: an item
    touching: bool = False  # shares its span with another track this frame


class BeltTracker:
    def __init__(self, min_frames: int, leave_frames: int, reach: int) -> None:
        self.min_frames = min_frames
        self.leave_frames = leave_frames
        self.reach = reach  # columns (working resolution) an item may move between two frames
        self.tracks: list[Track] = []  # in the order the items appeared

    def update(self, views: list[ItemView]) -> tuple[list[Track], list[Track]]:
        """Follow the items into this frame; returns (tracks that became items, items that left)."""
        matched: set[int] = set()
        for track in self.tracks:
            track.touching = False
        for view in views:
            near = [t for t in self.tracks if self._overlaps(t.view.span, view.span)]
            if not near:
                self.tracks.append(Track(view))
                matched.add(id(self.tracks[-1]))
                continue
            if len(near) == 1:
                near[0].view = view
            else:
                _share(view, near)
            for track in near:
                if id(track) not in matched:
                    track.seen, track.missed = track.seen + 1, 0
                    matched.add(id(track))
        entered = []
        for track in self.tracks:
            if id(track) not in matched:
                track.seen, track.missed = 0, track.missed + 1
            elif not track.confirmed and track.seen >= self.min_frames:
                track.confirmed = True
                entered.append(track)
        left = [t for t in self.tracks if t.missed > self.leave_frames]
        self.tracks = [t for t in self.tracks if t.missed <= self.leave_frames]
        return entered, [t for t in left if t.confirmed]

    def _overlaps(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        return a[0] - self.reach < b[1] and b[0] < a[1] + self.reach


def _share(view: ItemView, tracks: list[Track]) -> None:
    """One span over touching items: each keeps its own width, the first anchored at the span's left end and
    the last at its right end, so that each finds its own part again when they come apart."""
    ordered = sorted(tracks, key=lambda t: t.view.span[0])
    x0, x1 = view.span
    for index, track in enumerate(ordered):
        width = track.view.span[1] - track.view.span[0]
        if index == 0:
            span = (x0, min(x1, x0 + width))
        elif index == len(ordered) - 1:
            span = (max(x0, x1 - width), x1)
        else:
            span = track.view.span
        track.view = ItemView(span, view.box, view.in_full_view, view.centred)
        track.touching = True
