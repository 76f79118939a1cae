"""Presence mode: an item is whatever differs from the learned empty belt, followed along the belt from the
frame it appears to the frame it has gone (`edge.presence` finds the items in every frame, `edge.tracking`
follows them, so two items in view at once are two items). While an item is in full view, each frame
offers a crop that hugs it, plus the margin its model was trained with; the most centred view waiting is
the one the classifier takes next. The item closes when it leaves (or after ``max_frames`` classified views,
for an item that stopped on the belt)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from edge.camera import Frame, crop_roi
from edge.config import PresenceSettings, Roi
from edge.items import Item, ItemBook
from edge.modes import InView
from edge.presence import WORK_WIDTH, ItemView, PresenceDetector
from edge.tracking import BeltTracker, Track

log = logging.getLogger(__name__)

LEAVE_FRAMES = 2  # frames an item may go unseen (a flicker, a dark garment half out of view) before it has left


class PresenceMode:
    def __init__(
        self,
        settings: PresenceSettings,
        roi: Roi | None,
        next_item_id: Callable[[], str],
        item_margin: float = 0.0,
    ) -> None:
        self._settings = settings
        self._roi = roi
        self._next_item_id = next_item_id
        self.item_margin = item_margin  # the daemon sets it from config or bundle when a model goes live
        self.detector = PresenceDetector(settings)
        self._tracker: BeltTracker | None = None  # made at the first frame, when the ROI's width is known
        self._items: dict[int, Item] = {}  # id(track) -> its item

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        roi = crop_roi(frame.image, self._roi)
        self.detector.update(roi)
        tracker = self._tracker or self._make_tracker()
        entered, left = tracker.update(self.detector.items)
        for track in entered:
            self._items[id(track)] = items.open(self._next_item_id(), first_seen=frame.wall_time)
        for track in left:
            items.close(self._items.pop(id(track)))
        for track in tracker.tracks:
            item = self._items.get(id(track))
            if item is None or item.closed_at is not None:
                continue
            view = self._item_view(roi, track)
            if view is not None:
                items.offer(item, view, frame.captured_at, quality=track.view.centred)
            if item.vote.frames >= self._settings.max_frames:
                items.close(item)  # decided now; the item is still followed until it leaves

    def on_tick(self, now: float, items: ItemBook) -> None:
        pass

    def idle(self) -> bool:
        """No item followed (decided ones still in view count: they would be learned into the empty belt)."""
        return not self._items and (self._tracker is None or not self._tracker.tracks)

    def use_roi(self, roi: Roi | None) -> None:
        """Another part of the frame is another empty belt: learn it again."""
        self._roi = roi
        self.detector.reset()
        self._tracker = None

    def in_view(self) -> list[InView]:
        tracks = self._tracker.tracks if self._tracker is not None else []
        return [
            InView(track.view.box, track.touching, item.vote)
            for track in tracks
            if track.confirmed and (item := self._items.get(id(track))) is not None
        ]

    def state(self) -> str:
        if self.detector.learning:
            return "learning the empty belt"
        count = len(self.in_view())
        return "empty belt" if not count else f"{count} item{'s' if count > 1 else ''} in view"

    def _make_tracker(self) -> BeltTracker:
        self._tracker = BeltTracker(self._settings.min_frames, LEAVE_FRAMES, reach=max(2, WORK_WIDTH // 20))
        return self._tracker

    def _item_view(self, roi: np.ndarray, track: Track) -> np.ndarray | None:
        """The item framed like a product photo, or None while it is partly out of view or touches another."""
        if not self._settings.crop_to_item:
            return roi
        view: ItemView = track.view
        if track.touching or not view.in_full_view:
            return None
        x0, y0, x1, y1 = view.box
        mx, my = round((x1 - x0) * self.item_margin), round((y1 - y0) * self.item_margin)
        return roi[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx]
