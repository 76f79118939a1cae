"""The daemon's two ends, as what it needs of them: where frames come from (`edge.camera.Camera`) and where
decisions, status and stats go and commands come from (`edge.mqtt.MqttLink`). The daemon builds the real ones
unless it is handed others, so its voting, commands and swaps are tested in-process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from edge.camera import Frame
from edge.command_router import CommandHandler
from edge.commands import Trigger


class FrameSource(Protocol):
    @property
    def state(self) -> str:
        """ "streaming", "reconnecting", "ended", ..."""

    @property
    def last_error(self) -> str | None: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def dropped_frames(self) -> int: ...

    @property
    def ended(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not taken yet, or None after ``timeout`` s."""


class DecisionLink(Protocol):
    @property
    def queue_depth(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def late(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def last_error(self) -> str | None: ...

    def start(self, on_command: CommandHandler, on_trigger: Callable[[Trigger], None]) -> None: ...

    def set_status(self, payload: dict) -> None: ...

    def publish_decision(self, decision: dict, ttl_s: float, late: dict) -> bool: ...

    def publish_stats(self, stats: dict) -> None: ...

    def close(self, flush_timeout: float) -> int:
        """Deliver what waits (within ``flush_timeout``); the number of decisions left undelivered."""
