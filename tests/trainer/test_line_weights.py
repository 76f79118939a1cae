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


def test_a_candidate_is_worse_elsewhere_when_its_decisions_cost_a_point_and_three_rejects_more():
    from trainer.line import judged, worse_elsewhere

    y, at = np.zeros(200, int), np.array([0.5, 0.5, 0.5])
    scores = np.tile([0.9, 0.05, 0.05], (200, 1))
    scores[:2] = [0.05, 0.9, 0.05]  # the live model: 2 wrong lanes of 200
    live = {"test": judged(scores, y, at)}
    names = {"test": "in-domain test", "ood": "out-of-domain photos"}
    rejects = scores.copy()
    rejects[2:6] = [0.45, 0.3, 0.25]  # 4 more rejects: 2 points, 4 rejects' worth
    assert worse_elsewhere({"test": judged(rejects, y, at)}, live, names) == {
        "test": "in-domain test: right 99.0 -> 97.0 %, wrong 1.0 -> 1.0 %"
    }
    rejects[4:6] = scores[4:6]  # 2 more: within what a small split moves by chance
    assert worse_elsewhere({"test": judged(rejects, y, at)}, live, names) == {}
    safer = scores.copy()
    safer[:2] = [0.45, 0.3, 0.25]  # the 2 wrong lanes rejected ...
    safer[2:8] = [0.45, 0.3, 0.25]  # ... for 6 more rejects: a trade a line wants
    assert worse_elsewhere({"test": judged(safer, y, at)}, live, names) == {}
    wrong = scores.copy()
    wrong[2] = [0.05, 0.9, 0.05]  # one more wrong lane: ten rejects' worth
    assert "wrong 1.0 -> 1.5 %" in worse_elsewhere({"test": judged(wrong, y, at)}, live, names)["test"]


def test_on_a_few_held_back_crops_one_more_reject_is_not_worse_and_one_more_wrong_lane_is():
    """The line's held-back crops are judged by the rule every other set is (and the daemon's reload check):
    four crops cannot tell one more reject from chance, a wrong lane counts ten rejects whatever the set."""
    from edge.line_check import Outcome
    from trainer.line import worse

    def row(right: int, reject: int, wrong: int) -> dict:
        return {"counts": {"right": right, "reject": reject, "wrong": wrong}}

    live = row(2, 2, 0)
    assert not worse(row(1, 3, 0), live)  # refused a candidate that fixed the rest of its line (bench/relabel.py)
    assert worse(row(1, 2, 1), live)
    assert worse(row(0, 4, 0), row(3, 1, 0))  # three more rejects of four crops
    assert Outcome(1, 3, 0).worse_than(Outcome(2, 2, 0)) is False
    assert Outcome(1, 2, 1).worse_than(Outcome(2, 2, 0)) is True
    assert not Outcome(3, 1, 0).worse_than(Outcome(2, 1, 1))  # fewer wrong lanes for more right: better
