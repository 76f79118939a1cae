"""External mode: a PLC or photo-eye publishes ``{"item_id": …}`` on ``…/trigger`` when an item is in front
of the camera; the frames captured after it (``external_frames`` of them, within ``external_timeout_s``)
are that item. Triggers arrive on the MQTT thread and wait in a queue for the frame loop."""

from __future__ import annotations

import logging
import queue
import time

from edge.camera import Frame, crop_roi
from edge.commands import Trigger
from edge.config import Roi, TriggerSettings
from edge.items import Item, ItemBook
from edge.modes import InView

log = logging.getLogger(__name__)


class ExternalMode:
    def __init__(self, settings: TriggerSettings, roi: Roi | None) -> None:
        self._settings = settings
        self._roi = roi
        self._triggers: queue.Queue[tuple[Trigger, float]] = queue.Queue()
        self._item: Item | None = None
        self._offered = 0
        self._triggered_at = 0.0

    def trigger(self, trigger: Trigger) -> None:
        """From the MQTT thread: hand the trigger on, stamped with when it came."""
        self._triggers.put((trigger, time.monotonic()))

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        if self._item is None:
            try:
                trigger, self._triggered_at = self._triggers.get_nowait()
            except queue.Empty:
                return
            self._item, self._offered = items.open(trigger.item_id), 0
        if frame.captured_at < self._triggered_at:
            return  # captured before the photo-eye fired: the item was not in view yet
        items.offer(self._item, crop_roi(frame.image, self._roi), frame.captured_at, quality=-self._offered)
        self._offered += 1
        if self._offered >= self._settings.external_frames:
            items.close(self._item)
            self._item = None

    def idle(self) -> bool:
        return self._item is None

    def use_roi(self, roi: Roi | None) -> None:
        self._roi = roi

    def counts(self) -> dict[str, object]:
        return {}

    def in_view(self) -> list[InView]:
        return []  # the trigger says when, not where

    def state(self) -> str:
        return "waiting for a trigger" if self._item is None else f"collecting frames of {self._item.item_id}"

    def on_tick(self, now: float, items: ItemBook) -> None:
        if self._item is not None and now > self._triggered_at + self._settings.external_timeout_s:
            log.warning("trigger %s: %d frame(s) before the timeout", self._item.item_id, self._offered)
            items.close(self._item, now)
            self._item = None
