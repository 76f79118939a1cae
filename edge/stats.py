"""Rolling numbers for the stats topic and the benchmark: rates and latency percentiles."""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np


class Window:
    """The last `size` samples of a latency, for p50/p99 without unbounded memory; also those since the last
    stats message, so a plot over time shows a spike when it happened instead of smoothed into 1000."""

    def __init__(self, size: int = 1000) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._fresh: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._samples.append(value)
        self._fresh.append(value)

    def percentiles(self) -> dict[str, float | None]:
        return _percentiles(self._samples)

    def take_fresh(self) -> dict[str, float | None]:
        """p50/p99 of the samples added since the last call."""
        fresh = _percentiles(self._fresh)
        self._fresh.clear()
        return fresh


def _percentiles(samples: deque[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(np.fromiter(samples, dtype=np.float64), [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}


class RunStats:
    """Counters the frame loop updates; `snapshot()` gives their rates and latency percentiles for the stats
    message (the counts themselves are in the daemon's figures, with the camera's and the broker's)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.frames = 0
        self.classified = 0
        self.decisions: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()  # rejects by reason: below_threshold, touching, too_long, …
        self.inference_ms = Window()
        self.latency_ms = Window()
        self._last_time = self.started
        self._last_frames = 0

    def snapshot(self) -> dict[str, object]:
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        fps = (self.frames - self._last_frames) / elapsed
        self._last_time, self._last_frames = now, self.frames
        return {
            "uptime_s": round(now - self.started, 1),
            "fps": round(fps, 2),
            "classified": self.classified,
            "inference_ms": self.inference_ms.percentiles(),
            "latency_ms": self.latency_ms.percentiles(),
            "last_interval": {
                "inference_ms": self.inference_ms.take_fresh(),
                "latency_ms": self.latency_ms.take_fresh(),
            },
        }
