"""Camera crop -> model input pixels, exactly as the trainer prepared its images.

The trainer builds its training and calibration images with this same function, so a frame on the
line and a photo in the data set reach the network through one code path.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.bundle import InputSpec

# The photo files a folder of labelled images may hold (training data, validation sets, benchmarks).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


def fit_to_input(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize (letterbox or stretch) and reorder colours; returns HxWx3 uint8 in the model's colour order."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    if spec.resize == "stretch":
        fitted = _resize(image_bgr, spec.width, spec.height)
    else:
        fitted = letterbox(image_bgr, spec.width, spec.height, spec.pad_value)
    if spec.color_order == "RGB":
        fitted = cv2.cvtColor(fitted, cv2.COLOR_BGR2RGB)
    return fitted


def letterbox(image: np.ndarray, width: int, height: int, pad_value: int) -> np.ndarray:
    """Scale to fit inside width x height keeping the aspect ratio, centre it, pad the rest."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = _resize(image, new_w, new_h)
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def decode_image(path: str) -> np.ndarray:
    """Read an image file as BGR (the camera's order); a clear error for an unreadable file."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: not a decodable image")
    return image


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """An image as JPEG bytes (crops kept for retraining, the page's frames and crops)."""
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding of a {image_bgr.shape} image failed")
    return encoded.tobytes()
