"""How much the line's own crops count in training: half of their class, whatever their number, and no class
tilted (no TensorFlow needed)."""

from __future__ import annotations

import numpy as np

from trainer.line import share_weights


def test_a_lines_crops_carry_half_their_class_and_every_class_keeps_its_weight():
    labels = np.array([0] * 100 + [1] * 60 + [2] * 80 + [1] * 20)  # the line sent only class 1: 20 crops
    is_line = np.arange(len(labels)) >= 240
    weights = share_weights(is_line, labels, 0.5)
    for label in (0, 1, 2):  # class balancing downstream sees the classes as they were
        assert np.isclose(weights[labels == label].sum(), (labels == label).sum())
    assert np.isclose(weights[is_line].sum(), 0.5 * 80)  # half of class 1's 80
    few = is_line & (np.arange(len(labels)) < 245)  # 5 crops: a quarter of that share, not 16 images each
    assert np.isclose(share_weights(few, labels, 0.5)[few].sum(), 0.5 * 5 / 20 * 80)
    assert np.allclose(weights[labels == 0], 1.0) and np.allclose(weights[labels == 2], 1.0)
    assert np.allclose(share_weights(is_line, labels, 0.0), 1.0)
    plenty = (labels == 1) & (np.arange(len(labels)) >= 130)  # 50 of class 1's 80: more than half already
    assert np.allclose(share_weights(plenty, labels, 0.5), 1.0)


def test_a_candidate_is_worse_elsewhere_when_it_loses_a_point_and_three_items_off_the_line():
    from trainer.line import judged, worse_elsewhere

    y = np.zeros(200, int)
    scores = np.tile([0.9, 0.05, 0.05], (200, 1))
    live = {"test": judged(scores, y, np.array([0.5, 0.5, 0.5]))}
    fewer = scores.copy()
    fewer[:4] = [0.45, 0.3, 0.25]  # 4 of 200 now rejected: 2 points, 4 items
    names = {"test": "in-domain test", "ood": "out-of-domain photos"}
    assert worse_elsewhere({"test": judged(fewer, y, np.array([0.5, 0.5, 0.5]))}, live, names) == {
        "test": "in-domain test: right 100.0 -> 98.0 %, wrong 0.0 -> 0.0 %"
    }
    fewer[2:4] = scores[2:4]  # 2 items: within what a small split moves by chance
    assert worse_elsewhere({"test": judged(fewer, y, np.array([0.5, 0.5, 0.5]))}, live, names) == {}
    wrong = scores.copy()
    wrong[:3] = [0.05, 0.9, 0.05]  # 3 items to a wrong lane: 1.5 points
    assert "wrong 0.0 -> 1.5 %" in worse_elsewhere({"test": judged(wrong, y, np.array([0.5] * 3))}, live, names)["test"]
