"""From per-frame scores to one decision per item: soft voting, the reject threshold, lanes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from edge.bundle import BundleMetadata
from edge.config import ConfigError, LaneSettings, ModelSettings

REJECT = "reject"
LATE = "late"  # the reject reason of a decision past its deadline: the item has gone by
FALLBACK_THRESHOLD = 0.6  # for bundles that recommend none
WRONG_LANE_COST = 10  # a wrong lane costs as much as this many rejects: a mis-sorted item is found downstream


def decision_cost(wrong: int | np.ndarray, reject: int | np.ndarray) -> int | np.ndarray:
    """What decisions cost, in rejects: a wrong lane counts `WRONG_LANE_COST`, a reject one. The trainer chooses
    thresholds by it and judges candidates by it; the daemon refuses a worse reload by it (`edge.line_check`)."""
    return WRONG_LANE_COST * wrong + reject


@dataclass(frozen=True)
class Thresholds:
    """The reject threshold for each top label: model.thresholds, else model.threshold, else the bundle's own
    (per label where it recommends them, else one for all); and how unfamiliar an item of each top label may be."""

    default: float
    per_label: dict[str, float] = field(default_factory=dict)  # what applies, label by label
    source: str = "config"  # where `default` came from: config, bundle, fallback or command
    configured: dict[str, float] = field(default_factory=dict)  # model.thresholds: outlive a set_threshold
    max_novelty: float = 1.0  # model.max_novelty: above it an item is unfamiliar
    # The bundle's familiarity.per_label: max_novelty's share for items of that top label. Part of the familiarity
    # check, not of the thresholds: it holds whatever threshold is configured or commanded.
    novelty_shares: dict[str, float] = field(default_factory=dict)

    @classmethod
    def resolve(cls, model: ModelSettings, metadata: BundleMetadata) -> Thresholds:
        unknown = sorted(set(model.thresholds) - set(metadata.labels))
        if unknown:
            raise ConfigError(
                f"model.thresholds names {unknown}, which the model does not output {list(metadata.labels)}"
            )
        configured = dict(model.thresholds)
        familiar = {
            "max_novelty": model.max_novelty,
            "novelty_shares": dict(metadata.familiarity.per_label) if metadata.familiarity else {},
        }
        if model.threshold is not None:
            return cls(model.threshold, configured, "config", configured, **familiar)
        if metadata.recommended_threshold is not None:
            recommended = metadata.recommended_thresholds or {}
            return cls(metadata.recommended_threshold, recommended | configured, "bundle", configured, **familiar)
        return cls(FALLBACK_THRESHOLD, configured, "fallback", configured, **familiar)

    def commanded(self, value: float) -> Thresholds:
        """One threshold for every label set over MQTT: the bundle's per-label ones give way, the config's stay."""
        return replace(self, default=value, per_label=dict(self.configured), source="command")

    def for_label(self, label: str) -> float:
        return self.per_label.get(label, self.default)

    def novelty_limit(self, label: str) -> float:
        """Above this novelty an item whose top label this is is unfamiliar."""
        return self.max_novelty * self.novelty_shares.get(label, 1.0)

    def describe(self) -> dict[str, object]:
        return {
            "default": self.default,
            "per_label": self.per_label,
            "source": self.source,
            "max_novelty": self.max_novelty,
            "max_novelty_per_label": {label: self.novelty_limit(label) for label in self.novelty_shares},
        }


def lane_label(
    scores: np.ndarray, novelty: float | None, labels: tuple[str, ...], thresholds: Thresholds
) -> tuple[str, float, str | None]:
    """(label or "reject", confidence, why rejected): unlike anything trained on, or below its label's threshold."""
    best = int(np.argmax(scores))
    confidence, label = float(scores[best]), labels[best]
    if novelty is not None and novelty > thresholds.novelty_limit(label):
        return REJECT, confidence, "unfamiliar"
    if confidence < thresholds.for_label(label):
        return REJECT, confidence, "below_threshold"
    return label, confidence, None


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
    there_at: float | None = None  # wall clock, when it was last known in front of the camera; None: first_seen
    frames: int = 0
    last_captured: float = 0.0  # monotonic capture time of the newest frame voted
    inference_ms: float = 0.0
    veto: str | None = None  # why it cannot get a lane whatever its scores: touching, too_long, untimed
    crossed_at: float | None = None  # wall clock when its centre crossed the reference line
    belt_speed_px_s: float | None = None  # the belt's speed when it crossed, pixels of the frame per second
    belt_speed_mm_s: float | None = None  # the same in millimetres, when the camera is calibrated
    _score_sum: np.ndarray | None = None
    _novelty_sum: float | None = None

    def add(self, scores: np.ndarray, captured_at: float, inference_ms: float, novelty: float | None = None) -> None:
        self._score_sum = scores.copy() if self._score_sum is None else self._score_sum + scores
        if novelty is not None:
            self._novelty_sum = (self._novelty_sum or 0.0) + novelty
        self.frames += 1
        self.last_captured = captured_at
        self.inference_ms += inference_ms

    def mean_scores(self) -> np.ndarray | None:
        return None if self._score_sum is None else self._score_sum / self.frames

    def mean_novelty(self) -> float | None:
        """Averaged over the frames like the scores: one odd view does not reject an item, an odd item is."""
        return None if self._novelty_sum is None else self._novelty_sum / self.frames


def decide(
    vote: ItemVote, labels: tuple[str, ...], thresholds: Thresholds, lanes: LaneSettings, ttl_s: float
) -> dict[str, object]:
    """The decision message body (seq, model and device are added by the daemon). Its deadline counts from when
    the item was there, not from when it was decided: a decision made after it is a ``late`` reject."""
    scores, novelty = vote.mean_scores(), vote.mean_novelty()
    decided_at = time.time()
    deadline = (vote.first_seen if vote.there_at is None else vote.there_at) + ttl_s
    if scores is None:
        label, confidence, reason = REJECT, 0.0, vote.veto or "no_frames"
    else:
        label, confidence, reason = lane_label(scores, novelty, labels, thresholds)
        if vote.veto is not None:
            label, reason = REJECT, vote.veto
    if decided_at > deadline:
        label, reason = REJECT, LATE
    return {
        "item_id": vote.item_id,
        "label": label,
        "lane": lanes.reject if label == REJECT else lanes.map[label],
        "confidence": round(confidence, 4),
        "reason": reason,
        "top_label": None if scores is None else labels[int(np.argmax(scores))],
        "scores": {} if scores is None else {lab: round(float(s), 4) for lab, s in zip(labels, scores, strict=True)},
        "novelty": None if novelty is None else round(novelty, 3),
        "frames": vote.frames,
        "first_seen": round(vote.first_seen, 3),
        "decided_at": round(decided_at, 3),
        "deadline": round(deadline, 3),
        "inference_ms": round(vote.inference_ms / vote.frames, 2) if vote.frames else None,
        "latency_ms": round((time.monotonic() - vote.last_captured) * 1000, 2) if vote.frames else None,
        **belt_timing(vote, decided_at),
    }


def as_late(decision: dict[str, object], reject_lane: int) -> dict[str, object]:
    """The decision as it must go out once past its deadline (a broker outage held it back): a reject the PLC
    can tell from one made in time, with everything else kept for the record."""
    return {**decision, "label": REJECT, "lane": reject_lane, "reason": LATE}


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
