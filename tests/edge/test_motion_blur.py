"""The motion blur gauge (edge/motion_blur.py) alone, on pictures smeared by a known length; presence mode reading
it on the simulator's lines is tested in test_presence.py, the page's warning in test_ui.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.motion_blur import EVERY, PER_ITEM, READS, MotionBlur

BOX = (0, 0, 320, 240)


def smeared(rng: np.random.Generator, length: float, axis: int) -> np.ndarray:
    """A textured 320x240 picture (fabric-like grain, alike both ways) exposed while it moved `length` px along
    `axis`, as a camera takes it: the motion at four times the resolution, then each pixel the mean of its area,
    and noise on top as a sensor adds it."""
    fine = cv2.GaussianBlur(rng.normal(128, 60, (960, 1280)).astype(np.float32), (0, 0), 1.0)
    steps = max(1, round(4 * length))
    kernel = np.full((1, steps), 1.0 / steps, np.float32)
    fine = cv2.filter2D(fine, -1, kernel if axis == 0 else kernel.T)
    grain = cv2.resize(fine, (320, 240), interpolation=cv2.INTER_AREA)
    grey = np.clip(grain + rng.normal(0, 3, grain.shape), 0, 255).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize(("length", "axis"), [(0, 0), (1, 1), (4, 1), (7, 0), (12, 1)])
def test_the_smear_is_read_within_a_pixel(length: float, axis: int):
    rng = np.random.default_rng(round(length))
    gauge = MotionBlur()

    for key in range(READS * EVERY):  # a new item every frame: none is read more than once
        gauge.look(smeared(rng, length, axis), axis, {key: BOX})

    assert gauge.px is not None and abs(gauge.px - length) <= 1.0, gauge.px


def test_no_figure_before_enough_reads_nor_without_items_nor_from_a_plain_picture():
    rng = np.random.default_rng(1)
    gauge = MotionBlur()
    for key in range(READS * EVERY - 1):
        gauge.look(smeared(rng, 5, 0), 0, {key: BOX})
    assert gauge.px is None  # one read short

    plain, empty = MotionBlur(), MotionBlur()
    for key in range(3 * READS * EVERY):
        plain.look(np.full((240, 320, 3), 128, np.uint8), 0, {key: BOX})
        empty.look(smeared(rng, 5, 0), 0, {})
    assert plain.px is None and empty.px is None


def test_one_item_is_read_a_few_times_at_most_however_long_it_stays():
    # one garment's stripes can lie all one way: the figure must come from many items
    rng = np.random.default_rng(2)
    gauge = MotionBlur()

    for _ in range(10 * READS * EVERY):
        gauge.look(smeared(rng, 5, 0), 0, {7: BOX})

    assert gauge.px is None
    assert gauge._times_read == {7: PER_ITEM}
