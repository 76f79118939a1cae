"""Reruns after adding images: start from the previous run's weights instead of from ImageNet's.

With the frozen features cached, training is what a rerun still pays for. Every run leaves its final
weights in its work directory, with a fingerprint of the model they belong to (labels, input size,
head, cut point, activation caps, backbone weights, ensemble members) and the images they were trained
on. A warm-started rerun loads them when the fingerprint matches and none of those images now sits
in the validation or test split (that would leak it into the numbers), skips phase 1 and fine-tunes
a few epochs on the grown data set; otherwise it says why and trains from scratch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras

log = logging.getLogger("sortline.train")

WEIGHTS = "model.weights.h5"
FINGERPRINT = "model.json"


def save(work: Path, model: keras.Model, fingerprint: dict, trained_on: list[str]) -> None:
    """`trained_on`: sha256 of the training images."""
    model.save_weights(work / WEIGHTS)
    record = {"fingerprint": fingerprint, "trained_on": sorted(trained_on)}
    (work / FINGERPRINT).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Reused:
    weights: str  # the file loaded
    note: str  # what was reused: how many of this run's training images the weights have seen


def load(work: Path, model: keras.Model, fingerprint: dict, held_out: set[str], training: set[str]) -> Reused | None:
    """Load the previous weights into `model` if they fit it and never saw a `held_out` image (sha256).

    Returns what was loaded, or None (and the reason logged): then the run trains from scratch.
    """
    weights, record = work / WEIGHTS, work / FINGERPRINT
    if not (weights.is_file() and record.is_file()):
        log.warning("warm start: no earlier run in %s; training from scratch", work)
        return None
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        previous, trained_on = saved["fingerprint"], set(saved["trained_on"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("warm start: %s unreadable (%s); training from scratch", record, exc)
        return None
    changed = sorted(k for k in fingerprint.keys() | previous.keys() if fingerprint.get(k) != previous.get(k))
    if changed:
        log.warning("warm start: the earlier run in %s differs in %s; training from scratch", work, ", ".join(changed))
        return None
    leaked = trained_on & held_out
    if leaked:
        log.warning(
            "warm start: %d image(s) the earlier run trained on are now in validation or test (the split changed);"
            " training from scratch",
            len(leaked),
        )
        return None
    model.load_weights(weights)
    note = (
        f"the weights trained on {len(trained_on)} images; {len(training & trained_on)} of this run's"
        f" {len(training)} training images among them, {len(training - trained_on)} new"
    )
    log.info("warm start: continuing from %s: %s", weights, note)
    return Reused(str(weights), note)
