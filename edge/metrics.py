"""Optional Prometheus endpoint (``/metrics``) for plant monitoring, off unless ``metrics.enabled``.

prometheus-client (the Prometheus project's own library) writes the text exposition format and
serves it from a background thread, so the frame loop only records latencies; every other figure
is read from the daemon's existing counters when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.config import MetricsSettings

log = logging.getLogger(__name__)

# Inference on a Pi/Jetson takes 5-200 ms; decisions (voting over several frames) up to a few seconds.
_INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class _DaemonCollector(Collector):
    """Turns the daemon's counters (read at scrape time) into metric families."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read
        self._last: tuple[float, int] | None = None

    def collect(self) -> Iterator[Any]:
        figures = self._read()
        now = time.monotonic()
        fps = 0.0
        if self._last is not None and now > self._last[0]:
            fps = (figures["frames"] - self._last[1]) / (now - self._last[0])
        self._last = (now, figures["frames"])

        yield CounterMetricFamily("sortline_frames", "Frames taken by the frame loop", value=figures["frames"])
        yield GaugeMetricFamily("sortline_fps", "Frames per second since the previous scrape", value=round(fps, 3))
        decisions = CounterMetricFamily("sortline_decisions", "Decisions published, by label", labels=["label"])
        for label, count in sorted(figures["decisions"].items()):
            decisions.add_metric([label], count)
        yield decisions
        yield CounterMetricFamily("sortline_rejects", "Decisions below the threshold", value=figures["rejects"])
        yield GaugeMetricFamily("sortline_queue_depth", "Decisions waiting to be sent", value=figures["queue_depth"])
        yield CounterMetricFamily("sortline_queue_dropped", "Dropped: queue full", value=figures["queue_dropped"])
        yield CounterMetricFamily("sortline_camera_reconnects", "Camera reconnects", value=figures["camera_reconnects"])
        yield CounterMetricFamily("sortline_broker_reconnects", "Broker reconnects", value=figures["broker_reconnects"])
        camera = GaugeMetricFamily("sortline_camera_state", "1 for the camera's current state", labels=["state"])
        camera.add_metric([figures["camera_state"]], 1)
        yield camera
        yield GaugeMetricFamily("sortline_paused", "1 while paused by command", value=int(figures["paused"]))
        yield InfoMetricFamily("sortline_model", "The live model", value={"model": figures["model"]})


class MetricsServer:
    """The registry, the two latency histograms the frame loop feeds, and the HTTP server."""

    def __init__(self, settings: MetricsSettings, read: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self.registry = CollectorRegistry()
        self.inference_seconds = Histogram(
            "sortline_inference_seconds", "Model invocation time", buckets=_INFERENCE_BUCKETS, registry=self.registry
        )
        self.latency_seconds = Histogram(
            "sortline_decision_latency_seconds",
            "First frame of an item to its decision",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DaemonCollector(read))
        self._server: Any = None

    def start(self) -> None:
        self._server, _ = start_http_server(self._settings.port, addr=self._settings.host, registry=self.registry)
        host, port = self._server.server_address[:2]
        log.info("metrics on http://%s:%s/metrics", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
