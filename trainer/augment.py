"""Random variations of a model-sized image, the kind a conveyor camera produces.

Geometry (flip, small rotation/zoom/shift), light (brightness, contrast) and, against the colour
shortcut in shop photos (blue jeans, dark trousers), hue rotation and grayscale, so fabric and cut
decide rather than colour. Against the studio-background shortcut, the plain background of a shop
photo is replaced by a random floor-, belt- or cloth-like texture: on the line and in other people's
photos garments lie on floors, beds and belts. A belt view (`belt_view`) goes further: the item lies on a
conveyor surface with a shadow and is cut out again as the edge's presence mode cuts it (the box that hugs the
item turned upright, letterboxed), seen through a camera (resolution, motion blur, noise, JPEG). Written apart
from the line simulator (demo/line.py) on purpose: the belt benchmark must not grade views it drew itself.

Each view is a pure function of (seed, image, view number): the feature cache can then store views and a
rerun reproduces them. Written with OpenCV rather than Keras' random layers because those draw from one
stream per layer, which ties a view to its batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.preprocess import encode_jpeg, letterbox


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
    # chance of a belt view instead (the item on a conveyor, cropped as the edge crops it; docs/training.md)
    belt_p: float = Field(0.0, ge=0, le=1)


ROUNDISH = 1.3  # long side to short side below which the edge leaves an item as it lies (edge.item_shapes)


def view_seed(seed: int, image_sha256: str, view: int) -> int:
    digest = hashlib.sha256(f"{seed}:{image_sha256}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def augment(rgb: np.ndarray, aug: Augmentation, rng: np.random.Generator, pad_value: int) -> np.ndarray:
    """One random view of an HxWx3 uint8 RGB image (same size, padding filled with pad_value)."""
    h, w = rgb.shape[:2]
    if aug.belt_p and rng.random() < aug.belt_p:  # without belt views, the views of before (and their cache)
        return belt_view(rgb, rng, pad_value, recolour=lambda crop: _colour_and_light(crop, aug, rng))
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
    out = _colour_and_light(out, aug, rng)
    if rng.random() < aug.blur_p:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    return out


def _colour_and_light(out: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
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
    return np.clip((out.astype(np.float32) - mean) * gain + mean + bias, 0, 255).astype(np.uint8)


def belt_view(
    rgb: np.ndarray,
    rng: np.random.Generator,
    pad_value: int,
    recolour: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The item of a model-sized image as the edge's presence mode would hand it over: laid on a belt surface
    with a soft shadow, cut out as its upright box (the turn to upright is never exact, and the belt's streaks
    run at whatever angle the item lay), through a camera (then `recolour`), letterboxed back to the image's
    size with the edge's exact padding."""
    h, w = rgb.shape[:2]
    item = _item_mask(rgb, pad_value)
    if item.mean() < 0.02:  # nothing but background: leave the view as it is
        return rgb
    ys, xs = np.nonzero(item)
    photo = rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    alpha = cv2.GaussianBlur(item[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32), (3, 3), 0)
    ih, iw = alpha.shape
    pad = int(0.25 * max(ih, iw)) + 8  # room for the shadow and the residual turn
    size = (iw + 2 * pad, ih + 2 * pad)
    canvas = belt_surface(size[1], size[0], rng)
    # the shadow: the outline, blurred, offset away from a light somewhere above
    reach = rng.uniform(0.01, 0.05) * max(ih, iw)
    away = rng.uniform(0, 2 * np.pi)
    shadow = np.zeros(canvas.shape[:2], np.float32)
    dx, dy = round(pad + reach * np.cos(away)), round(pad + reach * np.sin(away))
    shadow[dy : dy + ih, dx : dx + iw] = alpha
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(1.0, reach))
    canvas *= 1 - rng.uniform(0.2, 0.5) * shadow[..., None]
    a = alpha[..., None]
    canvas[pad : pad + ih, pad : pad + iw] = canvas[pad : pad + ih, pad : pad + iw] * (1 - a) + photo * a
    # The edge turns an elongated item upright, a few degrees off; a roundish one (a folded saree, a whole photo
    # laid down) has no long axis to go by and is cut as it lies, up to 25 degrees askew with belt in the corners.
    roundish = max(ih, iw) < ROUNDISH * min(ih, iw)
    askew = rng.uniform(-25, 25) if roundish else rng.uniform(-6, 6)
    turn = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), askew, 1.0)
    canvas = cv2.warpAffine(canvas, turn, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    outline = np.zeros(canvas.shape[:2], np.float32)
    outline[pad : pad + ih, pad : pad + iw] = alpha
    ys, xs = np.nonzero(cv2.warpAffine(outline, turn, size) > 0.5)
    grow = rng.uniform(0, 0.04)  # a detector's box is a little loose or tight
    mx, my = round(grow * (xs.max() - xs.min())), round(grow * (ys.max() - ys.min()))
    crop = canvas[max(0, ys.min() - my) : ys.max() + 1 + my, max(0, xs.min() - mx) : xs.max() + 1 + mx]
    crop = _camera(crop, rng)
    crop = recolour(crop) if recolour is not None else crop
    return letterbox(crop, w, h, pad_value)


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A belt camera's view of float RGB pixels: fewer pixels on the item than a shop photo, motion blur along
    one axis, light level, sensor noise, JPEG; uint8 out."""
    h, w = image.shape[:2]
    shrink = rng.uniform(0.45, 1.0)
    image = cv2.resize(image, (max(4, round(w * shrink)), max(4, round(h * shrink))), interpolation=cv2.INTER_AREA)
    length = int(rng.integers(1, 8))
    if length > 1:
        kernel = np.full((1, length), 1.0 / length, np.float32)
        image = cv2.filter2D(image, -1, kernel if rng.random() < 0.5 else kernel.T)
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, rng.uniform(1, 6), image.shape).astype(np.float32)
    quality = int(rng.integers(55, 95))
    return cv2.imdecode(np.frombuffer(encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality), np.uint8), -1)


def belt_surface(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A conveyor belt as float RGB: rubber, PVC or PU of any shade from black to white (now and then coloured),
    fine grain, streaks worn along the travel, maybe a splice across it and a few scuffs, at any angle."""
    value = rng.uniform(20, 235)
    tint = rng.normal(0, 6, 3) if rng.random() < 0.7 else rng.normal(0, 35, 3)  # grey, else green, blue, ...
    side = int(np.ceil(np.hypot(h, w))) + 2
    shade = cv2.GaussianBlur(rng.normal(0, rng.uniform(2, 8), (side, side)).astype(np.float32), (3, 3), 0)
    shade += cv2.GaussianBlur(rng.normal(0, rng.uniform(0, 5), (side, 1)).astype(np.float32), (1, 5), 0)
    if rng.random() < 0.3:
        at, width = int(rng.integers(0, side)), int(rng.integers(2, 7))
        shade[:, at : at + width] += rng.choice([-1, 1]) * rng.uniform(15, 40)
    for _ in range(int(rng.integers(0, 6))):
        centre = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        axes = (int(rng.integers(2, 14)), int(rng.integers(2, 6)))
        cv2.ellipse(shade, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(-30, 30)), -1)
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(0, 180), 1.0)
    turn[:, 2] += (w / 2 - side / 2, h / 2 - side / 2)
    shade = cv2.warpAffine(shade, turn, (w, h), flags=cv2.INTER_LINEAR)
    return np.clip(value + tint[None, None, :] + shade[..., None], 0, 255).astype(np.float32)


def _item_mask(rgb: np.ndarray, pad_value: int, tolerance: int = 24) -> np.ndarray:
    """The item of a letterboxed photo: neither the letterbox (nor a white studio background) nor a plain studio
    background of another colour (the colour round the rest), reached from the border. A photo without a plain
    background is all item, as a flat-lay lies on a belt."""
    item = ~_reached_from_border(_near(rgb, pad_value, tolerance))
    rows, cols = np.nonzero(item)
    if rows.size == 0:
        return item
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    inner = rgb[box]
    ring = np.concatenate([inner[0], inner[-1], inner[:, 0], inner[:, -1]]).astype(np.int16)
    studio = np.median(ring, axis=0)
    if np.mean(np.abs(ring - studio).max(axis=1) <= tolerance) >= 0.6:  # a plain border: a studio background
        coloured = ~_reached_from_border(_near(rgb, pad_value, tolerance) | _near(rgb, studio, tolerance))
        if 0.08 <= coloured[box].mean() <= 0.97:  # else that "background" was the item itself
            item = coloured
    return cv2.morphologyEx(item.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)


def _near(rgb: np.ndarray, colour: np.ndarray | int, tolerance: int) -> np.ndarray:
    return np.abs(rgb.astype(np.int16) - colour).max(axis=2) <= tolerance


def _reached_from_border(mask: np.ndarray) -> np.ndarray:
    """The parts of a boolean mask connected (4-way) to the image's border."""
    count, regions = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return np.isin(regions, border[border > 0] if count > 1 else [])


def replace_background(rgb: np.ndarray, texture: np.ndarray, pad_value: int, tolerance: int = 28) -> np.ndarray:
    """Put `texture` wherever the image is plain background: near-`pad_value` regions touching the border
    (a white item inside the photo stays, since it does not touch the border through background)."""
    background = _reached_from_border(_near(rgb, pad_value, tolerance))
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
