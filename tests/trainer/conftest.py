"""Fixtures for the trainer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from trainer_images import CLASSES, draw_item


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """make_dataset(per_class=10, classes=CLASSES, seed=0, name='data') -> folder DATA/<label>/*.jpg."""

    def make(per_class: int = 10, classes: tuple[str, ...] = tuple(CLASSES), seed: int = 0, name: str = "data") -> Path:
        root = tmp_path / name
        rng = np.random.default_rng(seed)
        for label in classes:
            (root / label).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                cv2.imwrite(str(root / label / f"{label}_{i:03d}.jpg"), draw_item(label, rng))
        return root

    return make
