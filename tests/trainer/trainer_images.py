"""Small real images generated at test time: three classes a tiny network separates easily."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Colour and shape differ per class, so a randomly initialised VGG16 at 32x32 separates them within seconds.
CLASSES = {"red_box": (40, 40, 220), "green_disc": (60, 200, 60), "blue_bar": (220, 80, 40)}  # BGR


def draw_item(
    label: str,
    rng: np.random.Generator,
    height: int = 150,
    width: int = 110,
    colour_of: str | None = None,
    background: int = 235,
) -> np.ndarray:
    """One product-like photo: a coloured item on a light, noisy background, at a random place and size.
    `colour_of` paints the item in another class's colour and `background` darkens the ground (another line's
    items: the shapes mean what they meant, the colours do not)."""
    image = np.full((height, width, 3), background, np.uint8)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in CLASSES[colour_of or label])
    cx, cy = int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3))
    size = int(rng.integers(18, 34))
    if label == "red_box":
        cv2.rectangle(image, (cx - size, cy - size), (cx + size, cy + size), colour, -1)
    elif label == "green_disc":
        cv2.circle(image, (cx, cy), size, colour, -1)
    else:
        cv2.rectangle(image, (cx - size // 3, cy - 2 * size), (cx + size // 3, cy + 2 * size), colour, -1)
    for _ in range(int(rng.integers(1, 4))):  # clutter, so perceptual hashes differ between images
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.line(image, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), (90, 90, 90), 2)
    return image


def write_dataset(root: Path, per_class: int, rng: np.random.Generator) -> Path:
    """DATA/<label>/NN.jpg: `per_class` photos of every class."""
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / label / f"{i:02d}.jpg"), draw_item(label, rng))
    return root


def tiny_settings(**more: object) -> str:
    """A `sortline-train --config` TOML for these images: 32x32 VGG16 from random weights, a few epochs, colour
    left alone by the augmentation (it is the signal); `more` settings are added (before the table)."""
    settings = {
        "backbone": '"vgg16"', "weights": '"none"', "image_size": 32, "views": 2, "head_epochs": 60,
        "finetune_epochs": 2, "patience": 8, "calibration_per_class": 8, "near_duplicate_distance": 2,
        "val_fraction": 0.2, "test_fraction": 0.2, **more,
    }  # fmt: skip
    lines = [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join([*lines, "[augmentation]", "hue_p = 0", "grayscale_p = 0", "saturation = 0.1", ""])
