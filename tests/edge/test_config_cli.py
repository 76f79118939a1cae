"""Configuration sources and the CLI's check-config / classify commands, run as real processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, Roi, load_settings

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SORTLINE_")}
    full_env.pop("CREDENTIALS_DIRECTORY", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def config_file(tmp_path: Path, color_bundle: Path) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'device_id = "line-7"\n[model]\nbundle = "{color_bundle}"\nthreshold = 0.5\n'
        "[lanes]\nmap = { red = 1, green = 2, blue = 3 }\nreject = 9\n"
        '[mqtt]\nhost = "broker.local"\nusername = "plc"\npassword = "hunter2-in-file"\n'
    )
    return path


def test_sources_precedence_env_over_credentials_over_file(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sortline_mqtt__password").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("SORTLINE_MQTT__PORT", "8883")
    monkeypatch.setenv("SORTLINE_CAMERA__ROI__X", "0.25")
    monkeypatch.setenv("SORTLINE_CAMERA__ROI__Y", "0")
    monkeypatch.setenv("SORTLINE_CAMERA__ROI__WIDTH", "0.5")
    monkeypatch.setenv("SORTLINE_CAMERA__ROI__HEIGHT", "1")
    settings = load_settings(config_file)
    assert settings.device_id == "line-7"
    assert settings.mqtt.host == "broker.local"
    assert settings.mqtt.port == 8883
    assert settings.mqtt.password.get_secret_value() == "from-credential"
    assert settings.camera.roi.to_pixels(640, 480) == (160, 0, 480, 480)


def test_invalid_values_name_key_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nport = 70000\n[trigger]\nmode = "sometimes"\n[camera]\nunknown_key = 1\n')
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    text = str(err.value)
    assert "mqtt.port: Input should be less than or equal to 65535 (got 70000)" in text
    assert "trigger.mode:" in text and "'sometimes'" in text
    assert "camera.unknown_key: Extra inputs are not permitted" in text


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\nhost = 1")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.toml")


def test_roi_validation() -> None:
    with pytest.raises(ValueError, match="inside the frame"):
        Roi(x=0.5, y=0, width=0.8, height=1)
    assert Roi(x=10, y=20, width=100, height=50, unit="px").to_pixels(640, 480) == (10, 20, 110, 70)
    with pytest.raises(ConfigError, match="no usable area"):
        Roi(x=700, y=0, width=100, height=50, unit="px").to_pixels(640, 480)


def test_check_config_prints_effective_config_with_secrets_masked(config_file: Path) -> None:
    result = run_cli("--config", str(config_file), "check-config", env={"SORTLINE_MQTT__KEEPALIVE_S": "45"})
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["mqtt"]["keepalive_s"] == 45
    assert effective["mqtt"]["password"] == "**********"
    assert "hunter2" not in result.stdout + result.stderr
    assert "ok: model color-test:1:" in result.stderr


def test_check_config_says_where_crossings_are_timed_and_where_that_comes_from(config_file: Path, tmp_path: Path):
    state = tmp_path / "state"
    result = run_cli("--config", str(config_file), "check-config", env={"STATE_DIRECTORY": str(state)})
    assert "belt: travel auto; reference line at 0.5 of the ROI along the travel (from the config);" in result.stderr
    assert "not calibrated (belt speed in px/s only) (from the config)" in result.stderr
    state.mkdir()
    (state / "belt.json").write_text('{"reference_line": 0.3, "mm_per_px": 1.25}')  # what the page keeps
    result = run_cli("--config", str(config_file), "check-config", env={"STATE_DIRECTORY": str(state)})
    assert f"at 0.3 of the ROI along the travel (from the page); 1.25 mm/px (from the page), kept in {state}" in (
        result.stderr
    )
    (state / "belt.json").write_text('{"reference_line": 7}')
    result = run_cli("--config", str(config_file), "check-config", env={"STATE_DIRECTORY": str(state)})
    assert result.returncode == 0 and "not readable" in result.stderr and "at 0.5 of the ROI" in result.stderr


def test_check_config_rejects_invalid_value_with_nonzero_exit(config_file: Path) -> None:
    result = run_cli("--config", str(config_file), "check-config", env={"SORTLINE_MODEL__THRESHOLD": "1.5"})
    assert result.returncode == 2
    assert "model.threshold: Input should be less than or equal to 1" in result.stderr


def test_check_config_rejects_label_without_lane(config_file: Path) -> None:
    text = config_file.read_text().replace("map = { red = 1, green = 2, blue = 3 }", "map = { red = 1 }")
    config_file.write_text(text)
    result = run_cli("--config", str(config_file), "check-config")
    assert result.returncode == 2
    assert "no lane for model label(s) ['green', 'blue']" in result.stderr


def test_check_config_reports_broken_bundle(config_file: Path, color_bundle: Path) -> None:
    (color_bundle / "model.tflite").write_bytes(b"truncated")
    result = run_cli("--config", str(config_file), "check-config")
    assert result.returncode == 2
    assert "model.tflite: sha256" in result.stderr and "Traceback" not in result.stderr


def test_check_config_loads_the_model_as_run_does(config_file: Path, color_bundle: Path) -> None:
    """check-config is ExecStartPre and the fleet's health check: a bundle it passes must run."""
    meta_path = color_bundle / "bundle.json"
    meta = json.loads(meta_path.read_text())
    truncated = (color_bundle / "model.tflite").read_bytes()[:2000]
    (color_bundle / "model.tflite").write_bytes(truncated)
    meta_path.write_text(json.dumps({**meta, "sha256": hashlib.sha256(truncated).hexdigest()}))  # hash matches
    result = run_cli("--config", str(config_file), "check-config")
    assert result.returncode == 2 and "the TFLite runtime cannot load this model" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_labels_that_do_not_fit_the_outputs(config_file: Path, color_bundle: Path) -> None:
    meta_path = color_bundle / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "labels": ["red", "green"]}))
    result = run_cli("--config", str(config_file), "check-config")
    assert result.returncode == 2 and "model outputs have sizes [3], expected 2 scores" in result.stderr


def test_classify_command(tmp_path: Path, config_file: Path) -> None:
    blue = tmp_path / "blue.png"
    cv2.imwrite(str(blue), np.full((50, 40, 3), (255, 0, 0), np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    result = run_cli("--config", str(config_file), "classify", str(blue), str(broken))
    assert result.returncode == 1  # one file could not be read
    line = json.loads(result.stdout.strip())
    assert line["label"] == "blue" and line["confidence"] > 0.9
    assert f"sortline-edge: {broken}: not a decodable image" in result.stderr
    assert result.stderr.count("broken.jpg") == 1  # named once, not twice
    assert "XNNPACK" not in result.stderr  # the runtime's load banner goes to the debug log


def test_classify_takes_folders_and_options_after_the_sub_command(tmp_path: Path, config_file: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "green").mkdir(parents=True)
    cv2.imwrite(str(photos / "blue.png"), np.full((50, 40, 3), (255, 0, 0), np.uint8))
    cv2.imwrite(str(photos / "green" / "g.JPG"), np.full((50, 40, 3), (0, 255, 0), np.uint8))
    (photos / "notes.txt").write_text("not a photo")  # not an image suffix: not a candidate
    result = run_cli("classify", str(photos), "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(line["file"]).name, line["label"]) for line in lines] == [("blue.png", "blue"), ("g.JPG", "green")]

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("classify", str(empty), str(tmp_path / "absent.jpg"), "--config", str(config_file))
    assert result.returncode == 1
    assert f"{empty}: no images in this folder" in result.stderr
    assert f"{tmp_path / 'absent.jpg'}: no such file" in result.stderr


def test_classify_with_a_file_for_bundle_names_the_directory(tmp_path: Path, color_bundle: Path) -> None:
    result = run_cli("classify", "--bundle", str(color_bundle / "model.tflite"), str(tmp_path))
    assert result.returncode == 2
    assert f"{color_bundle / 'model.tflite'}: is a file" in result.stderr
    assert f"({color_bundle} is one)" in result.stderr


def test_camera_source_accepts_a_device_index(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("[camera]\nsource = 0\n")
    assert load_settings(path).camera.source == "0"
    path.write_text("[camera]\nsource = -1\n")
    with pytest.raises(ConfigError, match=r"camera\.source"):
        load_settings(path)


def test_each_bad_key_names_the_source_that_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("[camera]\nfps = -1\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sortline_mqtt__keepalive_s").write_text("1")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("SORTLINE_MQTT__PORT", "99999")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert f"camera.fps: Input should be greater than 0 (got -1) [from {path}]" in text
    from_environment = "(got '99999') [from environment SORTLINE_MQTT__PORT]"
    assert f"mqtt.port: Input should be less than or equal to 65535 {from_environment}" in text
    from_credential = "(got '1') [from credential sortline_mqtt__keepalive_s]"
    assert f"mqtt.keepalive_s: Input should be greater than or equal to 5 {from_credential}" in text
