"""Scores people can set a reject threshold on: temperature scaling, ECE, risk-coverage, the recommended threshold.

A fine-tuned network's softmax is over-confident on photos unlike its training shop's, so a fixed
threshold rejects too little where it matters. One temperature T, fitted on validation scores by
log-likelihood, softens (T > 1) or sharpens the scores without changing any top-1 answer; the trainer
divides the last layer by T, so the exported model's scores are the calibrated ones and the edge
applies nothing. The recommended threshold is then read off the risk-coverage table of validation
scores: among the thresholds whose wrong-lane rate stays within the target, the one whose decisions cost least,
a wrong lane costing `edge.decision.WRONG_LANE_COST` rejects. "Fewest rejects within the target" spent the
whole allowance: it kept a 0.9 % wrong lane to save one reject over 0.2 %, and a new source's wrong lanes came
in at the edge.

Classes do not meet each other alike: out of domain nearly every wrong lane is trousers sent to jeans, so one
threshold for all labels rejects good saree to stop bad jeans. `recommend_per_label` chooses one threshold per
predicted label with the same target. Both are judged by `leave_one_source_out`: a threshold chosen on the
photos it is then scored on says nothing about the next source.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from edge.decision import decision_cost

THRESHOLDS = np.round(np.arange(0.34, 1.0, 0.01), 2)  # below 1/3 a 3-class top score cannot fall
NOVELTY_LIMITS = np.round(np.arange(0.2, 1.01, 0.1), 2)  # per top label, shares of the bundle's familiarity limit
_EPS = 1e-7


def unfamiliar(scores: np.ndarray, novelty: np.ndarray, limits: np.ndarray | None = None) -> np.ndarray:
    """Which items the familiarity check rejects: novelty above their top label's limit in `limits` (else above
    1). A NaN novelty (a bundle without the check) is never unfamiliar."""
    limit = 1.0 if limits is None else np.asarray(limits)[scores.argmax(axis=1)]
    return novelty > limit


def as_decided(scores: np.ndarray, novelty: np.ndarray, limits: np.ndarray | None = None) -> np.ndarray:
    """Scores as the lanes see them: an unfamiliar item's (`unfamiliar`) are zero, so no threshold sends it to a
    lane."""
    return np.where(unfamiliar(scores, novelty, limits)[:, None], 0.0, scores)


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


class OperatingPoint(NamedTuple):
    """Per top label: the reject threshold, and how far (a share of the bundle's familiarity limit) an item
    may lie from the training images before it is `unfamiliar`."""

    thresholds: np.ndarray
    novelty_limits: np.ndarray


def recommend_per_label(
    scores: np.ndarray,
    y: np.ndarray,
    max_wrong: float,
    groups: list[np.ndarray] | None = None,
    novelty: np.ndarray | None = None,
) -> OperatingPoint:
    """One threshold per label (applied to items whose top label it is) and, with `novelty`, one familiarity
    limit per label (`NOVELTY_LIMITS`): the cheapest decisions (a wrong lane costs `WRONG_LANE_COST` rejects)
    with at most `max_wrong` wrong lane over all items, or within each of `groups` (masks over the items) when
    given; if no combination is within it, the fewest wrong (then the fewest rejects).

    Labels do not interact (an item is judged by its top label's rule alone), so each label's options (limit,
    threshold) are tabled once, those another option beats on every count are dropped, and the labels are then
    combined one at a time (`_combine`), keeping per count of wrong lanes only the best partial choice: the work
    grows with the number of labels, not with the number of combinations (six labels of noisy scores had
    ~10^11 of them). On a tie the loosest limits and the lowest thresholds win."""
    top, confidence, wrong = scores.argmax(axis=1), scores.max(axis=1), scores.argmax(axis=1) != y
    labels = scores.shape[1]
    limits = np.ones(1) if novelty is None else NOVELTY_LIMITS[::-1]
    distance = np.zeros(len(y)) if novelty is None else np.nan_to_num(novelty, nan=0.0)  # NaN: no check
    option_limit, option_threshold = np.repeat(limits, len(THRESHOLDS)), np.tile(THRESHOLDS, len(limits))
    lane = (confidence[None, :] >= option_threshold[:, None]) & (distance[None, :] <= option_limit[:, None])
    bounded = groups or [np.ones(len(y), bool)]  # the sets whose wrong lanes `max_wrong` bounds
    caps = [int(np.floor(max_wrong * group.sum() + 1e-9)) for group in bounded]
    counted = [np.ones(len(y), bool), wrong, *(wrong & group for group in bounded)]
    tables = []
    for k in range(labels):
        table = np.stack([(lane & (items & (top == k))[None]).sum(1) for items in counted], axis=1)
        kept = _undominated(table)
        tables.append((kept, table[kept]))
    allowed = _combine(tables, caps)
    within = bool(allowed)  # if no combination is within the target, every one is judged without it

    def rank(found: tuple[tuple[int, ...], Partial]) -> tuple:
        """Within the target the cheapest; else the fewest wrong, then the fewest rejects; then the preferred
        options (the smallest sum of option indices, then the earliest labels' first)."""
        (wrong, *_), (lanes, order, chosen) = found
        return (decision_cost(wrong, len(y) - lanes) if within else (wrong, len(y) - lanes), order, chosen)

    _, (_, _, chosen) = min((allowed if within else _combine(tables, [])).items(), key=rank)
    picked = np.array(chosen)
    return OperatingPoint(option_threshold[picked], option_limit[picked])


Partial = tuple[int, int, tuple[int, ...]]  # lanes, sum of option indices, option index per label so far


def _combine(tables: list[tuple[np.ndarray, np.ndarray]], caps: list[int]) -> dict[tuple[int, ...], Partial]:
    """Every label's options (indices; rows of counts: lanes, wrong, then the wrong lanes that `caps` bound)
    combined a label at a time. State: total wrong and the bound counts; for each, only the best partial choice
    (most lanes, then the smallest index sum, then the earliest labels' first options) is kept, and states beyond
    a cap are dropped. Exact: two partial choices in one state differ only in lanes and preference, and every
    later label adds the same to both."""
    states: dict[tuple[int, ...], Partial] = {(0,) * (1 + len(caps)): (0, 0, ())}
    for kept, table in tables:
        grown: dict[tuple[int, ...], Partial] = {}
        for state, (lanes, order, chosen) in states.items():
            for index, (row_lanes, row_wrong, *bound) in zip(kept.tolist(), table.tolist(), strict=True):
                counts = [c + b for c, b in zip(state[1:], bound, strict=False)]
                if any(c > cap for c, cap in zip(counts, caps, strict=True)):
                    continue
                new = (state[0] + row_wrong, *counts)
                value = (lanes + row_lanes, order + index, (*chosen, index))
                held = grown.get(new)
                if held is None or (-value[0], *value[1:]) < (-held[0], *held[1:]):
                    grown[new] = value
        states = grown
    return states


def _undominated(table: np.ndarray) -> np.ndarray:
    """Rows (options, in order of preference) of `table` (lanes, then wrong-lane counts) that no other row
    beats: one with at least as many lanes and at most as many wrong in every count, and more lanes or fewer
    wrong lanes in all, or earlier. Dropping those cannot change the best combination."""
    lanes, wrongs = table[:, 0], table[:, 1:]
    as_good = (lanes[:, None] >= lanes[None, :]) & np.all(wrongs[:, None, :] <= wrongs[None, :, :], axis=2)
    better = (lanes[:, None] > lanes[None, :]) | (wrongs[:, None, 0] < wrongs[None, :, 0])
    earlier = np.arange(len(table))[:, None] < np.arange(len(table))[None, :]
    beaten = (as_good & (better | earlier)).any(axis=0)  # [j, i]: row j beats row i
    return np.flatnonzero(~beaten)


def operating_point(
    scores: np.ndarray,
    y: np.ndarray,
    max_wrong: float,
    groups: list[np.ndarray] | None = None,
    novelty: np.ndarray | None = None,
) -> tuple[OperatingPoint, float]:
    """The trainer's rule on these items: the thresholds and familiarity limits per label (limits all 1 without
    `novelty`), and the one threshold for all labels that would do the same, chosen on scores those limits have
    already decided, as the daemon applies the bundle's limits whatever its thresholds."""
    point = recommend_per_label(scores, y, max_wrong, groups=groups, novelty=novelty)
    decided = scores if novelty is None else as_decided(scores, novelty, point.novelty_limits)
    return point, recommend_threshold(decided, y, max_wrong, groups=groups)


def leave_one_source_out(
    scores: np.ndarray,
    y: np.ndarray,
    sources: list[str],
    max_wrong: float,
    per_label: bool,
    novelty: np.ndarray | None = None,
) -> dict | None:
    """Each source scored as a new one: the threshold(s), and with `novelty` the familiarity limits per label,
    chosen on all the other sources (`operating_point`), applied to it.

    Returns the per-source rows and the pooled shares, or None with fewer than two sources (nothing to hold out).
    """
    names, held = sorted(set(sources)), np.asarray(sources)
    if len(names) < 2:
        return None
    rows, counts = {}, np.zeros(3)
    for name in names:
        out = held == name
        point, one = operating_point(
            scores[~out], y[~out], max_wrong, novelty=None if novelty is None else novelty[~out]
        )
        judged = scores[out] if novelty is None else as_decided(scores[out], novelty[out], point.novelty_limits)
        row = outcomes(judged, y[out], point.thresholds if per_label else one)
        rows[name] = row | {"images": int(out.sum()), "novelty_limits": [float(v) for v in point.novelty_limits]}
        counts += int(out.sum()) * np.array([row["right"], row["reject"], row["wrong"]])
    pooled = dict(zip(("right", "reject", "wrong"), (round(float(c / len(y)), 4) for c in counts), strict=True))
    return {"per_label": per_label, "all": pooled | {"images": len(y)}, "sources": rows}
