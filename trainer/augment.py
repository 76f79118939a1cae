"""Random variations of a model-sized image, the kind a conveyor camera produces.

Geometry (flip, small rotation/zoom/shift), light (brightness, contrast) and, against the colour
shortcut in shop photos (blue jeans, dark trousers), hue rotation and grayscale, so fabric and cut
decide rather than colour. Each view is a pure function of (seed, image, view number): the feature
cache can then store views and a rerun reproduces them. Written with OpenCV rather than Keras'
random layers because those draw from one stream per layer, which ties a view to its batch.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict


class Augmentation(BaseModel):
    """Strengths of each variation; part of the feature-cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rotation_deg: float = 8.0
    zoom: float = 0.12
    shift: float = 0.06
    brightness: float = 0.25
    contrast: float = 0.25
    hue_p: float = 0.5  # chance to rotate the hue anywhere on the circle
    grayscale_p: float = 0.25
    saturation: float = 0.4
    blur_p: float = 0.2  # motion/defocus blur on a moving belt


def view_seed(seed: int, image_sha256: str, view: int) -> int:
    digest = hashlib.sha256(f"{seed}:{image_sha256}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def augment(rgb: np.ndarray, aug: Augmentation, rng: np.random.Generator, pad_value: int) -> np.ndarray:
    """One random view of an HxWx3 uint8 RGB image (same size, padding filled with pad_value)."""
    h, w = rgb.shape[:2]
    angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
    scale = 1.0 + rng.uniform(-aug.zoom, aug.zoom)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-aug.shift, aug.shift, 2) * (w, h)
    out = cv2.warpAffine(
        rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(pad_value,) * 3
    )
    if rng.random() < 0.5:
        out = out[:, ::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV).astype(np.float32)
    if rng.random() < aug.hue_p:
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180  # OpenCV hue runs 0..180
    hsv[..., 1] *= rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < aug.grayscale_p:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    gain = 1 + rng.uniform(-aug.contrast, aug.contrast)
    bias = 255 * rng.uniform(-aug.brightness, aug.brightness) / 2
    mean = out.mean()
    out = np.clip((out.astype(np.float32) - mean) * gain + mean + bias, 0, 255).astype(np.uint8)
    if rng.random() < aug.blur_p:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    return out
