"""Before a retrained model goes live: is it better than the live one on this line's own items?

A bundle trained with the line's labelled crops names the ones it was trained without (`LineCheck.held_back`, by
content hash). The crops labelled on this device's page lie in ``crops.labelled``: those held back are classified
by the live model and by the candidate, each at its own thresholds, exactly as the frame loop would decide them.
The candidate is worse when it sends more of them to a wrong lane, or as many and fewer to the right one; then the
rollout is refused unless the reload is forced. Crops labelled elsewhere (another device of the fleet) are not
here, and then there is nothing to judge on: the rollout goes on and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edge.bundle import BundleMetadata, ModelBundle, sha256_file
from edge.classifier import Classifier
from edge.config import ModelSettings
from edge.decision import REJECT, Thresholds, lane_label
from edge.preprocess import IMAGE_SUFFIXES, decode_image


@dataclass(frozen=True)
class Outcome:
    right: int
    reject: int
    wrong: int

    def worse_than(self, other: Outcome) -> bool:
        return self.wrong > other.wrong or (self.wrong == other.wrong and self.right < other.right)

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
