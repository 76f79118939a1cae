"""Reruns after adding images: start from the previous run's weights instead of from ImageNet's.

With the frozen features cached, training is what a rerun still pays for. Every run leaves its final
weights in its work directory, with a fingerprint of the model they belong to. A warm-started rerun
loads them when the fingerprint matches (labels, input size, head, cut point, activation caps and
backbone weights), skips phase 1 and fine-tunes a few epochs on the grown data set; otherwise it says
why and trains from scratch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras

log = logging.getLogger("sortline.train")

WEIGHTS = "model.weights.h5"
FINGERPRINT = "model.json"


def save(work: Path, model: keras.Model, fingerprint: dict) -> None:
    model.save_weights(work / WEIGHTS)
    (work / FINGERPRINT).write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load(work: Path, model: keras.Model, fingerprint: dict) -> str | None:
    """Load the previous weights into `model` if they fit it; None (and the reason logged) if not."""
    weights, record = work / WEIGHTS, work / FINGERPRINT
    if not (weights.is_file() and record.is_file()):
        log.warning("warm start: no earlier run in %s; training from scratch", work)
        return None
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("warm start: %s unreadable (%s); training from scratch", record, exc)
        return None
    changed = sorted(k for k in fingerprint.keys() | previous.keys() if fingerprint.get(k) != previous.get(k))
    if changed:
        log.warning("warm start: the earlier run in %s differs in %s; training from scratch", work, ", ".join(changed))
        return None
    model.load_weights(weights)
    log.info("warm start: continuing from %s", weights)
    return str(weights)
