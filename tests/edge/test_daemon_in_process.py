"""The daemon in-process, with the real camera on a clip and a link that records what would go to MQTT: who
owns the daemon's state, and what commands and reloads do to the decisions, without a subprocess or a broker.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from edge.bundle import sha256_file
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


def _retrained(source: Path, target: Path, version: str, labels: list[str], held_back: dict[str, Path]) -> Path:
    """A copy of `source` as a retrained model that held back the line's crops `held_back` (label -> file);
    `labels` in another order make the same network answer other labels (a model that got worse)."""
    target.mkdir(parents=True)
    shutil.copyfile(source / "model.tflite", target / "model.tflite")
    meta = json.loads((source / "bundle.json").read_text())
    meta |= {"version": version, "labels": labels}
    meta["line_check"] = {
        "line": "line-1",
        "held_back": [{"sha256": sha256_file(path), "label": label} for label, path in held_back.items()],
    }
    (target / "bundle.json").write_text(json.dumps(meta))
    return target


def test_a_reload_worse_on_the_lines_own_held_back_crops_is_refused_unless_forced(running, color_bundle, tmp_path):
    labelled = tmp_path / "labelled"  # as the page leaves them: labelled/<label>/<crop>.jpg
    crops = {}
    for label, bgr in {"red": (20, 20, 220), "green": (40, 200, 20), "blue": (220, 40, 30)}.items():
        crops[label] = labelled / label / f"20261205T010000_{label}_40.jpg"
        crops[label].parent.mkdir(parents=True)
        cv2.imwrite(str(crops[label]), np.full((40, 40, 3), bgr, np.uint8))
    worse = _retrained(color_bundle, tmp_path / "v2", "2", ["green", "red", "blue"], crops)  # red <-> green
    same = _retrained(color_bundle, tmp_path / "v3", "3", ["red", "green", "blue"], crops)
    daemon, link = running(crops={"directory": str(tmp_path / "crops"), "labelled_directory": str(labelled)})
    wait_until(lambda: len(link.decisions) >= 2)

    with pytest.raises(CommandError) as refused:
        link.command(f'{{"command": "reload", "bundle": "{worse}"}}'.encode())
    assert "worse than the live model on the line's 3 held-back crops: 1 right, 0 rejected, 2 wrong lane" in str(
        refused.value
    )
    assert "(live: 3 right, 0 rejected, 0 wrong lane)" in str(refused.value) and '"force": true' in str(refused.value)
    assert daemon.rollout.status()["stage"] == "line_check" and daemon.classifier.bundle.metadata.version == "1"

    reply = link.command(f'{{"command": "reload", "bundle": "{same}"}}'.encode())  # as good: it goes live
    assert reply["line_check"] == {
        "crops": 3, "live": {"right": 3, "reject": 0, "wrong": 0}, "candidate": {"right": 3, "reject": 0, "wrong": 0},
        "worse": False, "forced": False,
    }  # fmt: skip
    wait_until(lambda: daemon.classifier.bundle.metadata.version == "3")

    forced = link.command(f'{{"command": "reload", "bundle": "{worse}", "force": true}}'.encode())
    assert forced["line_check"]["worse"] is True and forced["line_check"]["forced"] is True
    wait_until(lambda: daemon.classifier.bundle.metadata.version == "2")
    assert daemon.rollout.status()["line_check"]["forced"] is True

    for path in crops.values():  # labelled on another device: only what is here is judged
        path.unlink()
    elsewhere = link.command(f'{{"command": "reload", "bundle": "{same}"}}'.encode())["line_check"]
    assert elsewhere["crops"] == 0 and "none of the 3 held-back line crops" in elsewhere["note"]


def test_a_reload_the_trainer_measured_worse_than_this_live_model_elsewhere_is_refused(running, color_bundle, tmp_path):
    daemon, link = running()
    wait_until(lambda: len(link.decisions) >= 2)
    live = daemon.classifier.bundle.metadata.model_id

    def judged_against(version: str, compared_with: str) -> Path:
        bundle = _retrained(color_bundle, tmp_path / f"v{version}", version, ["red", "green", "blue"], {})
        meta = json.loads((bundle / "bundle.json").read_text())
        meta["line_check"] |= {
            "compared_with": compared_with,
            "worse_elsewhere": {"test": "in-domain test: right 77.5 -> 68.8 %, wrong 1.7 -> 1.3 %"},
        }
        (bundle / "bundle.json").write_text(json.dumps(meta))
        return bundle

    with pytest.raises(CommandError, match=r"as the trainer measured it: in-domain test: right 77\.5 -> 68\.8 %"):
        link.command(f'{{"command": "reload", "bundle": "{judged_against("2", live)}"}}'.encode())
    assert daemon.rollout.status()["stage"] == "line_check"
    other = link.command(
        f'{{"command": "reload", "bundle": "{judged_against("3", "color-test:0:000000000000")}"}}'.encode()
    )  # judged against another model: says nothing about this one
    assert "worse_elsewhere" not in other["line_check"]
    wait_until(lambda: daemon.classifier.bundle.metadata.version == "3")
