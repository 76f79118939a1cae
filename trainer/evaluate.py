"""Scores from exported models through the edge's own `Classifier`, metrics, and the int8 parity gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge import familiarity
from edge.bundle import Familiarity, ModelBundle, load_bundle
from edge.classifier import Classifier
from edge.config import ModelSettings
from edge.decision import Thresholds
from edge.preprocess import decode_image, fit_to_input
from trainer import calibration, line


class ParityError(RuntimeError):
    """The int8 model does not behave like the float32 one; it must not be shipped."""


@dataclass
class CandidateScores:
    """The exported models' scores where they are judged, and the operating point read off them."""

    test_int8: np.ndarray
    test_float32: np.ndarray
    ood_int8: np.ndarray
    test_novelty: np.ndarray  # distance from the training images / the familiarity limit (> 1: unfamiliar)
    ood_novelty: np.ndarray
    threshold: float  # one for every label
    thresholds: dict[str, float]  # one per top label, chosen the same way
    novelty_limits: dict[str, float]  # per top label, a share of the familiarity limit (chosen with `thresholds`)
    chosen_on: str
    parity: dict
    familiar: tuple[bytes, Familiarity]  # what the bundle stores for the check
    loso: dict[str, dict | None]  # "one" / "per_label": each out-of-domain source judged as if left out

    @property
    def limits(self) -> np.ndarray:
        return np.array(list(self.novelty_limits.values()))

    @property
    def ood_decided(self) -> np.ndarray:
        return calibration.as_decided(self.ood_int8, self.ood_novelty, self.limits)

    @property
    def test_decided(self) -> np.ndarray:
        return calibration.as_decided(self.test_int8, self.test_novelty, self.limits)


Labelled = tuple[list[Path], np.ndarray]  # image files and their label indices
FAMILIAR_PERCENTILE = 99  # of the training folders' own validation photos: 1 in 100 is as far as an item may be


def score_candidate(
    int8_dir: Path,
    float_dir: Path,
    labels: tuple[str, ...],
    *,
    train: list[Path],
    test: Labelled,
    ood: Labelled,
    ood_sources: list[str],
    val: Labelled,
    max_wrong_lane: float,
    threads: int,
    line_val: np.ndarray | None = None,
) -> CandidateScores:
    """Score the int8 candidate and its float32 twin on the test split and the out-of-domain photos; fit the
    familiarity check (the training images' int8 embeddings; its limit from the validation split); choose the
    thresholds, and the familiarity limits per top label, where the line is (the out-of-domain photos when there
    are any, else the validation split), and judge that choice leaving each out-of-domain source out in turn;
    measure parity on test and OOD together: on 113 test images alone one flipped near-tie is a whole point. The
    line's own validation crops (`line_val`, a mask over `val`) choose the thresholds together with those photos
    (`trainer.line.chooser`)."""
    checked, n_test, n_val = test[0] + ood[0], len(test[0]), len(val[0])
    scored, embedded = bundle_outputs(int8_dir, checked + val[0] + train, threads, "evaluate int8 tflite")
    float_all, _ = bundle_outputs(float_dir, checked, threads, "evaluate float32 tflite")
    reference = familiarity.as_stored(embedded[len(checked) + n_val :])  # novelty exactly as the edge reads it
    val_distance = familiarity.nearest_distances(reference, embedded[len(checked) : len(checked) + n_val])
    # a collapsed embedding (all alike) has no spread to take a percentile of
    limit = familiarity.as_stored_limit(max(float(np.percentile(val_distance, FAMILIAR_PERCENTILE)), 1e-3))
    novelty = familiarity.nearest_distances(reference, embedded[: len(checked)]) / limit
    int8_all = scored[: len(checked)]
    test_int8, ood_int8 = int8_all[:n_test], int8_all[n_test:]
    test_novelty, ood_novelty = novelty[:n_test], novelty[n_test:]
    line_val = np.zeros(n_val, bool) if line_val is None else line_val
    val_scored = (scored[len(checked) : len(checked) + n_val], val_distance / limit, val[1])
    if ood[0]:
        guard, chosen_on = (ood_int8, ood_novelty, ood[1]), "out-of-domain validation"
    else:
        guard, chosen_on = tuple(part[~line_val] for part in val_scored), "in-domain validation split"
    (scores, novelty_seen, y), groups = line.chooser(guard, tuple(part[line_val] for part in val_scored))
    if line_val.any():
        chosen_on = f"the line's {int(line_val.sum())} validation crops with the {chosen_on} (and on that alone)"
    point, threshold = calibration.operating_point(scores, y, max_wrong_lane, groups=groups, novelty=novelty_seen)
    limits = {label: float(share) for label, share in zip(labels, point.novelty_limits, strict=True)}
    limit_note = f"{FAMILIAR_PERCENTILE}th percentile of the in-domain validation split ({n_val} images)"
    return CandidateScores(
        test_int8=test_int8,
        test_float32=float_all[:n_test],
        ood_int8=ood_int8,
        test_novelty=test_novelty,
        ood_novelty=ood_novelty,
        threshold=threshold,
        thresholds={label: float(t) for label, t in zip(labels, point.thresholds, strict=True)},
        novelty_limits=limits,
        chosen_on=chosen_on,
        parity=parity(np.concatenate([test[1], ood[1]]), float_all, int8_all, threshold),
        familiar=familiarity.describe(reference, limit, limit_note, per_label=limits),
        loso={
            name: calibration.leave_one_source_out(
                ood_int8, ood[1], ood_sources, max_wrong_lane, per_label=flag, novelty=ood_novelty
            )
            for name, flag in (("one", False), ("per_label", True))
        },
    )


def bundle_assessed(bundle: ModelBundle, images: list[Path], threads: int) -> tuple[np.ndarray, np.ndarray, Thresholds]:
    """Scores and novelty (NaN without the check) from any bundle, and the thresholds the daemon would apply."""
    scores, novelty = [], []
    classifier = Classifier(bundle, threads=threads)
    for path in tqdm(images, desc=f"evaluate {bundle.metadata.model_id}", unit="img"):
        assessment = classifier.assess(decode_image(str(path)))
        scores.append(assessment.scores)
        novelty.append(np.nan if assessment.novelty is None else assessment.novelty)
    stacked = np.stack(scores) if scores else np.zeros((0, len(bundle.labels)))
    return stacked, np.array(novelty), Thresholds.resolve(ModelSettings(), bundle.metadata)


def bundle_decided(bundle: ModelBundle, images: list[Path], threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores as the lanes see them (unfamiliar ones zeroed) from any bundle, and the per-label thresholds the
    daemon would apply to them: how a bundle already on the line is judged beside a candidate."""
    scores, novelty, thresholds = bundle_assessed(bundle, images, threads)
    per_label = np.array([thresholds.for_label(label) for label in bundle.labels])
    limits = np.array([thresholds.novelty_limit(label) for label in bundle.labels])
    return calibration.as_decided(scores, novelty, limits), per_label


def ood_metrics(y_ood: np.ndarray, scores: np.ndarray, styles: list[str], labels: tuple[str, ...]) -> dict:
    """Out-of-domain accuracy overall, per class and per "label/style" group."""
    predicted = scores.argmax(1)
    groups = [f"{labels[y]}/{style}" for y, style in zip(y_ood, styles, strict=True)]
    return classification_metrics(y_ood, predicted, labels) | {"per_style": accuracy_by(y_ood, predicted, groups)}


def bundle_outputs(bundle_dir: Path, images: list[Path], threads: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """(len(images), labels) scores and (len(images), width) embeddings, each image decoded and fitted exactly as
    the edge daemon does (a single-output model's embeddings are empty)."""
    classifier = Classifier(load_bundle(bundle_dir), threads=threads)
    scores, embeddings = [], []
    for path in tqdm(images, desc=desc, unit="img"):
        pixels = fit_to_input(decode_image(str(path)), classifier.bundle.metadata.input)
        score, embedding = classifier.outputs_pixels(pixels)
        scores.append(score)
        embeddings.append(np.zeros(0, np.float32) if embedding is None else embedding)
    return np.stack(scores), np.stack(embeddings)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true, cols: predicted)."""
    n = len(labels)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(confusion[i].sum()),
        }
    return {
        "accuracy": round(float(np.mean(y_true == y_pred)), 4),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def accuracy_by(y_true: np.ndarray, y_pred: np.ndarray, groups: list[str]) -> dict[str, dict[str, float]]:
    """Top-1 accuracy and count per group (e.g. "jeans/flat-lay"), sorted by group name."""
    keys = np.array(groups)
    return {
        key: {"accuracy": round(float(np.mean(y_pred[keys == key] == y_true[keys == key])), 4),
              "images": int(np.sum(keys == key))}
        for key in sorted(set(groups))
    }  # fmt: skip


def reject_summary(
    scores: np.ndarray, novelty: np.ndarray, y_true: np.ndarray, thresholds: float | np.ndarray, limits: np.ndarray
) -> dict[str, float]:
    """Right / reject / wrong-lane shares at the threshold(s) with the familiarity check (`limits` per top label),
    how many the check rejected, and how well the scores are calibrated (ECE)."""
    return calibration.outcomes(calibration.as_decided(scores, novelty, limits), y_true, thresholds) | {
        "unfamiliar": round(float(np.mean(calibration.unfamiliar(scores, novelty, limits))), 4),
        "ece": calibration.expected_calibration_error(scores, y_true),
        "images": len(y_true),
    }


def by_source(
    scores: np.ndarray,
    novelty: np.ndarray,
    y_true: np.ndarray,
    sources: list[str],
    thresholds: np.ndarray,
    limits: np.ndarray,
) -> dict[str, dict]:
    """Right / reject / wrong (with the familiarity check, `limits` per top label) and top-1 (of the scores
    alone) per source: an out-of-domain source, or a training data folder."""
    keys = np.array(sources)
    decided = calibration.as_decided(scores, novelty, limits)
    return {
        source: calibration.outcomes(decided[keys == source], y_true[keys == source], thresholds)
        | {"accuracy": round(float(np.mean(scores[keys == source].argmax(1) == y_true[keys == source])), 4),
           "images": int(np.sum(keys == source))}
        for source in sorted(set(sources))
    }  # fmt: skip


def wrong_lanes(
    decided: np.ndarray, y_true: np.ndarray, thresholds: np.ndarray, labels: tuple[str, ...], files: list[str]
) -> dict:
    """Which pairs of labels meet: per (true, predicted) pair, the items sent to the wrong lane at the thresholds
    and the confidence of each, with its photo, most confident first."""
    top, confidence = decided.argmax(1), decided.max(1)
    to_lane = confidence >= thresholds[top]
    pairs: dict[str, list[dict]] = {}
    for i in np.flatnonzero(to_lane & (top != y_true)):
        pair = f"{labels[y_true[i]]} -> {labels[top[i]]}"
        pairs.setdefault(pair, []).append({"file": files[i], "confidence": round(float(confidence[i]), 4)})
    return {pair: sorted(rows, key=lambda r: -r["confidence"]) for pair, rows in sorted(pairs.items())}


def parity(y_true: np.ndarray, float_scores: np.ndarray, int8_scores: np.ndarray, threshold: float) -> dict:
    """How faithful int8 is to float32. `lane_agreement` is what the gate holds to: of the items int8 sends
    to a lane (top score >= threshold), the share float32 gives the same label. Flips among items int8
    rejects anyway are near-ties of the float model itself and cost no wrong lane."""
    float_pred, int8_pred = float_scores.argmax(1), int8_scores.argmax(1)
    to_lane = int8_scores.max(1) >= threshold
    return {
        "float32_accuracy": round(float(np.mean(float_pred == y_true)), 4),
        "int8_accuracy": round(float(np.mean(int8_pred == y_true)), 4),
        "top1_agreement": round(float(np.mean(float_pred == int8_pred)), 4),
        "lane_agreement": round(float(np.mean(float_pred[to_lane] == int8_pred[to_lane])) if to_lane.any() else 1.0, 4),
        "lane_items": int(to_lane.sum()),
        "threshold": threshold,
        "max_abs_score_difference": round(float(np.abs(float_scores - int8_scores).max()), 4),
        "images": len(y_true),
    }


def check_parity(result: dict, max_accuracy_drop: float, min_agreement: float) -> None:
    """Raise ParityError unless int8 accuracy is within `max_accuracy_drop` points and agreement is high enough."""
    drop = 100 * (result["float32_accuracy"] - result["int8_accuracy"])
    problems = []
    if drop > max_accuracy_drop + 1e-9:
        problems.append(
            f"int8 accuracy {result['int8_accuracy']:.2%} is {drop:.1f} points below float32 "
            f"{result['float32_accuracy']:.2%} (allowed: {max_accuracy_drop} points)"
        )
    if result["lane_agreement"] < min_agreement:
        problems.append(
            f"of the {result['lane_items']} images int8 sends to a lane (score >= {result['threshold']:g}), float32 "
            f"gives the same label to only {result['lane_agreement']:.2%} (required: {min_agreement:.0%})"
        )
    if result.get("float32_tflite_max_difference", 0.0) > 0.01:
        problems.append(
            f"the float32 TFLite model differs from Keras by {result['float32_tflite_max_difference']} in score"
        )
    if problems:
        raise ParityError(
            "int8 parity gate failed: "
            + "; ".join(problems)
            + ". Check the calibration images (real, class-balanced, prepared like camera crops)."
        )
