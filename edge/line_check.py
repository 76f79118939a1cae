"""Before a retrained model goes live: is it better than the live one on this line's own items?

A bundle trained with the line's labelled crops names the ones it was trained without (`LineCheck.held_back`, by
content hash). The crops labelled on this device's page lie in ``crops.labelled``: those held back are classified
by the live model and by the candidate, each at its own thresholds, exactly as the frame loop would decide them.
The candidate is worse when its decisions cost more (`Outcome.worse_than`, the trainer's rule for every set it
judges); then the rollout is refused unless the reload is forced. Crops labelled elsewhere (another device of the
fleet) are not here, and then there is nothing to judge on: the rollout goes on and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edge.bundle import BundleMetadata, ModelBundle, sha256_file
from edge.classifier import Classifier
from edge.config import ModelSettings
from edge.decision import REJECT, Thresholds, decision_cost, lane_label
from edge.preprocess import IMAGE_SUFFIXES, decode_image

WORSE_ITEMS = 3  # a model is worse on a set when its decisions cost at least this many rejects' worth more ...
WORSE_POINTS = 1.0  # ... and more than this many points of the set's items (on a few crops one item is points)


@dataclass(frozen=True)
class Outcome:
    right: int
    reject: int
    wrong: int

    def worse_than(self, other: Outcome) -> bool:
        """Costlier on the same items (`decision_cost`: a wrong lane ten rejects) by `WORSE_ITEMS` rejects' worth
        and `WORSE_POINTS` points. One more wrong lane is worse on any set up to a thousand items; on a line's
        four held-back crops one more reject is not: it refused a candidate that took the line's other 164
        items from 5 wrong lanes to 2 and 115 right to 124 (bench/relabel.py)."""
        more = int(decision_cost(self.wrong, self.reject) - decision_cost(other.wrong, other.reject))
        items = self.right + self.reject + self.wrong
        return more >= WORSE_ITEMS and 100 * more / max(items, 1) > WORSE_POINTS

    def __str__(self) -> str:
        return f"{self.right} right, {self.reject} rejected, {self.wrong} wrong lane"


def held_back_crops(bundle: ModelBundle, labelled: Path | None) -> list[tuple[Path, str]]:
    """The candidate's held-back crops found in the labelled folder (by content), with the label it was judged by."""
    check = bundle.metadata.line_check
    if check is None or not check.held_back or labelled is None or not labelled.is_dir():
        return []
    wanted = {crop.sha256: crop.label for crop in check.held_back}
    found = []
    for path in sorted(p for p in labelled.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES):
        digest = sha256_file(path)
        if digest in wanted:
            found.append((path, wanted.pop(digest)))
    return found


def judge(classifier: Classifier, thresholds: Thresholds, crops: list[tuple[Path, str]]) -> Outcome:
    """How the frame loop would decide each crop: its lane (or a reject) against the label a person gave it."""
    right = reject = wrong = 0
    for path, label in crops:
        assessment = classifier.assess(decode_image(str(path)))
        said, _, _ = lane_label(assessment.scores, assessment.novelty, classifier.labels, thresholds)
        right, reject, wrong = right + (said == label), reject + (said == REJECT), wrong + (said not in (label, REJECT))
    return Outcome(right, reject, wrong)


def compare(candidate: Classifier, live: ModelBundle, settings: ModelSettings, labelled: Path | None) -> dict:
    """Both models on the candidate's held-back crops held here: ``{"crops": n, "live": {...}, "candidate": {...},
    "worse": bool}``, or ``{"crops": 0, "note": why}`` when there is nothing to judge on; with ``"worse_elsewhere"``
    when the trainer measured the candidate worse than this very live model on other photos."""
    check = candidate.bundle.metadata.line_check
    result: dict = {"crops": 0}
    if check is not None and check.worse_elsewhere and check.compared_with == live.metadata.model_id:
        result["worse_elsewhere"] = dict(check.worse_elsewhere)
    crops = held_back_crops(candidate.bundle, labelled)
    if not crops:
        named = len(check.held_back) if check else 0
        result["note"] = (
            f"none of the {named} held-back line crops it names are in {labelled}"
            if named
            else "the candidate names no held-back line crops (trained without the line's own)"
        )
        return result
    live_classifier = Classifier(live, threads=settings.threads)
    before = judge(live_classifier, Thresholds.resolve(settings, live.metadata), crops)
    after = judge(candidate, Thresholds.resolve(settings, candidate.bundle.metadata), crops)
    return result | {"crops": len(crops), "live": asdict(before), "candidate": asdict(after),
                     "worse": after.worse_than(before)}  # fmt: skip


def trained_figures(metadata: BundleMetadata) -> dict | None:
    """What the trainer measured on the line's held-back crops for this model and the one it replaced (the
    commissioning page shows it): ``{"line", "crops", "model", "before"}``, or None for a bundle without them."""
    comparison = metadata.metrics.get("decisions", {}).get("line")
    if not isinstance(comparison, dict) or not isinstance(comparison.get("candidate"), dict):
        return None

    def counts(row: object) -> dict | None:
        return {k: row["counts"][k] for k in ("right", "reject", "wrong")} if isinstance(row, dict) else None

    live = comparison.get("live") or {}
    return {
        "line": comparison.get("line", ""),
        "crops": comparison.get("crops", {}),
        "model": counts(comparison["candidate"].get("line")),
        "before": {"bundle": live.get("bundle"), **(counts(live.get("line")) or {})} if live else None,
    }
