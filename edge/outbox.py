"""Decisions on their way to the broker, in the order they were made: the MQTT link's delivery contract
as plain data, with no paho and no threads, so it is tested without a broker.

A decision waits in the backlog until the sender hands it to paho (at most ``window`` unacknowledged at a
time), then in flight until its PUBACK. The whole outbox is bounded (``size``): a decision that finds it
full is refused and counted, never queued without end. Handed over after its deadline, a decision goes out
as its late reject (`edge.decision.as_late`): the item has gone by. Not thread-safe: `edge.mqtt.MqttLink`
keeps it under its lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Outgoing:
    """One decision, both ways it may leave."""

    order: int
    payload: bytes  # the decision
    late: bytes  # what goes instead once past the deadline
    deadline: float  # wall clock
    ttl_s: float

    def now(self, at: float) -> tuple[bytes, int, bool]:
        """(what to send at wall time ``at``, its MQTT 5 Message Expiry in whole seconds, whether it is late).
        The expiry is what is left before the deadline, at least 1 s; a late reject is news for the ttl."""
        left = self.deadline - at
        if left > 0:
            return self.payload, max(1, math.ceil(left)), False
        return self.late, max(1, math.ceil(self.ttl_s)), True


class Outbox:
    def __init__(self, size: int) -> None:
        self.size = size
        self.dropped = 0  # refused: the outbox was full, or the broker refused it (MQTT 5 PUBACK)
        self.late = 0  # handed over after the deadline: sent as late rejects
        self._backlog: deque[Outgoing] = deque()
        self._in_flight: dict[int, Outgoing] = {}  # paho's message id -> handed over, not acknowledged
        self._handing: Outgoing | None = None  # taken, being handed to paho: neither waiting nor in flight yet
        self._made = 0

    def __len__(self) -> int:
        """Decisions not yet acknowledged by the broker: waiting, being handed over or in flight."""
        return len(self._backlog) + len(self._in_flight) + (self._handing is not None)

    def put(self, payload: bytes, late: bytes, deadline: float, ttl_s: float) -> bool:
        """Queue a decision; False (and counted in ``dropped``) when the outbox is full."""
        if len(self) >= self.size:
            self.dropped += 1
            return False
        self._made += 1
        self._backlog.append(Outgoing(self._made, payload, late, deadline, ttl_s))
        return True

    def can_send(self, window: int) -> bool:
        return bool(self._backlog) and len(self._in_flight) < window

    def take(self, at: float | None = None) -> tuple[Outgoing, bytes, int]:
        """The next decision to hand over: (it, what to send, expiry seconds). Call `sent` once paho took it."""
        item = self._handing = self._backlog.popleft()
        payload, expiry, late = item.now(time.time() if at is None else at)
        self.late += late
        return item, payload, expiry

    def sent(self, message_id: int, item: Outgoing) -> None:
        self._in_flight[message_id] = item
        self._handing = None

    def acknowledged(self, message_id: int, refused: bool) -> Outgoing | None:
        """The broker's PUBACK for ``message_id``; returns the decision it refused, if it did (counted)."""
        item = self._in_flight.pop(message_id, None)
        if item is not None and refused:
            self.dropped += 1
            return item
        return None

    def send_again(self) -> None:
        """A new connection without the old session: what was in flight goes again, first and in order."""
        self._backlog.extendleft(sorted(self._in_flight.values(), key=lambda item: item.order, reverse=True))
        self._in_flight.clear()
