"""Scores from exported models through the edge's own `Classifier`, metrics, and the int8 parity gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.preprocess import decode_image
from trainer import calibration


class ParityError(RuntimeError):
    """The int8 model does not behave like the float32 one; it must not be shipped."""


@dataclass
class CandidateScores:
    """The exported models' scores where they are judged, and the reject threshold read off them."""

    test_int8: np.ndarray
    test_float32: np.ndarray
    ood_int8: np.ndarray
    threshold: float
    chosen_on: str
    parity: dict


Labelled = tuple[list[Path], np.ndarray]  # image files and their label indices


def score_candidate(
    int8_dir: Path,
    float_dir: Path,
    *,
    test: Labelled,
    ood: Labelled,
    val: Labelled,
    max_wrong_lane: float,
    threads: int,
) -> CandidateScores:
    """Score the int8 candidate and its float32 twin on the test split and the out-of-domain photos, choose the
    threshold where the line is (the out-of-domain photos when there are any, else the validation split) and
    measure parity on test and OOD together: on 113 test images alone one flipped near-tie is a whole point."""
    checked = test[0] + ood[0]
    int8_all = bundle_scores(int8_dir, checked, threads, "evaluate int8 tflite")
    float_all = bundle_scores(float_dir, checked, threads, "evaluate float32 tflite")
    test_int8, ood_int8 = int8_all[: len(test[0])], int8_all[len(test[0]) :]
    if ood[0]:
        chooser, chooser_y, chosen_on = ood_int8, ood[1], "out-of-domain validation"
    else:
        chooser = bundle_scores(int8_dir, val[0], threads, "evaluate int8 validation")
        chooser_y, chosen_on = val[1], "in-domain validation split"
    threshold = calibration.recommend_threshold(chooser, chooser_y, max_wrong_lane)
    return CandidateScores(
        test_int8=test_int8,
        test_float32=float_all[: len(test[0])],
        ood_int8=ood_int8,
        threshold=threshold,
        chosen_on=chosen_on,
        parity=parity(np.concatenate([test[1], ood[1]]), float_all, int8_all, threshold),
    )


def ood_metrics(y_ood: np.ndarray, scores: np.ndarray, styles: list[str], labels: tuple[str, ...]) -> dict:
    """Out-of-domain accuracy overall, per class and per "label/style" group."""
    predicted = scores.argmax(1)
    groups = [f"{labels[y]}/{style}" for y, style in zip(y_ood, styles, strict=True)]
    return classification_metrics(y_ood, predicted, labels) | {"per_style": accuracy_by(y_ood, predicted, groups)}


def bundle_scores(bundle_dir: Path, images: list[Path], threads: int, desc: str) -> np.ndarray:
    """(len(images), labels) scores, each image decoded and classified exactly as the edge daemon does."""
    classifier = Classifier(load_bundle(bundle_dir), threads=threads)
    return np.stack([classifier.classify(decode_image(str(p))) for p in tqdm(images, desc=desc, unit="img")])


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


def reject_summary(scores: np.ndarray, y_true: np.ndarray, threshold: float) -> dict[str, float]:
    """Right / reject / wrong-lane shares at the threshold, and how well the scores are calibrated (ECE)."""
    return calibration.outcomes(scores, y_true, threshold) | {
        "ece": calibration.expected_calibration_error(scores, y_true),
        "images": len(y_true),
    }


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
