"""Synthetic conveyor clip: product photos riding a moving belt, with the ground truth per item.

Used by the tests and the README demo in place of a real line camera. The belt is a dark, finely
textured band moving left to right between two static rails, under slightly flickering light and
sensor noise; each product photo (on its own background, as shop photos are) enters on the left,
crosses and leaves completely before the next one enters.

    python demo/conveyor.py OUT.avi IMAGE...      # labels come from the images' folder names
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

# Motion JPEG in AVI: every frame is a key frame, so what is read back is frame-exact. mp4v is smaller.
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


@dataclass(frozen=True)
class ClipItem:
    label: str
    image: str
    first_frame: int  # first frame index (0-based) where any part of the item is visible
    last_frame: int  # last frame index where any part is visible


def write_conveyor_clip(
    path: Path,
    item_images: list[Path],
    labels: list[str] | None = None,
    *,
    fps: int = 15,
    size: tuple[int, int] = (640, 480),
    gap_frames: int | None = None,
    lead_frames: int | None = None,
    crossing_s: float = 1.6,
    frames: int | None = None,
    belt_level: int = 68,
    seed: int = 0,
) -> list[ClipItem]:
    """Write the clip and return the ground truth per item, in order.

    gap_frames: empty-belt frames between two items (default one second); lead_frames: empty frames
    before the first item, and after the last (default two seconds, room to learn the empty belt);
    crossing_s: time the belt needs to carry a point across the frame; frames: exact clip length, the
    images are repeated in turn as often as fit (benchmarks need a clip of a given length);
    belt_level: grey level of the belt (68: dark rubber, ~190: light PVC as used on apparel lines).
    """
    path = Path(path)
    if path.suffix.lower() not in _FOURCC:
        raise ValueError(f"{path}: use a .avi (Motion JPEG) or .mp4 (mp4v) file name")
    if labels is None:
        labels = [Path(p).parent.name for p in item_images]
    if len(labels) != len(item_images):
        raise ValueError(f"{len(item_images)} images but {len(labels)} labels")
    if frames is not None and not item_images:
        raise ValueError("frames= repeats the item images, but none were given")
    width, height = size
    gap = fps if gap_frames is None else gap_frames
    lead = 2 * fps if lead_frames is None else lead_frames
    speed = max(1, round(width / (crossing_s * fps)))  # pixels per frame
    rng = np.random.default_rng(seed)

    products = [_load_product(Path(p), height, width, rng) for p in item_images]
    schedule: list[tuple[int, np.ndarray, int]] = []  # (first visible frame, photo, top y)
    truth: list[ClipItem] = []
    frame = lead
    for index in itertools.count():
        if index == len(products) and frames is None:
            break
        product, label, image_path = (seq[index % len(products)] for seq in (products, labels, item_images))
        photo_h, photo_w = product.shape[:2]
        crossing = (width + photo_w - 1) // speed  # frames with some part of the photo in view
        if frames is not None and frame + crossing + lead > frames:
            break
        top = (height - photo_h) // 2 + int(rng.integers(-height // 30, height // 30 + 1))
        schedule.append((frame, product, top))
        truth.append(ClipItem(label, str(image_path), frame, frame + crossing - 1))
        frame += crossing + gap
    total = frames if frames is not None else (frame - gap + lead if schedule else lead)
    path.parent.mkdir(parents=True, exist_ok=True)

    belt = _Belt(width, height, rng, belt_level)
    noise = [rng.normal(0, 2.5, (height, width, 3)).astype(np.float32) for _ in range(6)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_FOURCC[path.suffix.lower()]), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {_FOURCC[path.suffix.lower()]} video here")
    try:
        for index in range(total):
            image = belt.render(index * speed)
            for first, product, top in schedule:
                left = -product.shape[1] + (index - first + 1) * speed
                _paste_with_shadow(image, product, left, top)
            writer.write(_camera_response(image, index, fps, noise, rng))
    finally:
        writer.release()
    return truth


class _Belt:
    """A belt (dark by default) with fine grain, faint lengthwise streaks and seams, between two static rails."""

    def __init__(self, width: int, height: int, rng: np.random.Generator, level: int = 68) -> None:
        self.width, self.height = width, height
        self.period = 160
        grain = rng.normal(0, 9, (height, self.period)).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (3, 3), 0)
        streaks = rng.normal(0, 4, (height, 1)).astype(np.float32)  # along the direction of travel
        tile = level + grain + streaks
        tile[:, :3] -= 10  # the joint between two belt segments
        tile = np.repeat(tile[:, :, None], 3, axis=2) * np.array([1.0, 1.02, 1.04], np.float32)  # slightly cool grey
        self.strip = np.tile(tile, (1, width // self.period + 2, 1))
        self.rail_h = height // 14
        rail = np.linspace(150, 105, self.rail_h, dtype=np.float32)[:, None, None]
        self.rail = np.broadcast_to(rail, (self.rail_h, width, 3)).copy()

    def render(self, travelled: int) -> np.ndarray:
        start = (-travelled) % self.period  # the belt moves right: content shifts right by `travelled`
        image = self.strip[:, start : start + self.width].copy()
        image[: self.rail_h] = self.rail
        image[-self.rail_h :] = self.rail[::-1]
        return image


def _load_product(path: Path, frame_h: int, frame_w: int, rng: np.random.Generator) -> np.ndarray:
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise ValueError(f"{path}: not a readable image")
    target_h = frame_h * rng.uniform(0.6, 0.7)
    scale = min(target_h / photo.shape[0], 0.8 * frame_w / photo.shape[1])
    new_size = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
    return cv2.resize(photo, new_size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _paste_with_shadow(image: np.ndarray, product: np.ndarray, left: int, top: int) -> None:
    height, width = image.shape[:2]
    photo_h, photo_w = product.shape[:2]
    shadow = 6
    sx0, sx1 = max(0, left + shadow), min(width, left + photo_w + shadow)
    sy0, sy1 = max(0, top + shadow), min(height, top + photo_h + shadow)
    if sx0 < sx1 and sy0 < sy1:
        image[sy0:sy1, sx0:sx1] *= 0.6
    x0, x1 = max(0, left), min(width, left + photo_w)
    y0, y1 = max(0, top), min(height, top + photo_h)
    if x0 < x1 and y0 < y1:
        image[y0:y1, x0:x1] = product[y0 - top : y1 - top, x0 - left : x1 - left]


def _camera_response(
    image: np.ndarray, index: int, fps: int, noise: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Slow lighting flicker (a few percent) and sensor noise, as a real camera adds."""
    gain = 1.0 + 0.03 * math.sin(2 * math.pi * index / (1.3 * fps)) + rng.normal(0, 0.006)
    grain = noise[int(rng.integers(len(noise)))]  # drawing fresh noise per frame would triple the run time
    return np.clip(image * gain + grain, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="clip to write (.avi or .mp4)")
    parser.add_argument("images", type=Path, nargs="+", help="product photos; the folder name is the label")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--gap-frames", type=int, default=None, help="empty belt between items (default: 1 s)")
    parser.add_argument("--belt-level", type=int, default=68, help="belt grey level: 68 dark, ~190 light")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        items = write_conveyor_clip(
            args.out,
            args.images,
            fps=args.fps,
            size=(width, height),
            gap_frames=args.gap_frames,
            belt_level=args.belt_level,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for item in items:
        print(json.dumps(asdict(item)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
