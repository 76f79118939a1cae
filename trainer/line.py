"""The line's own crops: the domain a retrained model has to serve.

A line's labelled crops (the commissioning page's export, or any folder given with ``--line``) are few beside the
shop photos; counted like them they would weigh nothing in training. So they carry a fixed share of the
training loss and half of the validation loss (which picks the epochs), their validation share joins the
out-of-domain photos in choosing the reject thresholds (`chooser`), and those held back judge the candidate
against the live model: on the line, on the shop's test split and on the out-of-domain photos.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge.bundle import BundleError, ModelBundle, load_bundle
from edge.line_check import Outcome
from trainer import calibration
from trainer.data import LINE_MARKER

log = logging.getLogger("sortline.train")

VALIDATION_SHARE = 0.5  # of a class's validation loss, whatever the line's share of training
FULL_SHARE_FROM = 20  # crops of a class: from this many on the line's crops carry their full share of it


def share_weights(is_line: np.ndarray, labels: np.ndarray, share: float) -> np.ndarray:
    """Per-image weights under which, within each class, the line's images carry `share` of the class's weight
    once there are `FULL_SHARE_FROM` of them (fewer: in proportion, so one crop is never half a class), and each
    class keeps its total (its image count), so class balancing still holds. Across all classes instead, a line
    that sends one class only (a saree line) made half the loss saree: the model learnt to say saree, and the
    thresholds rose for every line (bench/relabel.py)."""
    weights = np.ones(len(is_line), np.float32)
    for label in np.unique(labels):
        own = labels == label
        lines, others = int((is_line & own).sum()), int((~is_line & own).sum())
        wanted = share * min(1.0, lines / FULL_SHARE_FROM)
        if not (lines and others) or lines >= wanted * (lines + others):
            continue  # the line's images already carry that share by their number
        weights[is_line & own] = wanted * (lines + others) / lines
        weights[~is_line & own] = (1 - wanted) * (lines + others) / others
    return weights


Judged = tuple[np.ndarray, np.ndarray, np.ndarray]  # scores, novelty and true labels of the same items


def chooser(guard: Judged, line: Judged) -> tuple[Judged, list[np.ndarray] | None]:
    """Scores, novelty, labels and groups the thresholds are chosen on: the line's validation crops join the
    guard photos, one photo each, and the wrong-lane target holds on the guard alone as well as on all together.

    One photo each, because a handful of crops cannot measure a 1 % rate: weighted up, a single confident
    mistake among ten crops forced thresholds to 0.96 and cost the line more right lanes than its own training
    won (bench/relabel.py); at their natural weight a few dozen crops move the thresholds only where the guard
    leaves room, and hundreds decide them. The guard's own target keeps the shops' wrong lanes where they were.
    """
    if not len(line[2]):
        return guard, None
    in_guard = np.arange(len(guard[2]) + len(line[2])) < len(guard[2])
    joined = tuple(np.concatenate([ours, theirs]) for ours, theirs in zip(guard, line, strict=True))
    return joined, [in_guard, np.ones_like(in_guard)]  # type: ignore[return-value]


def wilson(hits: int, total: int, z: float = 1.96) -> list[float]:
    """95 % interval of a share seen as `hits` of `total` (Wilson's, sound for a handful of crops)."""
    if not total:
        return [0.0, 1.0]
    p = hits / total
    middle = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [round(float(max(0.0, middle - half)), 4), round(float(min(1.0, middle + half)), 4)]


def judged(decided: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> dict:
    """Right / reject / wrong shares and counts at `thresholds` (per label), with 95 % intervals for right and
    wrong: on a few dozen crops a point is not a point."""
    row = calibration.outcomes(decided, y, thresholds) if len(y) else {"right": 0.0, "reject": 0.0, "wrong": 0.0}
    counts = {key: round(row[key] * len(y)) for key in ("right", "reject", "wrong")}
    return {
        "images": len(y),
        **{key: row[key] for key in ("right", "reject", "wrong")},
        "counts": counts,
        "right_95": wilson(counts["right"], len(y)),
        "wrong_95": wilson(counts["wrong"], len(y)),
    }


def outcome(row: dict) -> Outcome:
    return Outcome(**{key: row["counts"][key] for key in ("right", "reject", "wrong")})


def worse(candidate: dict, live: dict) -> bool:
    """The candidate's decisions cost more than the live model's on the same items (`Outcome.worse_than`, the
    daemon's rule when it judges a reload on the held-back crops), each at its own thresholds."""
    return outcome(candidate).worse_than(outcome(live))


def worse_elsewhere(candidate: dict, live: dict, names: dict[str, str]) -> dict[str, str]:
    """Where, off the line, the candidate does worse than the live model (`worse`): set -> what was seen. A loop
    that helps its line must not cost the shop's other items (`names`: set key -> how to call it). Worse is
    costlier: fewer wrong lanes for a few more rejects is the trade a line wants, and is not worse."""
    found = {}
    for key, name in names.items():
        if key not in candidate or key not in live or not candidate[key]["images"]:
            continue
        c, lv = candidate[key], live[key]
        if worse(c, lv):
            found[key] = (
                f"{name}: right {100 * lv['right']:.1f} -> {100 * c['right']:.1f} %,"
                f" wrong {100 * lv['wrong']:.1f} -> {100 * c['wrong']:.1f} %"
            )
    return found


def line_name(folders: list[Path]) -> str:
    """The line the crops came from, as the page's export names it in `LINE_MARKER` (else the folder's name)."""
    for folder in folders:
        try:
            return str(json.loads((folder / LINE_MARKER).read_text(encoding="utf-8")).get("line") or folder.name)
        except (OSError, ValueError, AttributeError):
            continue
    return folders[0].name if folders else ""


def comparable_bundle(path: Path | None, labels: tuple[str, ...]) -> ModelBundle | None:
    """The bundle at `path` if it has these labels in this order (else None, and why in the log)."""
    if path is None:
        return None
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        log.warning("cannot judge the candidate against %s: %s", path, exc)
        return None
    if bundle.labels != labels:
        log.warning("cannot judge the candidate against %s: its labels %s are not %s", path, bundle.labels, labels)
        return None
    return bundle
