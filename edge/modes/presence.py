"""Presence mode: an item is whatever differs from the learned empty belt, from the frame it enters the
ROI to the frame it has left (`edge.presence` detects it on every frame). While it is in full view each
frame offers a crop that hugs it, plus the margin its model was trained with; the most centred view
waiting is the one the classifier takes next. The item closes when it leaves (or after ``max_frames``
classified views, for an item that stopped on the belt)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from edge.camera import Frame, crop_roi
from edge.config import PresenceSettings, Roi
from edge.items import Item, ItemBook
from edge.presence import PresenceDetector, PresenceEvent

log = logging.getLogger(__name__)

# The decision for an item that shared the view with another: scores of a crop holding both mean nothing.
TWO_ITEMS = "two_items_in_view"


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
        self._item: Item | None = None

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        roi = crop_roi(frame.image, self._roi)
        event = self.detector.update(roi)
        if event is PresenceEvent.ENTERED:
            self._item = items.open(self._next_item_id(), first_seen=frame.wall_time)
        item = self._item
        if item is None:
            return
        if event is PresenceEvent.LEFT:
            items.close(item)
            self._item = None
            return
        if self.detector.items_in_view > 1 and item.reject_reason is None:
            log.warning("item %s shares the view with another item: it will be rejected", item.item_id)
            item.reject_reason = TWO_ITEMS
        view = self._item_view(roi)
        if view is not None and item.reject_reason is None:
            items.offer(item, view, frame.captured_at, quality=self.detector.centred)
        if item.vote.frames >= self._settings.max_frames:
            items.close(item)  # decided now; the item is still followed until it leaves

    def on_tick(self, now: float, items: ItemBook) -> None:
        pass

    def _item_view(self, roi: np.ndarray) -> np.ndarray | None:
        """The item framed like a product photo, or None while it is partly out of view."""
        if not self._settings.crop_to_item:
            return roi
        box = self.detector.item_box
        if box is None or not self.detector.item_in_full_view:
            return None
        x0, y0, x1, y1 = box
        mx, my = round((x1 - x0) * self.item_margin), round((y1 - y0) * self.item_margin)
        return roi[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx]
