"""Items from first sight to their decision, in belt order.

A trigger mode opens an item when it appears, offers crops of it to the inference worker while it is in
view, and closes it when no more frames of it will come. Decisions leave strictly in the order the
items were opened, because a PLC in presence mode matches decisions to items by order. A closed item is
decided once the crop being classified for it is done; a crop of it still waiting behind other items'
after ``wait_s`` is dropped, and the item is decided on the frames it has, a reject (``no_frames``) if
none. So a classifier slower than the items come costs classifications, never decisions, and the
latency of a decision stays bounded.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge.decision import ItemVote
from edge.inference import InferenceWorker, Job, Result


@dataclass
class Item:
    vote: ItemVote
    closed_at: float | None = None  # monotonic; set when no more crops of it will be offered
    crop: np.ndarray | None = None  # the newest classified crop (kept for the low-confidence crop store)

    @property
    def item_id(self) -> str:
        return self.vote.item_id


@dataclass
class ItemBook:
    worker: InferenceWorker
    wait_s: float  # how long a closed item waits for a crop still queued behind other items
    _open: deque[Item] = field(default_factory=deque)
    _by_id: dict[str, Item] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._open)

    def open(self, item_id: str, first_seen: float | None = None) -> Item:
        item = Item(ItemVote(item_id=item_id, first_seen=time.time() if first_seen is None else first_seen))
        self._open.append(item)
        self._by_id[item_id] = item
        return item

    def open_ids(self) -> set[str]:
        """Ids of the items not decided yet."""
        return set(self._by_id)

    def offer(self, item: Item, crop: np.ndarray, captured_at: float, quality: float = 0.0) -> None:
        if item.closed_at is None:
            self.worker.offer(Job(item.item_id, crop.copy(), captured_at, quality))

    def close(self, item: Item, now: float | None = None) -> None:
        if item.closed_at is None:
            item.closed_at = time.monotonic() if now is None else now

    def close_all(self) -> None:
        for item in self._open:
            self.close(item)

    def collect(self) -> list[Result]:
        """Add finished classifications to their items' votes; returns them (for stats)."""
        results = [result for result in self.worker.results() if result.item_id in self._by_id]
        for result in results:
            item = self._by_id[result.item_id]
            item.vote.add(result.scores, result.captured_at, result.inference_ms, result.novelty)
            item.crop = result.crop
        return results

    def decided(self, now: float | None = None, *, all_open: bool = False) -> list[Item]:
        """Items whose decision can go out now, oldest first; each is returned once. ``all_open``: every
        open item, whatever is still running for it (the daemon stops and cannot wait longer)."""
        now = time.monotonic() if now is None else now
        for item in self._open:  # every overdue item, not only the first: the worker must not spend time on them
            if item.closed_at is not None and now - item.closed_at >= self.wait_s:
                self.worker.drop_waiting(item.item_id)
        ready = []
        while self._open and (all_open or self._is_ready(self._open[0], now)):
            item = self._open.popleft()
            del self._by_id[item.item_id]
            self.worker.forget(item.item_id)
            ready.append(item)
        return ready

    def _is_ready(self, item: Item, now: float) -> bool:
        if item.closed_at is None:
            return False
        return self.worker.pending(item.item_id) is None  # a running crop's result is collected next turn
