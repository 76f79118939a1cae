"""What the daemon's end-to-end tests share: a config written as a user would, the real daemon as a
subprocess, clips and garment photos the colour model knows, and the daemon's MQTT and /metrics seen from
outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from edge.config import MqttSettings

ROOT = Path(__file__).resolve().parents[2]
LANES = {"red": 1, "green": 2, "blue": 3}
DEFAULTS = MqttSettings()  # the product's reconnect backoff, which the helper below shortens for speed

# Runs the real CLI and reports, at exit, whether TensorFlow was ever imported into the process.
DAEMON = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('TENSORFLOW_IMPORTED=' + str(any(m == 'tensorflow' or m.startswith('tensorflow.')"
    " for m in sys.modules)), file=sys.stderr))\n"
    "from edge.cli import main\n"
    "sys.exit(main())\n"
)


def garment(path: Path, rgb: tuple[int, int, int]) -> Path:
    """A trouser-shaped item of one colour on a white studio background."""
    image = Image.new("RGB", (240, 300), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle([40, 10, 200, 290], fill=rgb)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def garments(folder: Path) -> dict[str, Path]:
    """A red, a green and a blue garment photo, under folder/<label>/item.png: the colour model's labels."""
    colours = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}
    return {label: garment(folder / label / "item.png", rgb) for label, rgb in colours.items()}


def write_config(tmp_path: Path, broker, bundle: Path, source: Path, **sections: dict) -> Path:
    """A TOML config for the daemon; `sections` override/extend the defaults per table."""
    tables: dict[str, dict] = {
        "camera": {"source": str(source), "realtime": False},
        "model": {"bundle": str(bundle), "threads": 1, "threshold": 0.5},
        "trigger": {"mode": "presence"},
        "lanes": {"map": LANES, "reject": 0},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "stats_interval_s": 0.5,
            "flush_timeout_s": 5,
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.5,
        },
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = ['device_id = "line-1"', 'log_level = "INFO"']
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items() if not isinstance(value, dict)]
        for key, value in values.items():
            if isinstance(value, dict):
                lines.append(f"{key} = {{ {', '.join(f'{k} = {_toml(v)}' for k, v in value.items())} }}")
    path = tmp_path / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


STARTED: list[subprocess.Popen] = []  # killed after each test by tests/edge/conftest.py, if still running


def start_daemon(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SORTLINE_", "NOTIFY_", "WATCHDOG_"))}
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, "--config", str(config), "run"],
        cwd=ROOT,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(daemon)
    return daemon


def finish(daemon: subprocess.Popen, timeout: float = 60) -> str:
    """Wait for the daemon to exit on its own; return its stderr."""
    try:
        _, stderr = daemon.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        _, stderr = daemon.communicate()
        pytest.fail(f"daemon did not exit:\n{stderr[-3000:]}")
    assert daemon.returncode == 0, stderr[-3000:]
    assert "TENSORFLOW_IMPORTED=False" in stderr
    return stderr


def terminate(daemon: subprocess.Popen) -> str:
    daemon.send_signal(signal.SIGTERM)
    return finish(daemon, timeout=30)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """The predicate's first truthy result, polled every 10 ms; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(0.01)
    return result


def scrape(port: int) -> dict[str, float]:
    """The daemon's /metrics: ``name{labels}`` -> value for every sample line."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def queue_depth(port: int) -> float:
    """Decisions waiting in the daemon, from /metrics; 0 while the endpoint is not up yet."""
    try:
        return scrape(port)["sortline_queue_depth"]
    except OSError:
        return 0


def static_clip(path: Path, rgb: tuple[int, int, int], frames: int = 30, fps: int = 15) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for _ in range(frames):
        writer.write(np.full((120, 160, 3), rgb[::-1], np.uint8))
    writer.release()
    return path


def command(sub, payload: dict | bytes, timeout: float = 10) -> dict:
    before = len(sub.received("sortline/line-1/command/reply"))
    data = payload if isinstance(payload, bytes) else json.dumps(payload)
    sub.client.publish("sortline/line-1/command", data, qos=1)
    sub.wait_for(lambda got: len([m for m in got if m.topic.endswith("/command/reply")]) > before, timeout=timeout)
    return sub.payloads("sortline/line-1/command/reply")[-1]
