"""Temperature scaling, ECE and the recommended reject threshold, on scores whose truth is known."""

from __future__ import annotations

import itertools

import numpy as np

from edge.decision import decision_cost
from trainer import calibration
from trainer.line import chooser


def _calibrated_sample(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are exactly calibrated: each label is drawn from its own score vector."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 3))
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in scores])
    return scores, y


def test_temperature_undoes_overconfidence():
    scores, y = _calibrated_sample()
    overconfident = calibration.with_temperature(scores, 1 / 2.5)  # logits x 2.5
    temperature = calibration.fit_temperature(overconfident, y)
    assert 2.2 < temperature < 2.8
    fixed = calibration.with_temperature(overconfident, temperature)
    assert calibration.expected_calibration_error(fixed, y) < 0.03
    assert calibration.expected_calibration_error(overconfident, y) > 0.1
    np.testing.assert_array_equal(fixed.argmax(1), overconfident.argmax(1))  # no answer changes


def test_outcomes_split_every_item_into_right_reject_or_wrong():
    scores = np.array([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 0, 0, 2])
    row = calibration.outcomes(scores, y, 0.6)
    assert row == {"threshold": 0.6, "right": 0.5, "reject": 0.25, "wrong": 0.25}
    assert calibration.outcomes(scores, y, 0.75)["wrong"] == 0.0


def _items(*groups: tuple[float, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels from (top score, true label, how many); label 0 is every item's top label."""
    scores = [[top, (1 - top) * 0.6, (1 - top) * 0.4] for top, _, n in groups for _ in range(n)]
    return np.array(scores), np.array([label for _, label, n in groups for _ in range(n)])


def _no_check(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, novelty and labels of items from a bundle without the familiarity check (novelty NaN)."""
    return scores, np.full(len(y), np.nan), y


def test_recommended_threshold_is_the_cheapest_within_the_wrong_lane_target():
    scores, y = _calibrated_sample(seed=1)
    threshold = calibration.recommend_threshold(scores, y, max_wrong=0.05)

    def cost(t: float) -> float:
        row = calibration.outcomes(scores, y, t)
        return decision_cost(row["wrong"], row["reject"])

    allowed = [t for t in calibration.THRESHOLDS if calibration.outcomes(scores, y, t)["wrong"] <= 0.05]
    assert calibration.outcomes(scores, y, threshold)["wrong"] <= 0.05
    assert cost(threshold) == min(cost(t) for t in allowed)
    assert threshold > min(allowed)  # here the lowest threshold within the target is not the cheapest


def test_a_wrong_lane_within_the_target_is_rejected_when_that_costs_fewer_rejects_than_it_is_worth():
    """200 items, two wrong within the 1 % target. The one at 0.6 shares its score with three right items:
    rejecting the four costs less than one wrong lane, so the threshold rises past them. The one at 0.8 shares
    its score with 14 right ones: 15 rejects cost more than it, so it stays. "Fewest rejects within 1 %" kept
    both (0.34)."""
    scores, y = _items((0.95, 0, 181), (0.8, 1, 1), (0.8, 0, 14), (0.6, 1, 1), (0.6, 0, 3))
    assert calibration.recommend_threshold(scores, y, 0.01) == 0.61
    np.testing.assert_array_equal(calibration.recommend_per_label(scores, y, 0.01).thresholds, [0.61, 0.34, 0.34])
    row = calibration.outcomes(scores, y, 0.61)
    assert (row["right"], row["reject"], row["wrong"]) == (0.975, 0.02, 0.005)


def test_when_no_threshold_meets_the_target_the_fewest_wrong_wins():
    scores = np.array([[0.99, 0.005, 0.005]] * 10)
    y = np.array([1] * 10)  # confidently wrong: nothing below 1.0 rejects them
    assert calibration.recommend_threshold(scores, y, max_wrong=0.03) == calibration.THRESHOLDS[-1]


def test_the_lines_crops_join_the_guard_which_also_keeps_the_target_alone():
    """100 guard photos, one sent to a wrong lane at 0.7 (within 1 %); 24 line crops, one wrong at 0.8. Together
    that is 2 of 124: the threshold must pass one of them; the guard alone still allows its own, so the line's
    mistake sets it. Nor can many right crops let the guard's own wrong lanes through. Each wrong item shares
    its score with 20 right ones, so rejecting it always costs more than it is worth: only the target moves
    the threshold here."""
    guard, guard_y = _items((0.95, 0, 79), (0.7, 1, 1), (0.7, 0, 20))
    line, line_y = _items((0.9, 0, 3), (0.8, 1, 1), (0.8, 0, 20))
    (scores, _, y), groups = chooser(_no_check(guard, guard_y), _no_check(line, line_y))
    assert calibration.recommend_threshold(scores, y, 0.01, groups=groups) == 0.71
    assert calibration.recommend_per_label(scores, y, 0.01, groups=groups).thresholds[0] == 0.71
    assert calibration.recommend_per_label(guard, guard_y, 0.01).thresholds[0] == 0.34  # the guard alone: 1 % allowed

    guard, guard_y = _items((0.95, 0, 148), (0.75, 1, 1), (0.75, 0, 20), (0.7, 1, 1), (0.7, 0, 20))  # 2 of 190
    line, line_y = _items((0.9, 0, 60))  # 60 crops, all right
    (scores, _, y), groups = chooser(_no_check(guard, guard_y), _no_check(line, line_y))
    assert calibration.recommend_threshold(scores, y, 0.01) == 0.34  # pooled: 2 of 250, within 1 %
    assert calibration.recommend_threshold(scores, y, 0.01, groups=groups) == 0.71  # the guard alone is not


def _jeans_line() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 items: 150 jeans (label 0) close to the training jeans (novelty 0.1), 10 trousers (label 1) taken for
    jeans as confidently (0.95) but further away (0.5), and 40 saree (label 2) all right, rather far (0.6)."""
    scores, y = _items((0.95, 0, 150), (0.95, 1, 10))
    saree = np.array([[0.05, 0.05, 0.9]] * 40)
    return (
        np.concatenate([scores, saree]),
        np.concatenate([y, [2] * 40]),
        np.array([0.1] * 150 + [0.5] * 10 + [0.6] * 40),
    )


def test_a_familiarity_limit_per_label_stops_confident_wrong_lanes_that_no_threshold_can():
    scores, y, novelty = _jeans_line()
    without = calibration.recommend_per_label(scores, y, 0.01)
    assert without.thresholds[0] == 0.96  # no threshold parts them: every jeans item is rejected to stop 10
    point = calibration.recommend_per_label(scores, y, 0.01, novelty=novelty)
    np.testing.assert_array_equal(point.thresholds, [0.34, 0.34, 0.34])
    np.testing.assert_array_equal(point.novelty_limits, [0.4, 1.0, 1.0])  # the loosest that stops them; saree: 1
    decided = calibration.as_decided(scores, novelty, point.novelty_limits)
    assert calibration.outcomes(decided, y, point.thresholds) | {"threshold": 0} == {
        "threshold": 0, "right": 0.95, "reject": 0.05, "wrong": 0.0
    }  # fmt: skip
    np.testing.assert_array_equal(calibration.unfamiliar(scores, novelty, point.novelty_limits), novelty == 0.5)


def test_each_source_left_out_is_judged_at_familiarity_limits_chosen_on_the_others():
    """Two sources alike: each teaches the limit that stops the other's trousers. Without novelty the wrong lanes
    go through (or every jeans is rejected); with it each left-out source is sorted right or rejected."""
    scores, y, novelty = _jeans_line()
    both = (np.concatenate([scores, scores]), np.concatenate([y, y]), np.concatenate([novelty, novelty]))
    sources = ["a"] * len(y) + ["b"] * len(y)
    loso = calibration.leave_one_source_out(both[0], both[1], sources, 0.01, per_label=True, novelty=both[2])
    assert loso is not None and loso["all"] == {"right": 0.95, "reject": 0.05, "wrong": 0.0, "images": 400}
    assert loso["sources"]["a"]["novelty_limits"] == [0.4, 1.0, 1.0]
    one = calibration.leave_one_source_out(both[0], both[1], sources, 0.01, per_label=False, novelty=both[2])
    assert one is not None and one["all"]["wrong"] == 0.0 and one["all"]["right"] == 0.95
    plain = calibration.leave_one_source_out(both[0], both[1], sources, 0.01, per_label=True)
    assert plain is not None and plain["all"]["right"] == 0.2  # saree only: the jeans lane had to close


def _noisy(
    labels: int, n: int, seed: int, spread: float | None = None, margin: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of a model over `labels` classes that is wrong at every confidence (how much: random unless given),
    rounded so that ties happen, and novelty."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    logits = rng.normal(size=(n, labels)) * (spread or rng.uniform(0.5, 2.0))
    logits[np.arange(n), y] += rng.uniform(0.0, 3.0) if margin is None else margin
    scores = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)
    return scores, y, rng.uniform(0.0, 1.3, n)


def _every_combination(scores, y, max_wrong, groups, novelty) -> calibration.OperatingPoint:
    """The rule as `recommend_per_label` states it, tried on every combination of every label's options."""
    options = [(limit, t) for limit in calibration.NOVELTY_LIMITS[::-1] for t in calibration.THRESHOLDS]
    top, wrong = scores.argmax(1), scores.argmax(1) != y
    best = None
    for combination in itertools.product(range(len(options)), repeat=scores.shape[1]):
        limit = np.array([options[i][0] for i in combination])[top]
        threshold = np.array([options[i][1] for i in combination])[top]
        lane = (scores.max(1) >= threshold) & (novelty <= limit)
        bad, rejects = int((lane & wrong).sum()), int((~lane).sum())
        within = all((lane & wrong & g).sum() <= max_wrong * g.sum() + 1e-9 for g in groups or [lane | ~lane])
        key = (not within, *((decision_cost(bad, rejects), 0) if within else (bad, rejects)))
        key = (*key, sum(combination), combination)
        if best is None or key < best[0]:
            best = (key, combination)
    chosen = [options[i] for i in best[1]]
    return calibration.OperatingPoint(np.array([t for _, t in chosen]), np.array([lim for lim, _ in chosen]))


def test_the_per_label_choice_is_the_best_of_every_combination(monkeypatch):
    """Combined a label at a time, the choice is the one trying every combination finds (coarse grids, so
    that the full search runs in a test), with and without groups, within the target and where none is."""
    monkeypatch.setattr(calibration, "THRESHOLDS", np.array([0.34, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]))
    monkeypatch.setattr(calibration, "NOVELTY_LIMITS", np.array([0.5, 1.0]))
    for seed in range(24):
        labels, n = 2 + seed % 2, 40 + 7 * seed
        scores, y, novelty = _noisy(labels, n, seed)
        groups = [np.arange(n) < n // 2, np.ones(n, bool)] if seed % 3 == 0 else None
        max_wrong = (0.0, 0.02, 0.08)[seed % 3]
        got = calibration.recommend_per_label(scores, y, max_wrong, groups=groups, novelty=novelty)
        want = _every_combination(scores, y, max_wrong, groups, novelty)
        np.testing.assert_array_equal(got.thresholds, want.thresholds, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(got.novelty_limits, want.novelty_limits, err_msg=f"seed {seed}")


def test_many_labels_are_chosen_without_trying_every_combination():
    """Six labels of a model wrong at every confidence: every combination of the options left after pruning is
    ~10^11 (the search used to ask for a terabyte). The choice meets the target on each group and costs no more
    than the best one threshold for all labels, itself one of the combinations."""
    scores, y, novelty = _noisy(6, 1500, seed=0, spread=1.5, margin=2.0)
    everything, guard = np.ones(1500, bool), np.arange(1500) < 1000
    point = calibration.recommend_per_label(scores, y, 0.01, groups=[guard, everything], novelty=novelty)
    decided = calibration.as_decided(scores, novelty, point.novelty_limits)
    for group in (guard, everything):
        assert calibration.outcomes(decided[group], y[group], point.thresholds)["wrong"] <= 0.01
    one = calibration.recommend_threshold(scores, y, 0.01, groups=[guard, everything])

    def cost(row: dict) -> float:
        return decision_cost(row["wrong"], row["reject"])

    assert cost(calibration.outcomes(decided, y, point.thresholds)) < cost(calibration.outcomes(scores, y, one))
