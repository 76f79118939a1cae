"""Random variations of a model-sized image, the kind a conveyor camera produces.

Geometry (flip, small rotation/zoom/shift), light (brightness, contrast) and, against the colour
shortcut in shop photos (blue jeans, dark trousers), hue rotation and grayscale, so fabric and cut
decide rather than colour. Against the studio-background shortcut, the plain background of a shop
photo is replaced by a random floor-, belt- or cloth-like texture: on the line and in other people's
photos garments lie on floors, beds and belts. Each view is a pure function of (seed, image, view number): the feature
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
    zoom: float = 0.3  # items lie on the belt at other scales than in shop photos
    shift: float = 0.06
    brightness: float = 0.25
    contrast: float = 0.25
    hue_p: float = 0.5  # chance to rotate the hue anywhere on the circle
    grayscale_p: float = 0.25
    saturation: float = 0.4
    blur_p: float = 0.2  # motion/defocus blur on a moving belt
    background_p: float = 0.7  # chance to put the item on a random texture instead of its plain background


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
    if rng.random() < aug.background_p:
        out = replace_background(out, random_texture(h, w, rng), pad_value)
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


def replace_background(rgb: np.ndarray, texture: np.ndarray, pad_value: int, tolerance: int = 28) -> np.ndarray:
    """Put `texture` wherever the image is plain background: near-`pad_value` regions touching the border
    (a white item inside the photo stays, since it does not touch the border through background)."""
    plain = (np.abs(rgb.astype(np.int16) - pad_value).max(axis=2) <= tolerance).astype(np.uint8)
    count, regions = cv2.connectedComponents(plain, connectivity=4)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    background = np.isin(regions, border[border > 0] if count > 1 else [])
    # Soften the cut so the item's edge is not a hard, tell-tale seam.
    alpha = cv2.GaussianBlur(background.astype(np.float32), (3, 3), 0)[..., None]
    return (rgb * (1 - alpha) + texture * alpha).astype(np.uint8)


def random_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A floor / belt / cloth-like surface: a muted base colour, blotchy noise at two scales, maybe planks or
    a weave, and a light gradient."""
    hue, sat, val = rng.uniform(0, 180), rng.uniform(0, 120), rng.uniform(60, 230)
    base = cv2.cvtColor(np.uint8([[[hue, sat, val]]]), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    surface = np.ones((h, w, 1), np.float32)
    for scale, strength in ((8, rng.uniform(0, 0.25)), (2, rng.uniform(0, 0.12))):
        noise = rng.normal(0, 1, (max(2, h // scale), max(2, w // scale), 1)).astype(np.float32)
        surface += strength * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    pattern = rng.integers(0, 3)
    if pattern == 1:  # planks or belt slats
        period = rng.integers(max(4, h // 8), max(5, h // 3))
        surface *= 1 - 0.15 * ((np.arange(h) % period) < 2)[:, None, None]
    elif pattern == 2:  # a woven or knitted fabric
        period = rng.integers(2, 5)
        weave = ((np.arange(h)[:, None] // period + np.arange(w)[None, :] // period) % 2).astype(np.float32)
        surface *= 1 - rng.uniform(0.03, 0.1) * weave[..., None]
    ramp = np.linspace(1 - rng.uniform(0, 0.3), 1, w, dtype=np.float32)
    surface *= ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None][:h]
    return np.clip(base * surface, 0, 255).astype(np.uint8)
