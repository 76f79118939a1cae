"""Temperature scaling, ECE and the recommended reject threshold, on scores whose truth is known."""

from __future__ import annotations

import numpy as np

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


def test_recommended_threshold_is_the_lowest_within_the_wrong_lane_target():
    scores, y = _calibrated_sample(seed=1)
    threshold = calibration.recommend_threshold(scores, y, max_wrong=0.05)
    assert calibration.outcomes(scores, y, threshold)["wrong"] <= 0.05
    assert calibration.outcomes(scores, y, threshold - 0.01)["wrong"] > 0.05


def test_when_no_threshold_meets_the_target_the_fewest_wrong_wins():
    scores = np.array([[0.99, 0.005, 0.005]] * 10)
    y = np.array([1] * 10)  # confidently wrong: nothing below 1.0 rejects them
    assert calibration.recommend_threshold(scores, y, max_wrong=0.03) == calibration.THRESHOLDS[-1]


def test_the_lines_crops_and_the_guard_must_each_keep_the_wrong_lane_target():
    """100 guard photos (one wrong lane at 0.7, within 1 %) and 4 line crops (one wrong at 0.8): pooled, the
    line's wrong one is 1 of 104 and 0.71 passes; held to the target in each group, it sets the threshold."""
    guard = np.array([[0.95, 0.03, 0.02]] * 99 + [[0.7, 0.2, 0.1]])
    guard_y = np.array([0] * 99 + [1])
    line = np.array([[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.8, 0.15, 0.05], [0.9, 0.05, 0.05]])
    line_y = np.array([0, 0, 1, 0])

    scores, y, weights, groups = chooser(guard, guard_y, line, line_y)
    assert weights is not None and weights[-1] == 25.0  # 4 crops weigh as much as the 100 photos
    assert calibration.recommend_threshold(scores, y, 0.01) == 0.71
    assert calibration.recommend_threshold(scores, y, 0.01, weights, groups) == 0.81
    per_label = calibration.recommend_per_label(scores, y, 0.01, weights, groups)
    assert per_label[0] == 0.81  # the label both wrong ones went to
    assert calibration.recommend_per_label(guard, guard_y, 0.01)[0] == 0.34  # the guard alone: 1 % allowed
