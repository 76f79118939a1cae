"""Scores people can set a reject threshold on: temperature scaling, ECE, risk-coverage, the recommended threshold.

A fine-tuned network's softmax is over-confident on photos unlike its training shop's, so a fixed
threshold rejects too little where it matters. One temperature T, fitted on validation scores by
log-likelihood, softens (T > 1) or sharpens the scores without changing any top-1 answer; the trainer
divides the last layer by T, so the exported model's scores are the calibrated ones and the edge
applies nothing. The recommended threshold is then read off the risk-coverage table of validation
scores: the lowest threshold whose wrong-lane rate stays within the target (a reject is cheaper).
"""

from __future__ import annotations

import itertools

import numpy as np

THRESHOLDS = np.round(np.arange(0.34, 1.0, 0.01), 2)  # below 1/3 a 3-class top score cannot fall
_EPS = 1e-7


def with_temperature(scores: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) from softmax outputs: p^(1/T), renormalised (logits are log p up to a constant)."""
    logits = np.log(np.clip(scores, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def nll(scores: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(scores[np.arange(len(y)), y], _EPS, 1.0)).mean())


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.25, 8] with the lowest validation log-loss (coarse log grid, then a fine one around it)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    best = grid[int(np.argmin([nll(with_temperature(scores, t), y) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return round(float(fine[int(np.argmin([nll(with_temperature(scores, t), y) for t in fine]))]), 3)


def expected_calibration_error(scores: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by how many fall in each."""
    confidence, right = scores.max(axis=1), scores.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return round(float(total), 4)


def outcomes(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """Shares of items sent to the right lane, to reject, and to a wrong lane at `threshold`."""
    confident = scores.max(axis=1) >= threshold
    right = scores.argmax(axis=1) == y
    return {
        "threshold": float(threshold),
        "right": round(float(np.mean(confident & right)), 4),
        "reject": round(float(np.mean(~confident)), 4),
        "wrong": round(float(np.mean(confident & ~right)), 4),
    }


def risk_coverage(scores: np.ndarray, y: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> list[dict[str, float]]:
    return [outcomes(scores, y, t) for t in thresholds]


def recommend_threshold(scores: np.ndarray, y: np.ndarray, max_wrong: float) -> float:
    """The lowest threshold whose wrong-lane share is at most `max_wrong`; if none is, the one with fewest
    wrong (on a tie the highest: a reject is cheaper than a wrong lane)."""
    table = risk_coverage(scores, y)
    within = [row for row in table if row["wrong"] <= max_wrong]
    if within:
        return within[0]["threshold"]
    return min(table, key=lambda row: (row["wrong"], -row["threshold"]))["threshold"]
