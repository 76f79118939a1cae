"""The Ansible playbooks: syntax, a --check run and a real run of the role against a temporary root
on this machine (sortline_manage_system=false: no apt, user or systemd), with per-host variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "deploy" / "ansible"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

pytestmark = pytest.mark.skipif(
    not PLAYBOOK.exists() and shutil.which("ansible-playbook") is None,
    reason="ansible-playbook is not installed (pip install ansible-core, part of the dev extra)",
)


def playbook(*args: str, scratch: Path | None = None) -> subprocess.CompletedProcess:
    command = str(PLAYBOOK) if PLAYBOOK.exists() else "ansible-playbook"
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    if scratch is not None:
        env["ANSIBLE_LOCAL_TEMP"] = str(scratch / "ansible-local")
        env["ANSIBLE_REMOTE_TEMP"] = str(scratch / "ansible-remote")
    return subprocess.run([command, *args], cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=300)


def local_inventory(tmp_path: Path, prefix: Path, bundle: Path, **host_vars: object) -> Path:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "sortline_root": str(prefix),
        "sortline_manage_system": False,
        "sortline_bundle_src": str(bundle),
        "sortline_device_id": "line9",
        "sortline_camera_source": "rtsp://10.0.0.9/stream1",
        "sortline_camera_roi": {"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.6, "unit": "fraction"},
        "sortline_lanes": {"red": 4, "green": 5, "blue": 6},
        "sortline_reject_lane": 9,
        "sortline_mqtt_host": "10.0.0.5",
        "sortline_mqtt_password": "vaulted-secret",
        **host_vars,
    }
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"sortline_edge": {"hosts": {"line9-pi": host}}}}}))
    return inventory


def test_playbooks_pass_the_syntax_check():
    result = playbook("--syntax-check", "site.yml", "rollout-model.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_changes_nothing(tmp_path, color_bundle):
    prefix = tmp_path / "root"
    inventory = local_inventory(tmp_path, prefix, color_bundle)
    result = playbook("-i", str(inventory), "--check", "site.yml", scratch=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "failed=0" in result.stdout
    assert not prefix.exists() or not any(p.is_file() for p in prefix.rglob("*"))


def test_role_installs_into_a_temporary_root_and_rolls_out_a_model(tmp_path, color_bundle, sortline_wheel):
    prefix = tmp_path / "root"
    wheel = {"sortline_wheel": str(sortline_wheel), "sortline_pip_extra_args": "--no-deps --no-index"}
    page = {"sortline_ui_enabled": True, "sortline_ui_host": "0.0.0.0", "sortline_ui_password": "vaulted-ui-secret"}
    inventory = local_inventory(tmp_path, prefix, color_bundle, **wheel, **page)
    result = playbook("-i", str(inventory), "site.yml", scratch=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "vaulted-secret" not in result.stdout + result.stderr
    assert "vaulted-ui-secret" not in result.stdout + result.stderr

    config = prefix / "etc/sortline/edge.toml"
    models = prefix / "var/lib/sortline/models"
    credential = prefix / "etc/sortline/credentials/mqtt__password"
    assert (prefix / "opt/sortline/venv/bin/sortline-edge").is_file()
    assert credential.read_text() == "vaulted-secret" and (credential.stat().st_mode & 0o777) == 0o600
    ui_credential = credential.with_name("ui__password")
    assert ui_credential.read_text() == "vaulted-ui-secret" and (ui_credential.stat().st_mode & 0o777) == 0o600
    assert next((prefix / "opt/sortline/venv").glob("lib/python3.*/site-packages/edge/ui/static/app.js")).is_file()
    meta = json.loads((color_bundle / "bundle.json").read_text())
    assert os.readlink(models / "current") == f"color-test-1-{meta['sha256'][:12]}"
    unit = (prefix / "etc/systemd/system/sortline-edge.service").read_text()
    assert f"--config {config} run" in unit and f"LoadCredential=sortline:{prefix}/etc/sortline/credentials" in unit

    # The rendered host config is valid and says what the inventory says (credentials as systemd passes them).
    passed = tmp_path / "credentials"
    passed.mkdir()
    (passed / "sortline_ui__password").write_text(ui_credential.read_text())
    check = subprocess.run(
        [sys.executable, "-m", "edge", "--config", str(config), "check-config"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SORTLINE_")},
            "CREDENTIALS_DIRECTORY": str(passed),
        },
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    effective = json.loads(check.stdout)
    assert effective["device_id"] == "line9" and effective["camera"]["source"] == "rtsp://10.0.0.9/stream1"
    assert effective["camera"]["roi"] == {"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.6, "unit": "fraction"}
    assert effective["lanes"] == {"map": {"red": 4, "green": 5, "blue": 6}, "reject": 9}
    assert effective["rollout"]["watch"] is True and effective["model"]["bundle"] == str(models / "current")
    assert effective["ui"] == {"enabled": True, "host": "0.0.0.0", "port": 8080, "password": "**********",
                              "allowed_hosts": []}  # fmt: skip
    assert effective["state_directory"] == str(prefix / "var/lib/sortline")  # where the page's ROI is kept

    second = tmp_path / "v2"
    shutil.copytree(color_bundle, second)
    meta["version"] = "2"
    (second / "bundle.json").write_text(json.dumps(meta))
    roll_out = ("-i", str(inventory), "rollout-model.yml", "-e", f"sortline_bundle_src={second}")
    rollout = playbook(*roll_out, scratch=tmp_path)
    assert rollout.returncode == 0, rollout.stdout[-4000:] + rollout.stderr[-2000:]
    assert os.readlink(models / "current") == f"color-test-2-{meta['sha256'][:12]}"
    assert (models / f"color-test-1-{meta['sha256'][:12]}" / "bundle.json").is_file()  # the old one stays

    (second / "model.tflite").write_bytes(b"corrupt")
    meta["version"] = "3"
    (second / "bundle.json").write_text(json.dumps(meta))
    broken = playbook(*roll_out, scratch=tmp_path)
    assert broken.returncode != 0 and "corrupt copy" in broken.stdout
    assert os.readlink(models / "current") == f"color-test-2-{meta['sha256'][:12]}"  # not switched
