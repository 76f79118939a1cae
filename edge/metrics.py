"""Optional Prometheus endpoint (``/metrics``) for plant monitoring, off unless ``metrics.enabled``.

prometheus-client (the Prometheus project's own library) writes the text exposition format and
serves it from a background thread, so the frame loop only records latencies; every other figure
is read from the daemon's existing counters when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.config import MetricsSettings

log = logging.getLogger(__name__)

# Buckets where the data is, for the boards and models supported: inference takes 2-10 ms (EfficientNet-Lite
# on x86 with AVX-512), 20-60 ms (Lite on a Pi 5, VGG16 on AVX-512), 150-300 ms (VGG16 on AVX2 or a Pi 4),
# so steps of 25-50 ms there; a decision votes over several frames: 0.3-1.5 s in presence mode.
_INFERENCE_BUCKETS = (
    *(0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15),
    *(0.175, 0.2, 0.225, 0.25, 0.275, 0.3, 0.35, 0.4, 0.5, 0.75, 1.0, 2.0),
)
_LATENCY_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5),
    *(1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0),
)


class _DaemonCollector(Collector):
    """Turns the daemon's counters (read at scrape time) into metric families."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        figures = self._read()
        if not figures:
            return  # the daemon has not counted yet
        # No fps gauge: rate(sortline_frames_total[1m]) is right for any number of scrapers and intervals.
        yield CounterMetricFamily("sortline_frames", "Frames taken by the frame loop", value=figures["frames"])
        yield CounterMetricFamily(
            "sortline_dropped_frames",
            "Camera frames replaced by a newer one before the frame loop took them (a board slower than its camera)",
            value=figures["dropped_frames"],
        )
        decisions = CounterMetricFamily("sortline_decisions", "Decisions published, by label", labels=["label"])
        for label, count in sorted(figures["decisions"].items()):
            decisions.add_metric([label], count)
        yield decisions
        yield CounterMetricFamily("sortline_rejects", "Reject decisions, every reason", value=figures["rejects"])
        reasons = CounterMetricFamily("sortline_reject_reasons", "Reject decisions, by reason", labels=["reason"])
        for reason, count in sorted(figures["reject_reasons"].items()):
            reasons.add_metric([reason], count)
        yield reasons
        line = figures["line"]
        if line:  # presence mode: what the decisions can be checked against
            yield CounterMetricFamily("sortline_items_seen", "Items found on the belt", value=line["items_seen"])
            yield CounterMetricFamily(
                "sortline_suspected_splits", "Items seen in pieces at least once", value=line["suspected_splits"]
            )
            yield CounterMetricFamily(
                "sortline_suspected_merges",
                "Items that merged with another at least once",
                value=line["suspected_merges"],
            )
            if line["belt_speed_px_s"] is not None:
                yield GaugeMetricFamily(
                    "sortline_belt_speed_px_s",
                    "Belt speed measured from the items, px/s",
                    value=line["belt_speed_px_s"],
                )
            if line["item_length_px"] is not None:
                yield GaugeMetricFamily(
                    "sortline_item_length_px",
                    "The line's usual item length along the belt (median of the last single items), px",
                    value=line["item_length_px"],
                )
            yield GaugeMetricFamily(
                "sortline_belt_standing", "1 while the belt stands still", value=int(line["belt_standing"])
            )
            if line["motion_blur_px"] is not None:
                yield GaugeMetricFamily(
                    "sortline_motion_blur_px",
                    "How far the belt moves while the camera exposes a frame (read from the frames), px",
                    value=line["motion_blur_px"],
                )
            yield CounterMetricFamily(
                "sortline_product_changeovers",
                "Runs of items longer than the line's, taken for a new product and learned",
                value=line["product_changeovers"],
            )
            yield CounterMetricFamily(
                "sortline_belt_learned_again",
                "Times part of the view stayed unlike the running belt (the camera moved) and it was learned again",
                value=line["belt_learned_again"],
            )
        yield GaugeMetricFamily("sortline_queue_depth", "Decisions waiting to be sent", value=figures["queue_depth"])
        yield CounterMetricFamily("sortline_queue_dropped", "Dropped: queue full", value=figures["queue_dropped"])
        yield CounterMetricFamily("sortline_camera_reconnects", "Camera reconnects", value=figures["camera_reconnects"])
        yield CounterMetricFamily("sortline_broker_reconnects", "Broker reconnects", value=figures["broker_reconnects"])
        camera = GaugeMetricFamily("sortline_camera_state", "1 for the camera's current state", labels=["state"])
        camera.add_metric([figures["camera"]], 1)
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
            "Capture of the newest frame voted for an item to its decision",
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
