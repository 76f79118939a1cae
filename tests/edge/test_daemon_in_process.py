"""The daemon in-process, with the real camera on a clip and a link that records what would go to MQTT: who
owns the daemon's state, and what commands and reloads do to the decisions, without a subprocess or a broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge.command_router import CommandHandler
from edge.commands import CommandError, Trigger, parse_command
from edge.config import load_settings
from edge.daemon import Daemon
from tests.edge.daemon_helpers import static_clip, wait_until, write_config

NO_BROKER = SimpleNamespace(host="127.0.0.1", port=1)  # the link below stands in for it


class RecordingLink:
    """What the daemon sends, as it would reach a broker, and a way in for commands and triggers."""

    queue_depth = dropped = late = reconnects = 0
    last_error = None

    def __init__(self) -> None:
        self.decisions: list[dict] = []
        self.statuses: list[tuple[str, dict]] = []  # (the thread that published it, the status)
        self._on_command: CommandHandler | None = None
        self._on_trigger: Callable[[Trigger], None] | None = None

    def start(self, on_command: CommandHandler, on_trigger: Callable[[Trigger], None]) -> None:
        self._on_command, self._on_trigger = on_command, on_trigger

    def set_status(self, payload: dict) -> None:
        self.statuses.append((threading.current_thread().name, dict(payload)))

    def publish_decision(self, decision: dict, ttl_s: float, late: dict) -> bool:
        self.decisions.append(decision)
        return True

    def publish_stats(self, stats: dict) -> None:
        pass

    def close(self, flush_timeout: float) -> int:
        return 0

    def command(self, payload: bytes) -> dict[str, Any]:
        """As the command router does it, on a thread of its own; a slow command's reply is waited for."""
        assert self._on_command is not None
        result = self._on_command(parse_command(payload))
        return result.result(timeout=30) if isinstance(result, Future) else result


@pytest.fixture
def running(tmp_path: Path, color_bundle: Path) -> Iterator[Callable[..., tuple[Daemon, RecordingLink]]]:
    """Start a daemon on a looping blue clip in continuous mode, on a thread named "frame-loop"."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(**sections: dict) -> tuple[Daemon, RecordingLink]:
        clip = static_clip(tmp_path / "blue.avi", (30, 40, 220))
        tables = {"camera": {"realtime": True, "loop": True}, "trigger": {"mode": "continuous", "min_interval_s": 0.05}}
        for name, values in sections.items():
            tables.setdefault(name, {}).update(values)
        settings = load_settings(write_config(tmp_path, NO_BROKER, color_bundle, clip, **tables))
        link = RecordingLink()
        daemon = Daemon(settings, link=link)
        thread = threading.Thread(target=daemon.run, name="frame-loop", daemon=True)
        thread.start()
        started.append((daemon, thread))
        return daemon, link

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(30)


def test_commands_are_carried_out_by_the_frame_loop_which_alone_publishes_status(running):
    daemon, link = running()
    wait_until(lambda: len(link.decisions) >= 3)
    replies = []
    senders = [
        threading.Thread(target=lambda v=v: replies.append(link.command(b'{"command": "set_threshold", "value": %.2f}'
                                                                        % v)))
        for v in (0.91, 0.92, 0.93, 0.94)
    ]  # fmt: skip
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(30)
    assert sorted(reply["threshold"] for reply in replies) == [0.91, 0.92, 0.93, 0.94]
    assert link.statuses[-1][1]["threshold"] == daemon.thresholds.default  # the status says what is in force
    assert link.command(b'{"command": "pause"}')["paused"] is True
    seen = len(link.decisions)
    time.sleep(0.5)
    assert len(link.decisions) <= seen + 1  # an item already being decided may still go out
    assert link.command(b'{"command": "resume"}')["paused"] is False
    wait_until(lambda: len(link.decisions) >= seen + 3)
    assert {thread for thread, _status in link.statuses} == {"frame-loop"}
    assert link.statuses[-1][1]["paused"] is False


def test_a_reload_is_prepared_beside_the_loop_and_swapped_in_between_items(running, color_bundle, tmp_path):
    daemon, link = running()
    wait_until(lambda: len(link.decisions) >= 3)
    reply = link.command(f'{{"command": "reload", "bundle": "{color_bundle}"}}'.encode())
    assert reply["model"] == daemon.classifier.bundle.metadata.model_id
    count = len(link.decisions)
    wait_until(lambda: len(link.decisions) >= count + 3)
    assert {thread for thread, _status in link.statuses} == {"frame-loop"}
    assert [d["seq"] for d in link.decisions] == list(range(1, len(link.decisions) + 1))  # no gap at the swap
    assert daemon.rollout.status()["result"] == "ok"
    with pytest.raises(CommandError, match="reload refused, still running"):
        link.command(f'{{"command": "reload", "bundle": "{tmp_path / "nowhere"}"}}'.encode())


def test_a_stopped_daemon_refuses_commands_instead_of_leaving_them_unanswered(running):
    daemon, link = running()
    wait_until(lambda: len(link.decisions) >= 1)
    daemon.stop()
    wait_until(lambda: daemon.inbox.closed)
    with pytest.raises(CommandError, match="pause not carried out: the daemon is stopping"):
        link.command(b'{"command": "pause"}')
