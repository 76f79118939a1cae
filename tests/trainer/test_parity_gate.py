"""The int8 parity gate: int8 may not send an item to another lane than float32, nor lose accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluate import ParityError, check_parity, parity

SURE_A, SURE_B = [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]
TIE_A, TIE_B = [0.45, 0.4, 0.15], [0.4, 0.45, 0.15]


def _gate(float_rows, int8_rows, y, threshold=0.8) -> dict:
    result = parity(np.array(y), np.array(float_rows), np.array(int8_rows), threshold)
    check_parity(result, max_accuracy_drop=1.0, min_agreement=0.98)
    return result


def test_flips_among_near_ties_that_int8_rejects_pass():
    y = [0] * 50 + [1] * 50
    ties = [TIE_A] * 5 + [TIE_B] * 5  # float32 itself is right on half of them
    float_rows = [SURE_A] * 40 + ties + [SURE_B] * 40 + ties
    int8_rows = [SURE_A] * 40 + ties[::-1] + [SURE_B] * 40 + ties[::-1]  # rounding tips every tie the other way
    result = _gate(float_rows, int8_rows, y)
    assert result["top1_agreement"] == 0.8 and result["lane_agreement"] == 1.0 and result["lane_items"] == 80


def test_a_confident_flip_to_another_lane_fails():
    y = [0] * 100
    float_rows = [SURE_A] * 100
    int8_rows = [SURE_A] * 97 + [SURE_B] * 3
    with pytest.raises(ParityError, match=r"float32 gives the same label to only 97\.00%"):
        _gate(float_rows, int8_rows, y)


def test_int8_that_loses_accuracy_fails_even_when_it_rejects_everything():
    y = [0] * 100
    with pytest.raises(ParityError, match=r"int8 accuracy 0\.00% is 100\.0 points below float32"):
        _gate([SURE_A] * 100, [[0.3, 0.4, 0.3]] * 100, y)
