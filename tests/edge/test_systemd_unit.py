"""The shipped unit file: valid for systemd, hardened, and wired for Type=notify with a watchdog."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "sortline-edge.service"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian package systemd)"
)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/sortline/venv/bin/sortline-edge", "/bin/true"))
    return copy


@needs_systemd_analyze
def test_unit_verifies(unit_copy: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit_copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "sortline-edge.service" not in result.stderr, result.stderr  # no warnings about our unit


@needs_systemd_analyze
def test_security_exposure_is_ok(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_copy)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0


def test_unit_runs_hardened_with_notify_and_watchdog() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["Restart"] == "on-failure"
    assert settings["User"] == "sortline"
    assert settings["SupplementaryGroups"] == "video"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}.items():
        assert settings[key] == value
    assert "video4linux" in UNIT.read_text()
    assert settings["LoadCredential"].startswith("sortline:")
