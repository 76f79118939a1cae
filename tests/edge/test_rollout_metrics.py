"""Operations: the optional Prometheus endpoint of a running daemon, scraped over HTTP, and
its rollout figures (the live model changes on the endpoint after a reload)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.edge.daemon_helpers import scrape, start_daemon, static_clip, terminate, write_config
from tests.ports import free_port

pytest.importorskip("prometheus_client", reason="the metrics endpoint needs prometheus-client (edge extra)")


def test_metrics_endpoint_reports_the_running_daemon(tmp_path, mosquitto, subscriber, color_bundle, wait_until):
    port = free_port()
    clip = static_clip(tmp_path / "blue.avi", (30, 40, 220))
    config = write_config(
        tmp_path,
        mosquitto,
        color_bundle,
        clip,
        camera={"realtime": True, "loop": True},
        trigger={"mode": "continuous", "min_interval_s": 0},
        metrics={"enabled": True, "port": port},
    )
    sub = subscriber(mosquitto, ["sortline/line-1/decision", "sortline/line-1/command/reply"])
    daemon = start_daemon(config)
    try:
        wait_until(lambda: len(sub.received("sortline/line-1/decision")) >= 10, timeout=30, what="decisions")
        first = wait_until(lambda: _try_scrape(port), timeout=10, what="the metrics endpoint")
        later = wait_until(
            lambda: (s := scrape(port))["sortline_frames_total"] > first["sortline_frames_total"] and s,
            timeout=10,
            what="frames to advance",
        )
        assert later['sortline_decisions_total{label="blue"}'] >= 10
        assert later["sortline_rejects_total"] == 0
        assert "sortline_fps" not in later  # rates come from sortline_frames_total, right for every scraper
        assert later["sortline_dropped_frames_total"] >= 0  # how far behind its camera the board is
        assert 'sortline_inference_seconds_bucket{le="0.25"}' in later  # steps of 25 ms where slow CPUs are
        assert 'sortline_decision_latency_seconds_bucket{le="0.7"}' in later  # and 0.1 s where decisions are
        assert later["sortline_inference_seconds_count"] >= later['sortline_decisions_total{label="blue"}'] - 1
        assert later['sortline_inference_seconds_bucket{le="+Inf"}'] == later["sortline_inference_seconds_count"]
        assert later["sortline_decision_latency_seconds_count"] >= 10
        assert later["sortline_queue_depth"] >= 0 and later["sortline_queue_dropped_total"] == 0
        assert later["sortline_camera_reconnects_total"] == 0 and later["sortline_broker_reconnects_total"] == 0
        assert later['sortline_camera_state{state="streaming"}'] == 1
        assert any(name.startswith('sortline_model_info{model="color-test:1:') for name in later)

        second = tmp_path / "v2"
        shutil.copytree(color_bundle, second)
        meta = json.loads((second / "bundle.json").read_text())
        meta["version"] = "2"
        (second / "bundle.json").write_text(json.dumps(meta))
        sub.client.publish("sortline/line-1/command", json.dumps({"command": "reload", "bundle": str(second)}), qos=1)
        wait_until(
            lambda: any(name.startswith('sortline_model_info{model="color-test:2:') for name in scrape(port)),
            timeout=20,
            what="the new model on /metrics",
        )
    finally:
        terminate(daemon)
    with pytest.raises(OSError):
        scrape(port)  # the endpoint goes away with the daemon


def _try_scrape(port: int) -> dict[str, float] | None:
    try:
        return scrape(port)
    except OSError:
        return None
