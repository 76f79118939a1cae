"""Trigger modes: how items are found in the frames. Each one opens items in the `ItemBook`, offers crops of
them for classification and closes them; the book and the daemon do the rest (classify, decide, publish).

- ``continuous``: every ``min_interval_s`` the whole ROI is one item.
- ``presence``: an item is what differs from the learned empty belt, from entering to leaving the ROI.
- ``external``: a PLC or photo-eye says when (``…/trigger`` over MQTT); the next frames are the item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge.camera import Frame
from edge.config import EdgeSettings, Roi
from edge.decision import ItemVote
from edge.items import ItemBook

Box = tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass(frozen=True)
class InView:
    """An item in view: where it is and what the classifier says of it so far."""

    box: Box  # in ROI pixels
    touching: bool  # touches another item (no crop is taken of it meanwhile)
    vote: ItemVote


class TriggerMode(Protocol):
    def on_frame(self, frame: Frame, items: ItemBook) -> None:
        """Called for every frame, in order, from the frame loop; never blocks."""

    def on_tick(self, now: float, items: ItemBook) -> None:
        """Called on every turn of the loop, with or without a frame (timeouts)."""

    def idle(self) -> bool:
        """Nothing in view or being collected: a moment to change the ROI."""

    def use_roi(self, roi: Roi | None) -> None:
        """From the next frame on, look at `roi` (called only while idle)."""

    def in_view(self) -> list[InView]:
        """The items followed now, for the page (modes that know no item's place give none)."""

    def counts(self) -> dict[str, object]:
        """What the line did, for stats and /metrics: items seen, suspected splits and merges, belt speed
        (modes that find no items themselves give none)."""

    def state(self) -> str:
        """What the mode is doing, in words, for the page: 'empty belt', 'learning the empty belt', …"""


def build_mode(settings: EdgeSettings, roi: Roi | None, next_item_id: Callable[[], str]) -> TriggerMode:
    from edge.line_memory import LineMemory
    from edge.modes.continuous import ContinuousMode
    from edge.modes.external import ExternalMode
    from edge.modes.presence import PresenceMode

    mode = settings.trigger.mode
    if mode == "continuous":
        return ContinuousMode(settings.trigger, roi, next_item_id)
    if mode == "presence":
        return PresenceMode(settings.trigger.presence, roi, next_item_id, memory=LineMemory(settings.state_directory))
    return ExternalMode(settings.trigger, roi)
