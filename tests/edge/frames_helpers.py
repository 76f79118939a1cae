"""Test material for the frame side: synthetic product photos and small video files written with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

# garment colours, RGB: denim blue, charcoal, khaki, saree red
_COLOURS = [(52, 84, 140), (60, 62, 70), (190, 160, 110), (180, 30, 60)]


def product_photos(directory: Path, count: int) -> list[Path]:
    """Garment-like shapes on a light studio background, like shop photos, in <directory>/<label>/."""
    paths = []
    for index in range(count):
        label = ("jeans", "trousers", "saree")[index % 3]
        colour = _COLOURS[index % len(_COLOURS)]
        image = Image.new("RGB", (300, 380), (238, 236, 232))
        draw = ImageDraw.Draw(image)
        if label == "saree":
            draw.polygon([(120, 20), (190, 20), (260, 360), (50, 360)], fill=colour)
            draw.line([(80, 300), (230, 300)], fill=(220, 180, 60), width=10)  # border
        else:
            draw.rectangle([85, 20, 215, 70], fill=colour)  # waistband and hips
            draw.polygon([(85, 70), (148, 70), (135, 360), (80, 360)], fill=colour)  # left leg
            draw.polygon([(152, 70), (215, 70), (220, 360), (165, 360)], fill=colour)  # right leg
        path = directory / label / f"item{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=92)
        paths.append(path)
    return paths


def read_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, in order."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    return frames


def numbered_clip(path: Path, frames: int, *, fps: int = 30, size: tuple[int, int] = (96, 64)) -> Path:
    """A clip whose frame i is uniformly grey level 10 + 4*i (mod 240): the frame index can be read back."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), frame_level(index), np.uint8))
    writer.release()
    return path


def frame_level(index: int) -> int:
    return 10 + (4 * index) % 240


def frame_index(image: np.ndarray) -> int:
    """Inverse of frame_level for clips shorter than 60 frames (MJPEG error is a grey level or two)."""
    return round((float(image.mean()) - 10) / 4)
