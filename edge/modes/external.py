"""External mode: a PLC or photo-eye publishes ``{"item_id": …}`` on ``…/trigger`` when an item is in front
of the camera; the frames captured after it (``external_frames`` of them, within ``external_timeout_s``)
are that item. Triggers arrive on the MQTT thread and wait, a bounded number of them, for the frame loop.

The item was there when its trigger came, so that is when its decision's deadline starts counting: a
trigger that waited past ``external_timeout_s`` for frames (a flood of triggers, a camera that is away)
becomes a ``no_frames`` reject at once, never a decision made later from frames of whatever is in view then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from edge.camera import Frame, crop_roi
from edge.commands import CommandError, Trigger, echo
from edge.config import Roi, TriggerSettings
from edge.items import Item, ItemBook
from edge.modes import InView

log = logging.getLogger(__name__)

MAX_WAITING = 32  # triggers waiting for frames; more are refused on trigger/error (the camera cannot keep up)


@dataclass(frozen=True)
class _Waiting:
    item_id: str
    at: float  # monotonic, when the trigger came
    wall: float  # the same on the wall clock, for the decision


class ExternalMode:
    def __init__(self, settings: TriggerSettings, roi: Roi | None) -> None:
        self._settings = settings
        self._roi = roi
        self._lock = threading.Lock()  # the MQTT thread adds triggers, the frame loop takes them
        self._waiting: deque[_Waiting] = deque()
        self._undecided: set[str] = set()  # ids waiting, being collected or not decided yet: a repeat is refused
        self._item: Item | None = None
        self._offered = 0
        self._triggered_at = 0.0

    def trigger(self, trigger: Trigger) -> None:
        """From the MQTT thread: queue the trigger, stamped with when it came; CommandError (reported on
        trigger/error) for an id still undecided or when ``MAX_WAITING`` triggers wait already."""
        with self._lock:
            if trigger.item_id in self._undecided:
                raise CommandError(
                    f"item_id {echo(trigger.item_id)} is already triggered and not decided yet: a repeated trigger "
                    "(a PLC retry, a QoS 1 redelivery) is ignored; give every item its own id"
                )
            if len(self._waiting) >= MAX_WAITING:
                raise CommandError(
                    f"{MAX_WAITING} triggers are already waiting for frames: item_id {echo(trigger.item_id)} refused "
                    "(triggers come faster than the camera delivers external_frames frames of each)"
                )
            self._undecided.add(trigger.item_id)
            self._waiting.append(_Waiting(trigger.item_id, time.monotonic(), time.time()))

    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        if self._item is None:
            with self._lock:
                if not self._waiting:
                    return
                waiting = self._waiting.popleft()
            self._item, self._offered = items.open(waiting.item_id, first_seen=waiting.wall), 0
            self._triggered_at = waiting.at
        if frame.captured_at < self._triggered_at:
            return  # captured before the photo-eye fired: the item was not in view yet
        items.offer(self._item, crop_roi(frame.image, self._roi), frame.captured_at, quality=-self._offered)
        self._offered += 1
        if self._offered >= self._settings.external_frames:
            items.close(self._item)
            self._item = None

    def on_tick(self, now: float, items: ItemBook) -> None:
        timeout = self._settings.external_timeout_s
        if self._item is not None and now > self._triggered_at + timeout:
            log.warning("trigger %s: %d frame(s) before the timeout", self._item.item_id, self._offered)
            items.close(self._item, now)
            self._item = None
        with self._lock:
            while self._waiting and now > self._waiting[0].at + timeout:  # gone past the camera unseen
                waiting = self._waiting.popleft()
                log.warning("trigger %s waited %.1f s for frames: a reject", waiting.item_id, now - waiting.at)
                items.close(items.open(waiting.item_id, first_seen=waiting.wall), now)
            self._undecided &= {waiting.item_id for waiting in self._waiting} | items.open_ids()

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
