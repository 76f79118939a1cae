"""Continuous mode: the whole ROI is an item, one every ``min_interval_s``, for lines where one item is
always in view (or for commissioning). A new item is opened only when the previous one is decided, so a
slow classifier lowers the rate instead of piling up items."""

from __future__ import annotations

from collections.abc import Callable

from edge.camera import Frame, crop_roi
from edge.config import Roi, TriggerSettings
from edge.items import ItemBook
from edge.modes import InView


class ContinuousMode:
    def __init__(self, settings: TriggerSettings, roi: Roi | None, next_item_id: Callable[[], str]) -> None:
        self._min_interval_s = settings.min_interval_s
        self._roi = roi
        self._next_item_id = next_item_id
        self._last_opened = float("-inf")

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        if len(items) or frame.captured_at - self._last_opened < self._min_interval_s:
            return
        self._last_opened = frame.captured_at
        item = items.open(self._next_item_id(), first_seen=frame.wall_time)
        items.offer(item, crop_roi(frame.image, self._roi), frame.captured_at)
        items.close(item)

    def on_tick(self, now: float, items: ItemBook) -> None:
        pass

    def idle(self) -> bool:
        return True  # an item lives for one frame

    def use_roi(self, roi: Roi | None) -> None:
        self._roi = roi

    def counts(self) -> dict[str, object]:
        return {}

    def in_view(self) -> list[InView]:
        return []  # the whole ROI is the item

    def state(self) -> str:
        return "the whole region is one item"
