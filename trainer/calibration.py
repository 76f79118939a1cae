"""Scores people can set a reject threshold on: temperature scaling, ECE, risk-coverage, the recommended threshold.

A fine-tuned network's softmax is over-confident on photos unlike its training shop's, so a fixed
threshold rejects too little where it matters. One temperature T, fitted on validation scores by
log-likelihood, softens (T > 1) or sharpens the scores without changing any top-1 answer; the trainer
divides the last layer by T, so the exported model's scores are the calibrated ones and the edge
applies nothing. The recommended threshold is then read off the risk-coverage table of validation
scores: among the thresholds whose wrong-lane rate stays within the target, the one whose decisions cost least,
a wrong lane costing `WRONG_LANE_COST` rejects. "Fewest rejects within the target" spent the whole allowance:
it kept a 0.9 % wrong lane to save one reject over 0.2 %, and a new source's wrong lanes came in at the edge.

Classes do not meet each other alike: out of domain nearly every wrong lane is trousers sent to jeans, so one
threshold for all labels rejects good saree to stop bad jeans. `recommend_per_label` chooses one threshold per
predicted label with the same target. Both are judged by `leave_one_source_out`: a threshold chosen on the
photos it is then scored on says nothing about the next source.
"""

from __future__ import annotations

import itertools

import numpy as np

THRESHOLDS = np.round(np.arange(0.34, 1.0, 0.01), 2)  # below 1/3 a 3-class top score cannot fall
WRONG_LANE_COST = 10  # a wrong lane costs as much as this many rejects: a mis-sorted item is found downstream
_EPS = 1e-7


def decision_cost(wrong: int | np.ndarray, reject: int | np.ndarray) -> int | np.ndarray:
    """What decisions cost, in rejects: a wrong lane counts `WRONG_LANE_COST`, a reject one."""
    return WRONG_LANE_COST * wrong + reject


def as_decided(scores: np.ndarray, novelty: np.ndarray) -> np.ndarray:
    """Scores as the lanes see them: an unfamiliar item's (novelty above 1) are zero, so no threshold sends it to
    a lane. A NaN novelty (a bundle without the check) leaves the scores as they are."""
    return np.where((novelty > 1.0)[:, None], 0.0, scores)


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


def outcomes(scores: np.ndarray, y: np.ndarray, threshold: float | np.ndarray) -> dict[str, float]:
    """Shares of items sent to the right lane, to reject, and to a wrong lane at `threshold` (one number, or one
    per label: the top label's applies)."""
    per_label = np.ndim(threshold) > 0
    applied = np.asarray(threshold)[scores.argmax(axis=1)] if per_label else threshold
    confident = scores.max(axis=1) >= applied
    right = scores.argmax(axis=1) == y
    return {
        "threshold": [float(t) for t in threshold] if per_label else float(threshold),  # type: ignore[union-attr]
        "right": round(float(np.mean(confident & right)), 4),
        "reject": round(float(np.mean(~confident)), 4),
        "wrong": round(float(np.mean(confident & ~right)), 4),
    }


def risk_coverage(scores: np.ndarray, y: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> list[dict[str, float]]:
    return [outcomes(scores, y, t) for t in thresholds]


def recommend_threshold(
    scores: np.ndarray, y: np.ndarray, max_wrong: float, groups: list[np.ndarray] | None = None
) -> float:
    """Of the thresholds whose wrong-lane share is at most `max_wrong` (in each of `groups`, masks over the
    items, when given), the cheapest (`WRONG_LANE_COST`; on a tie the lowest); if none is within it, the one with
    fewest wrong (on a tie the highest: a reject is cheaper)."""
    wrong_items = scores.argmax(axis=1) != y
    above = scores.max(axis=1)[None, :] >= THRESHOLDS[:, None]  # (thresholds, items)
    within = np.ones(len(THRESHOLDS), bool)
    for group in groups or [np.ones(len(y), bool)]:
        within &= (above & (wrong_items & group)[None]).sum(1) <= max_wrong * group.sum() + 1e-9
    total_wrong = (above & wrong_items[None]).sum(1)
    if within.any():
        cost = np.where(within, decision_cost(total_wrong, len(y) - above.sum(1)), np.inf)
        return float(THRESHOLDS[int(np.argmin(cost))])
    return float(THRESHOLDS[int(np.lexsort((-THRESHOLDS, total_wrong))[0])])


def recommend_per_label(
    scores: np.ndarray, y: np.ndarray, max_wrong: float, groups: list[np.ndarray] | None = None
) -> np.ndarray:
    """One threshold per label (applied to items whose top label it is): the cheapest decisions (a wrong lane
    costs `WRONG_LANE_COST` rejects) with at most `max_wrong` wrong lane over all items, or within each of
    `groups` (masks over the items) when given; if no combination is within it, the fewest wrong (then the
    fewest rejects). Labels do not interact (an item is judged by its top label's threshold alone), so every
    combination of the labels' risk-coverage tables is scored at once."""
    top, confidence, right = scores.argmax(axis=1), scores.max(axis=1), scores.argmax(axis=1) == y
    labels = scores.shape[1]
    above = confidence[None, :] >= THRESHOLDS[:, None]  # (thresholds, items)
    grid = np.indices((len(THRESHOLDS),) * labels).reshape(labels, -1)  # every combination

    def per_combination(items: np.ndarray) -> np.ndarray:
        """How many of `items` (a mask) go to a lane, for every combination of thresholds."""
        table = np.stack([(above & (items & (top == k))[None]).sum(1) for k in range(labels)])  # (labels, thr)
        return sum(table[k, grid[k]] for k in range(labels))

    total_reject = len(y) - per_combination(np.ones(len(y), bool))
    total_wrong = per_combination(~right)
    within = np.ones(grid.shape[1], bool)
    for group in groups or [np.ones(len(y), bool)]:
        within &= per_combination(~right & group) <= max_wrong * group.sum() + 1e-9
    # Allowed combinations first, the cheapest of them; if none is allowed, the fewest wrong, then the fewest
    # rejects; on a tie the lowest thresholds. (np.lexsort sorts by its last key first.)
    first = np.where(within, decision_cost(total_wrong, total_reject), total_wrong)
    then = np.where(within, 0, total_reject)
    best = grid[:, int(np.lexsort((grid.sum(0), then, first, ~within))[0])]
    return THRESHOLDS[best]


def leave_one_source_out(
    scores: np.ndarray, y: np.ndarray, sources: list[str], max_wrong: float, per_label: bool
) -> dict | None:
    """Each source scored as a new one: the threshold(s) chosen on all the other sources, applied to it.

    Returns the per-source rows and the pooled shares, or None with fewer than two sources (nothing to hold out).
    """
    names, held = sorted(set(sources)), np.asarray(sources)
    if len(names) < 2:
        return None
    choose = recommend_per_label if per_label else recommend_threshold
    rows, counts = {}, np.zeros(3)
    for name in names:
        out = held == name
        row = outcomes(scores[out], y[out], choose(scores[~out], y[~out], max_wrong))
        rows[name] = row | {"images": int(out.sum())}
        counts += int(out.sum()) * np.array([row["right"], row["reject"], row["wrong"]])
    pooled = dict(zip(("right", "reject", "wrong"), (round(float(c / len(y)), 4) for c in counts), strict=True))
    return {"per_label": per_label, "all": pooled | {"images": len(y)}, "sources": rows}
