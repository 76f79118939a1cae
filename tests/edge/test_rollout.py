"""Model rollout without downtime: self-test images in the bundle, safe downloads, and the running
daemon swapping a good bundle between items while refusing corrupt ones and ones that fail their
self-test (the old model keeps sorting, the status topic says what happened).

Bundles are the int8 colour classifier (tests/model_factory.py): a red image must come out "red",
so a bundle whose reference images are labelled wrongly is a bundle that fails its self-test.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle import BundleError, add_self_test_images, load_bundle
from edge.rollout import BundleWatch, RolloutError, fetch_bundle
from tests.edge.daemon_helpers import start_daemon, static_clip, terminate, write_config

COLOURS_BGR = {"red": (20, 20, 220), "green": (40, 200, 20), "blue": (220, 40, 30)}
DEVICE = "sortline/line-1"


def reference_images(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, bgr in COLOURS_BGR.items():
        paths[label] = directory / f"{label}.png"
        cv2.imwrite(str(paths[label]), np.full((48, 64, 3), bgr, np.uint8))
    return paths


def bundle_version(master: Path, target: Path, version: str, labels_as: dict[str, str] | None = None) -> Path:
    """A copy of ``master`` as another version, with one reference image per colour; ``labels_as``
    records some of them under a wrong label (a model that will fail its self-test)."""
    target.mkdir(parents=True)
    for name in ("model.tflite", "bundle.json"):
        shutil.copyfile(master / name, target / name)
    meta = json.loads((target / "bundle.json").read_text())
    meta["version"] = version
    (target / "bundle.json").write_text(json.dumps(meta))
    images = reference_images(target.parent / f"{target.name}-images")
    add_self_test_images(target, [(path, (labels_as or {}).get(label, label)) for label, path in images.items()])
    return target


def tar_gz(bundle: Path, destination: Path, replace: dict[str, bytes] | None = None) -> Path:
    """The bundle directory as <name>/... in a .tar.gz; ``replace`` swaps file contents (corruption)."""
    with tarfile.open(destination, "w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            relative = path.relative_to(bundle).as_posix()
            info = tar.gettarinfo(str(path), arcname=f"{bundle.name}/{relative}")
            if path.is_file():
                data = (replace or {}).get(relative, path.read_bytes())
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return destination


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1: (base URL, the directory it serves)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def sha_of(bundle: Path) -> str:
    return json.loads((bundle / "bundle.json").read_text())["sha256"]


# --------------------------------------------------------------------------- the bundle's self-test images


def test_self_test_images_are_recorded_hashed_and_checked_on_load(tmp_path, color_bundle):
    assert load_bundle(color_bundle).metadata.self_test == ()  # bundles without them still load
    images = reference_images(tmp_path / "ref")
    bundle = add_self_test_images(color_bundle, [(images["red"], "red"), (images["blue"], "blue")])
    assert [(image.file, image.label) for image in bundle.metadata.self_test] == [
        ("selftest/red-0.png", "red"),
        ("selftest/blue-1.png", "blue"),
    ]
    assert load_bundle(color_bundle).metadata == bundle.metadata
    assert len(add_self_test_images(color_bundle, [(images["green"], "green")]).metadata.self_test) == 3

    with pytest.raises(BundleError, match="'purple' is not one of the model's labels"):
        add_self_test_images(color_bundle, [(images["red"], "purple")])
    (color_bundle / "selftest/red-0.png").write_bytes(b"not the image that was recorded")
    with pytest.raises(BundleError, match=r"red-0\.png: sha256 does not match"):
        load_bundle(color_bundle)
    (color_bundle / "selftest/red-0.png").unlink()
    with pytest.raises(BundleError, match=r"red-0\.png: self-test image named in .* is missing"):
        load_bundle(color_bundle)
    replaced = add_self_test_images(color_bundle, [(images["green"], "green")], replace=True)
    assert [image.file for image in replaced.metadata.self_test] == ["selftest/green-0.png"]


def test_self_test_paths_must_stay_inside_the_bundle(color_bundle):
    meta = json.loads((color_bundle / "bundle.json").read_text())
    meta["self_test"] = [{"file": "../../etc/passwd", "label": "red", "sha256": "0" * 64}]
    (color_bundle / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"self_test\.0\.file: Value error, must be a relative path inside"):
        load_bundle(color_bundle)


# --------------------------------------------------------------------------- downloads


def test_fetch_bundle_downloads_verifies_and_refuses_unsafe_archives(tmp_path, color_bundle, http_server):
    base, served = http_server
    good = bundle_version(color_bundle, tmp_path / "src" / "color-v2", "2")
    tar_gz(good, served / "v2.tar.gz")
    models = tmp_path / "models"

    installed = fetch_bundle(f"{base}/v2.tar.gz", models, sha_of(good), 10_000_000, 10)
    assert installed == models / f"color-test-2-{sha_of(good)[:12]}"
    assert load_bundle(installed).metadata.version == "2" and len(load_bundle(installed).metadata.self_test) == 3
    assert fetch_bundle(f"{base}/v2.tar.gz", models, sha_of(good), 10_000_000, 10) == installed  # again: same

    with pytest.raises(RolloutError, match="is not the expected") as wrong_sha:
        fetch_bundle(f"{base}/v2.tar.gz", models, "0" * 64, 10_000_000, 10)
    assert wrong_sha.value.stage == "verify"
    with pytest.raises(RolloutError, match=r"more than rollout\.max_download_mb"):
        fetch_bundle(f"{base}/v2.tar.gz", models, sha_of(good), 1000, 10)
    with pytest.raises(RolloutError, match="404"):
        fetch_bundle(f"{base}/missing.tar.gz", models, sha_of(good), 10_000_000, 10)

    with tarfile.open(served / "evil.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(RolloutError, match="is not a plain relative file"):
        fetch_bundle(f"{base}/evil.tar.gz", models, sha_of(good), 10_000_000, 10)
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in models.iterdir()) == [installed.name]  # no leftovers from the failures


# --------------------------------------------------------------------------- the running daemon


def command(sub, payload: dict, timeout: float = 30) -> dict:
    before = len(sub.received(f"{DEVICE}/command/reply"))
    sub.client.publish(f"{DEVICE}/command", json.dumps(payload), qos=1)
    sub.wait_for(lambda got: len([m for m in got if m.topic.endswith("/command/reply")]) > before, timeout=timeout)
    return sub.payloads(f"{DEVICE}/command/reply")[-1]


def last_status(sub) -> dict:
    return sub.payloads(f"{DEVICE}/status")[-1]


def decisions_by(sub, version: str) -> list[dict]:
    return [d for d in sub.payloads(f"{DEVICE}/decision") if d["model"].startswith(f"color-test:{version}:")]


def test_reload_swaps_a_good_bundle_without_a_gap_and_refuses_bad_ones(
    tmp_path, mosquitto, subscriber, color_bundle, http_server
):
    base, served = http_server
    good = bundle_version(color_bundle, tmp_path / "src" / "color-v2", "2")
    tar_gz(good, served / "v2.tar.gz")
    corrupt = bundle_version(color_bundle, tmp_path / "src" / "color-v3", "3")
    model = bytearray((corrupt / "model.tflite").read_bytes())
    model[len(model) // 2] ^= 0xFF  # one flipped byte on the way
    tar_gz(corrupt, served / "v3.tar.gz", replace={"model.tflite": bytes(model)})
    wrong = bundle_version(color_bundle, tmp_path / "src" / "color-v4", "4", labels_as={"red": "green"})

    clip = static_clip(tmp_path / "red.avi", (220, 20, 20), frames=30)
    models = tmp_path / "models"
    config = write_config(
        tmp_path,
        mosquitto,
        color_bundle,
        clip,
        camera={"realtime": True, "loop": True},
        trigger={"mode": "continuous", "min_interval_s": 0},
        rollout={"models_dir": str(models)},
    )
    sub = subscriber(mosquitto, [f"{DEVICE}/decision", f"{DEVICE}/command/reply", f"{DEVICE}/status"])
    daemon = start_daemon(config)
    try:
        sub.wait_for(lambda got: len([m for m in got if m.topic.endswith("/decision")]) >= 10, timeout=30)

        reply = command(sub, {"command": "reload", "url": f"{base}/v2.tar.gz", "sha256": sha_of(good)})
        assert reply["ok"], reply
        assert reply["model"].startswith("color-test:2:") and reply["self_test"] == {"passed": 3, "total": 3}
        sub.wait_for(lambda got: len(decisions_by(sub, "2")) >= 10, timeout=30)
        status = last_status(sub)
        assert status["model"].startswith("color-test:2:")
        assert status["rollout"]["result"] == "ok" and status["rollout"]["source"] == f"{base}/v2.tar.gz"
        assert (models / f"color-test-2-{sha_of(good)[:12]}" / "bundle.json").is_file()

        refused = command(sub, {"command": "reload", "url": f"{base}/v3.tar.gz", "sha256": sha_of(corrupt)})
        assert not refused["ok"] and "still running color-test:2:" in refused["error"]
        assert "model.tflite: sha256" in refused["error"] and "does not match" in refused["error"]
        status = last_status(sub)
        assert status["model"].startswith("color-test:2:")
        assert status["rollout"]["result"] == "failed" and status["rollout"]["stage"] == "verify"

        failing = command(sub, {"command": "reload", "bundle": str(wrong)})
        assert not failing["ok"] and "self-test 2/3 right" in failing["error"], failing
        assert "green-0.png: red" in failing["error"] and "expected green" in failing["error"]
        status = last_status(sub)
        assert status["model"].startswith("color-test:2:") and status["rollout"]["stage"] == "self_test"
        count = len(sub.received(f"{DEVICE}/decision"))
        sub.wait_for(lambda got: len([m for m in got if m.topic.endswith("/decision")]) >= count + 5, timeout=20)
    finally:
        stderr = terminate(daemon)

    frames, published = (int(n) for n in stderr.split("stopped after ")[1].split(" decisions")[0].split(" frames, "))
    seqs, models_seen = [], []
    for decision in sub.payloads(f"{DEVICE}/decision"):
        if decision["seq"] not in seqs:  # QoS 1 may redeliver; a gap is what must not happen
            seqs.append(decision["seq"])
            models_seen.append(decision["model"].split(":")[1])
    assert seqs == list(range(1, published + 1))
    # the loop kept taking frames and deciding items before, during and after the swap
    assert frames >= published >= 25
    switch = models_seen.index("2")
    assert set(models_seen[:switch]) == {"1"} and set(models_seen[switch:]) == {"2"}  # one swap, never back
    assert not decisions_by(sub, "3") and not decisions_by(sub, "4")
    assert {d["label"] for d in sub.payloads(f"{DEVICE}/decision")} == {"red"}


def test_watch_follows_the_current_symlink_and_points_it_back_after_a_failed_self_test(
    tmp_path, mosquitto, subscriber, color_bundle
):
    models = tmp_path / "models"
    v1 = bundle_version(color_bundle, models / "color-test-1", "1")
    v2 = bundle_version(color_bundle, models / "color-test-2", "2")
    bad = bundle_version(color_bundle, models / "color-test-5", "5", labels_as={"blue": "red"})
    current = models / "current"
    current.symlink_to(v1.name)
    state = tmp_path / "rollout.json"

    def flip(target: Path) -> None:
        staging = models / ".flip"
        staging.symlink_to(target.name)
        os.replace(staging, current)

    clip = static_clip(tmp_path / "green.avi", (20, 200, 40), frames=30)
    config = write_config(
        tmp_path,
        mosquitto,
        current,
        clip,
        camera={"realtime": True, "loop": True},
        trigger={"mode": "continuous", "min_interval_s": 0.05},
        rollout={"watch": True, "watch_interval_s": 0.2, "state_file": str(state)},
    )
    sub = subscriber(mosquitto, [f"{DEVICE}/decision", f"{DEVICE}/status"])
    daemon = start_daemon(config)
    try:
        sub.wait_for(lambda got: any(m.topic.endswith("/decision") for m in got), timeout=30)
        assert json.loads(state.read_text())["live"]["model"].startswith("color-test:1:")

        flip(v2)
        sub.wait_for(lambda got: len(decisions_by(sub, "2")) >= 3, timeout=20)
        status = last_status(sub)
        assert status["model"].startswith("color-test:2:")
        assert status["rollout"]["result"] == "ok" and status["rollout"]["origin"] == "watch"
        assert json.loads(state.read_text())["live"]["model"].startswith("color-test:2:")

        flip(bad)
        sub.wait_for(lambda got: last_status(sub).get("rollout", {}).get("result") == "failed", timeout=20)
        status = last_status(sub)
        assert status["model"].startswith("color-test:2:") and status["rollout"]["stage"] == "self_test"
        assert os.readlink(current) == v2.name  # a restart loads the model that runs, not the one that failed
        recorded = json.loads(state.read_text())
        assert recorded["live"]["model"].startswith("color-test:2:") and recorded["last"]["result"] == "failed"
        count = len(decisions_by(sub, "2"))
        sub.wait_for(lambda got: len(decisions_by(sub, "2")) >= count + 3, timeout=20)
    finally:
        terminate(daemon)
    assert not decisions_by(sub, "5")


def test_a_watched_bundle_that_comes_while_another_rollout_is_busy_is_offered_again(tmp_path, color_bundle):
    current = tmp_path / "current"
    current.symlink_to(color_bundle)
    offered: list[Path] = []
    taken = threading.Event()

    def on_change(bundle: Path) -> bool:
        offered.append(bundle)
        if len(offered) < 3:
            return False  # a reload from MQTT is still being prepared
        taken.set()
        return True

    watch = BundleWatch(current, 0.05, on_change)
    watch.start()
    try:
        newer = bundle_version(color_bundle, tmp_path / "color-v2", "2")
        current.unlink()
        current.symlink_to(newer)
        assert taken.wait(10)
        time.sleep(0.3)  # taken: not offered again
    finally:
        watch.stop()
    assert offered == [newer.resolve()] * 3
