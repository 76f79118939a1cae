"""From per-frame scores to one decision per item: soft voting, the reject threshold, lanes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge.bundle import BundleMetadata
from edge.config import ConfigError, LaneSettings, ModelSettings

REJECT = "reject"
FALLBACK_THRESHOLD = 0.6  # for bundles that recommend none


@dataclass(frozen=True)
class Thresholds:
    """The reject threshold for each top label: model.thresholds, else model.threshold, else the bundle's."""

    default: float
    per_label: dict[str, float] = field(default_factory=dict)
    source: str = "config"  # where `default` came from: config, bundle, fallback or command

    @classmethod
    def resolve(cls, model: ModelSettings, metadata: BundleMetadata) -> Thresholds:
        unknown = sorted(set(model.thresholds) - set(metadata.labels))
        if unknown:
            raise ConfigError(
                f"model.thresholds names {unknown}, which the model does not output {list(metadata.labels)}"
            )
        if model.threshold is not None:
            return cls(model.threshold, dict(model.thresholds), "config")
        if metadata.recommended_threshold is not None:
            return cls(metadata.recommended_threshold, dict(model.thresholds), "bundle")
        return cls(FALLBACK_THRESHOLD, dict(model.thresholds), "fallback")

    def for_label(self, label: str) -> float:
        return self.per_label.get(label, self.default)

    def describe(self) -> dict[str, object]:
        return {"default": self.default, "per_label": self.per_label, "source": self.source}


def check_lanes(labels: tuple[str, ...], lanes: LaneSettings) -> None:
    """Every label the model can output needs a lane, or items would have nowhere to go."""
    missing = [label for label in labels if label not in lanes.map]
    if missing:
        raise ConfigError(f"lanes.map has no lane for model label(s) {missing}; the model outputs {list(labels)}")


@dataclass
class ItemVote:
    """Scores collected for one item across the frames it was seen in."""

    item_id: str
    first_seen: float = field(default_factory=time.time)  # wall clock, for the PLC
    frames: int = 0
    last_captured: float = 0.0  # monotonic capture time of the newest frame voted
    inference_ms: float = 0.0
    veto: str | None = None  # why it cannot get a lane whatever its scores: touching, too_long
    crossed_at: float | None = None  # wall clock when its centre crossed the reference line
    belt_speed_px_s: float | None = None  # the belt's speed when it crossed, pixels of the frame per second
    belt_speed_mm_s: float | None = None  # the same in millimetres, when the camera is calibrated
    _score_sum: np.ndarray | None = None

    def add(self, scores: np.ndarray, captured_at: float, inference_ms: float) -> None:
        self._score_sum = scores.copy() if self._score_sum is None else self._score_sum + scores
        self.frames += 1
        self.last_captured = captured_at
        self.inference_ms += inference_ms

    def mean_scores(self) -> np.ndarray | None:
        return None if self._score_sum is None else self._score_sum / self.frames


def decide(
    vote: ItemVote, labels: tuple[str, ...], thresholds: Thresholds, lanes: LaneSettings, ttl_s: float
) -> dict[str, object]:
    """The decision message body (seq, model and device are added by the daemon)."""
    scores = vote.mean_scores()
    decided_at = time.time()
    if scores is None:
        label, confidence, reason = REJECT, 0.0, vote.veto or "no_frames"
    else:
        best = int(np.argmax(scores))
        confidence = float(scores[best])
        label, reason = labels[best], vote.veto
        if reason is not None or confidence < thresholds.for_label(label):
            label, reason = REJECT, reason or "below_threshold"
    return {
        "item_id": vote.item_id,
        "label": label,
        "lane": lanes.reject if label == REJECT else lanes.map[label],
        "confidence": round(confidence, 4),
        "reason": reason,
        "top_label": None if scores is None else labels[int(np.argmax(scores))],
        "scores": {} if scores is None else {lab: round(float(s), 4) for lab, s in zip(labels, scores, strict=True)},
        "frames": vote.frames,
        "first_seen": round(vote.first_seen, 3),
        "decided_at": round(decided_at, 3),
        "deadline": round(decided_at + ttl_s, 3),
        "inference_ms": round(vote.inference_ms / vote.frames, 2) if vote.frames else None,
        "latency_ms": round((time.monotonic() - vote.last_captured) * 1000, 2) if vote.frames else None,
        **belt_timing(vote, decided_at),
    }


def belt_timing(vote: ItemVote, decided_at: float) -> dict[str, object]:
    """When the item crossed the reference line and how fast the belt ran, in forms a PLC can use: epoch
    seconds, integer epoch milliseconds (a 32-bit REAL cannot hold epoch seconds), and milliseconds before
    the decision was made (no clock sync needed: the PLC subtracts it from when the message came)."""
    crossed_ms = None if vote.crossed_at is None else round(vote.crossed_at * 1000)
    return {
        "crossed_at": None if crossed_ms is None else crossed_ms / 1000,
        "crossed_at_ms": crossed_ms,
        "crossed_ms_before_decision": None if crossed_ms is None else round(decided_at * 1000) - crossed_ms,
        "belt_speed_px_s": None if vote.belt_speed_px_s is None else round(vote.belt_speed_px_s, 1),
        "belt_speed_mm_s": None if vote.belt_speed_mm_s is None else round(vote.belt_speed_mm_s, 1),
    }
