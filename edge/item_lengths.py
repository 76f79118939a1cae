"""How long this line's items are along the belt, learned from the items themselves.

Presence mode measures every rule for "not one item" against it: a region far longer than the line's items is
items laid touching, a band across the belt far shorter is a splice. It is learned from single items (clear
of others, not too long), so a pair never teaches it. That alone would lock a line to its first product: after
a changeover to a longer one, every new item is "too long", is divided into touching rejects and is never
learned. So a run of `CHANGEOVER_AFTER` too-long regions in a row, with no single item between them, is taken
for the new product and its length is learned from them; two items laid touching without a waist between them
happen now and then, not five times running. The lengths are kept across restarts (`edge.line_memory`), so a
restarted daemon judges its first items by the line's rules, not the weaker ones of a line never seen.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque

log = logging.getLogger(__name__)

KEPT = 25  # single items the usual length is the median of
LEARN_FROM = 5  # single items measured before the line's usual item length is trusted
CHANGEOVER_AFTER = 5  # too-long regions in a row, no single item between them: the line's product changed


class ItemLengths:
    """Lengths along the belt, in camera pixels, of the line's last single items."""

    def __init__(self, kept: list[int] | None = None) -> None:
        self._singles: deque[int] = deque((int(v) for v in kept or []), maxlen=KEPT)
        self._too_long_run: deque[int] = deque(maxlen=CHANGEOVER_AFTER)  # too-long regions since the last single
        self.changeovers = 0  # times the line's product was taken to have changed
        self.version = 0  # counts changes, so whoever keeps them writes only when something is new

    @property
    def usual(self) -> float | None:
        """The median of the last single items, once `LEARN_FROM` have been measured."""
        return statistics.median(self._singles) if len(self._singles) >= LEARN_FROM else None

    @property
    def longest(self) -> int | None:
        """The longest of the last `KEPT` single items, once that many have been measured (else None)."""
        return max(self._singles) if len(self._singles) == KEPT else None

    @property
    def singles(self) -> list[int]:
        return list(self._singles)

    def single(self, length: int) -> None:
        """A single item passed: one more measure of the line's items, and the end of any too-long run."""
        self._singles.append(int(length))
        self._too_long_run.clear()
        self.version += 1

    def too_long(self, length: int) -> None:
        """A region too long for one of the line's items passed (rejected, or divided into touching items). The
        `CHANGEOVER_AFTER`-th in a row without a single item between is the line's new product: its length is
        learned from the run, so the next items of it are single items again."""
        self._too_long_run.append(int(length))
        if len(self._too_long_run) < CHANGEOVER_AFTER or len(self._singles) < LEARN_FROM:
            return
        before = self.usual
        self._singles.clear()
        self._singles.extend(self._too_long_run)
        self._too_long_run.clear()
        self.changeovers += 1
        self.version += 1
        log.warning(
            "presence: %d items in a row were longer than this line's items (about %.0f px, now %.0f px): "
            "taken for a new product, its length learned (set presence.max_item_length if the line's items "
            "are known)",
            CHANGEOVER_AFTER,
            before,
            self.usual,
        )

    def forget(self) -> None:
        """Another view of the belt (a new camera size, another travel axis): learn the items again."""
        self._singles.clear()
        self._too_long_run.clear()
        self.version += 1
