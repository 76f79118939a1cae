"""Training views: the item on a new background, the item itself untouched."""

from __future__ import annotations

import cv2
import numpy as np

from trainer.augment import Augmentation, augment, belt_view, random_texture, replace_background, view_seed


def _shop_photo() -> np.ndarray:
    """A dark garment with a white patch inside it, on the plain white of a shop photo."""
    image = np.full((96, 96, 3), 255, np.uint8)
    cv2.rectangle(image, (30, 10), (66, 86), (30, 40, 90), -1)
    cv2.rectangle(image, (42, 40), (54, 56), (255, 255, 255), -1)  # a white label on the garment
    return image


def test_the_plain_background_becomes_the_texture_and_the_item_stays():
    photo = _shop_photo()
    texture = np.full_like(photo, 100)
    out = replace_background(photo, texture, pad_value=255)
    assert np.all(out[:5, :5] == 100) and np.all(out[-5:, -5:] == 100)  # background replaced
    np.testing.assert_array_equal(out[20:80, 35:62][5:15], photo[20:80, 35:62][5:15])  # garment untouched
    assert np.all(out[44:52, 46:50] == 255)  # the white label inside the garment is not background


def test_textures_vary_and_are_reproducible_from_the_seed():
    a = random_texture(64, 64, np.random.default_rng(view_seed(1, "ab", 1)))
    b = random_texture(64, 64, np.random.default_rng(view_seed(1, "ab", 1)))
    c = random_texture(64, 64, np.random.default_rng(view_seed(1, "ab", 2)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and not np.array_equal(a, c)


def test_a_view_without_background_changes_keeps_white_corners():
    photo = _shop_photo()
    plain = Augmentation(background_p=0, rotation_deg=0, zoom=0, shift=0, brightness=0, contrast=0, hue_p=0,
                         grayscale_p=0, saturation=0, blur_p=0)  # fmt: skip
    textured = plain.model_copy(update={"background_p": 1.0})
    assert np.all(augment(photo, plain, np.random.default_rng(0), 255)[:5, :5] == 255)
    assert not np.all(augment(photo, textured, np.random.default_rng(0), 255)[:5, :5] == 255)


def _trousers(background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Two dark legs joined at the waist, on a plain background: the box that hugs them holds belt between
    the legs."""
    image = np.full((128, 128, 3), background, np.uint8)
    cv2.rectangle(image, (40, 20), (88, 40), (200, 30, 30), -1)  # waist
    cv2.rectangle(image, (40, 20), (58, 120), (200, 30, 30), -1)
    cv2.rectangle(image, (70, 20), (88, 120), (200, 30, 30), -1)
    return image


def _red(view: np.ndarray) -> np.ndarray:
    """Where the (red) legs are, whatever the belt's shade."""
    rgb = view.astype(np.int16)
    return rgb[..., 0] - rgb[..., 1:].max(axis=2) > 80


def test_a_belt_view_is_the_item_cut_as_the_edge_cuts_it_on_a_belt_that_changes():
    gaps = []
    for seed in range(12):
        out = belt_view(_trousers(), np.random.default_rng(seed), pad_value=255)
        assert out.shape == (128, 128, 3) and out.dtype == np.uint8
        ys, xs = np.nonzero(_red(out))
        assert ys.max() - ys.min() >= 0.8 * 128  # the box hugs the item: letterboxed, it fills the height
        assert np.all(out[:, :8] == 255) and np.all(out[:, -8:] == 255)  # letterbox either side, as on the edge
        middle = (xs.min() + xs.max()) // 2
        gaps.append(out[ys.max() - 30 : ys.max() - 10, middle - 1 : middle + 2].mean())  # between the legs
    assert np.std(gaps) > 20  # belts from dark to light between the legs, not the photo's white


def test_a_coloured_studio_background_is_cut_away_like_a_white_one():
    out = belt_view(_trousers(background=(205, 185, 150)), np.random.default_rng(3), pad_value=255)
    ys, _ = np.nonzero(_red(out))
    assert ys.max() - ys.min() >= 0.8 * 128


def test_belt_views_are_reproducible_from_the_seed_and_keep_the_letterbox():
    photo = _trousers()
    belt = Augmentation(belt_p=1.0)
    a = augment(photo, belt, np.random.default_rng(view_seed(1, "ab", 1)), 255)
    np.testing.assert_array_equal(a, augment(photo, belt, np.random.default_rng(view_seed(1, "ab", 1)), 255))
    assert np.all(a[:, :8] == 255)  # the colour changes leave the edge's letterbox as it is
    assert not np.array_equal(a, augment(photo, belt, np.random.default_rng(view_seed(1, "ab", 2)), 255))


def _lean(view: np.ndarray) -> float:
    """Degrees the red item's outline leans from the view's axes."""
    ys, xs = np.nonzero(_red(view))
    angle = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))[2] % 90
    return min(angle, 90 - angle)


def test_a_roundish_item_is_cut_as_it_lies_and_an_elongated_one_turned_nearly_upright():
    """As the edge does: it turns an item upright by its long axis, and a roundish one has none."""
    square = np.full((128, 128, 3), 255, np.uint8)
    cv2.rectangle(square, (34, 34), (94, 94), (200, 30, 30), -1)
    bar = np.full((128, 128, 3), 255, np.uint8)
    cv2.rectangle(bar, (54, 10), (74, 118), (200, 30, 30), -1)
    assert max(_lean(belt_view(square, np.random.default_rng(seed), 255)) for seed in range(12)) > 12
    assert max(_lean(belt_view(bar, np.random.default_rng(seed), 255)) for seed in range(12)) < 8
