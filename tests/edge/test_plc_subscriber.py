"""The example PLC gateway fires a lane when the item reaches the diverter: crossed_at + distance / speed."""

from __future__ import annotations

import pytest

from demo.plc_subscriber import arrival

DECISION = {"crossed_at": 1000.0, "belt_speed_px_s": 360.0, "belt_speed_mm_s": 450.0}


def test_arrival_at_the_diverter_from_the_crossing_and_the_belt_speed():
    assert arrival(DECISION, diverter_mm=900, diverter_px=None) == pytest.approx(1002.0)
    assert arrival(DECISION, diverter_mm=None, diverter_px=720) == pytest.approx(1002.0)


def test_no_arrival_without_a_crossing_or_a_calibrated_speed():
    assert arrival({**DECISION, "crossed_at": None}, diverter_mm=900, diverter_px=None) is None
    assert arrival({**DECISION, "belt_speed_mm_s": None}, diverter_mm=900, diverter_px=None) is None
