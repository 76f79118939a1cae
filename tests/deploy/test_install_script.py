"""deploy/install.sh and uninstall.sh, run for real into a temporary root (--prefix).

The venv step installs a wheel of this checkout with --no-deps, so the test needs no network once
the wheel is built; the config check runs with the project's own interpreter, which has the deps.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"
UNINSTALL = ROOT / "deploy" / "uninstall.sh"


def run_install(prefix: Path, wheel: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SORTLINE_PIP_ARGS": "--no-deps --no-index"}
    result = subprocess.run(
        ["bash", str(INSTALL), "--prefix", str(prefix), "--source", str(wheel), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_install_into_a_temporary_root(tmp_path, sortline_wheel, color_bundle):
    prefix = tmp_path / "root"
    secret = tmp_path / "password"
    secret.write_text("s3cret-broker-pw\n")
    result = run_install(
        prefix, sortline_wheel, "--bundle", str(color_bundle), "--credential", f"mqtt__password={secret}", "--with-ui"
    )

    venv = prefix / "opt/sortline/venv"
    assert (venv / "bin/sortline-edge").is_file() and os.access(venv / "bin/sortline-edge", os.X_OK)
    assert "installing sortline[edge,ui]" in result.stdout
    static = next(venv.glob("lib/python3.*/site-packages/edge/ui/static"))  # the page ships in the wheel
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in static.iterdir()}
    assert (static / "vendor" / "uPlot.iife.min.js").stat().st_size > 40_000
    assert "s3cret" not in result.stdout + result.stderr

    credentials = prefix / "etc/sortline/credentials"
    assert mode(credentials) == 0o700
    assert (credentials / "mqtt__password").read_text() == "s3cret-broker-pw"
    assert mode(credentials / "mqtt__password") == 0o600

    config = prefix / "etc/sortline/edge.toml"
    assert mode(config) == 0o640
    assert f'bundle = "{prefix}/var/lib/sortline/models/current"' in config.read_text()
    assert f'state_directory = "{prefix}/var/lib/sortline"' in config.read_text()

    models = prefix / "var/lib/sortline/models"
    meta = json.loads((color_bundle / "bundle.json").read_text())
    live = f"color-test-1-{meta['sha256'][:12]}"
    assert os.readlink(models / "current") == live  # relative: the tree can move
    assert (models / live / "model.tflite").read_bytes() == (color_bundle / "model.tflite").read_bytes()

    unit = (prefix / "etc/systemd/system/sortline-edge.service").read_text()
    assert f"ExecStart={venv}/bin/sortline-edge --config {config} run" in unit
    assert f"LoadCredential=sortline:{credentials}" in unit
    assert "systemctl status sortline-edge" in result.stdout and "journalctl -u sortline-edge" in result.stdout

    # The template, as installed, is a valid configuration for the installed model (lanes for its labels).
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SORTLINE_")},
        "SORTLINE_LANES__MAP": json.dumps({"red": 1, "green": 2, "blue": 3}),
        "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
    }
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "sortline_mqtt__password").write_text("s3cret-broker-pw")
    check = subprocess.run(
        [sys.executable, "-m", "edge", "--config", str(config), "check-config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    effective = json.loads(check.stdout)
    assert effective["mqtt"]["password"] == "**********" and "s3cret" not in check.stdout + check.stderr
    assert "ok: model color-test:1:" in check.stderr


def test_rerun_upgrades_but_keeps_config_and_secrets(tmp_path, sortline_wheel, color_bundle):
    prefix = tmp_path / "root"
    run_install(prefix, sortline_wheel, "--bundle", str(color_bundle))
    config = prefix / "etc/sortline/edge.toml"
    config.write_text(config.read_text().replace('device_id = "line1"', 'device_id = "line7"'))
    (prefix / "etc/sortline/credentials/mqtt__password").write_text("kept")

    second = color_bundle.parent / "v2"
    second.mkdir()
    for name in ("model.tflite", "bundle.json"):
        (second / name).write_bytes((color_bundle / name).read_bytes())
    meta = json.loads((second / "bundle.json").read_text())
    meta["version"] = "2"
    (second / "bundle.json").write_text(json.dumps(meta))
    result = run_install(prefix, sortline_wheel, "--bundle", str(second))

    assert 'device_id = "line7"' in config.read_text()
    assert "keeping existing" in result.stdout
    assert (prefix / "etc/sortline/credentials/mqtt__password").read_text() == "kept"
    models = prefix / "var/lib/sortline/models"
    assert os.readlink(models / "current").startswith("color-test-2-")
    assert sorted(p.name.split("-")[2] for p in models.iterdir() if p.name != "current") == ["1", "2"]  # old kept
    assert not list(models.glob(".*"))  # no staging leftovers


def test_install_refuses_a_corrupt_bundle_and_a_bad_secret_name(tmp_path, sortline_wheel, color_bundle):
    (color_bundle / "model.tflite").write_bytes(b"\x00" * 64)
    base = ["bash", str(INSTALL), "--prefix", str(tmp_path / "root"), "--source", str(sortline_wheel)]
    env = {**os.environ, "SORTLINE_PIP_ARGS": "--no-deps --no-index"}
    corrupt = subprocess.run([*base, "--bundle", str(color_bundle)], capture_output=True, text=True, env=env)
    assert corrupt.returncode != 0 and "sha256 does not match" in corrupt.stderr
    assert not (tmp_path / "root/var/lib/sortline/models/current").exists()

    secret = tmp_path / "pw"
    secret.write_text("x")
    bad = subprocess.run([*base, "--credential", f"password={secret}"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "expected <section>__<key>" in bad.stderr


def test_uninstall_keeps_data_unless_purged(tmp_path, sortline_wheel, color_bundle):
    prefix = tmp_path / "root"
    run_install(prefix, sortline_wheel, "--bundle", str(color_bundle))
    subprocess.run(["bash", str(UNINSTALL), "--prefix", str(prefix)], check=True, capture_output=True)
    assert not (prefix / "opt/sortline").exists()
    assert not (prefix / "etc/systemd/system/sortline-edge.service").exists()
    assert (prefix / "etc/sortline/edge.toml").is_file()
    assert (prefix / "var/lib/sortline/models/current/bundle.json").is_file()

    subprocess.run(["bash", str(UNINSTALL), "--prefix", str(prefix), "--purge"], check=True, capture_output=True)
    assert not (prefix / "etc/sortline").exists() and not (prefix / "var/lib/sortline").exists()


def test_install_without_root_and_prefix_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: the live install would proceed")
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 1 and "run as root" in result.stderr
