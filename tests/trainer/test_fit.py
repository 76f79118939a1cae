"""Phase 2's training batches: noisy cached features from the same distribution the edge produces."""

from __future__ import annotations

import numpy as np

from trainer.fit import RandomViews


def _batches(features: np.ndarray) -> RandomViews:
    labels = np.eye(2, dtype=np.float32)[np.arange(len(features)) % 2]
    return RandomViews(features, labels, np.ones(len(features), np.float32), batch_size=8, seed=0, noise=0.3)


def test_signed_features_stay_signed_under_training_noise():
    # EfficientNet's cut is a linear bottleneck: half its features are negative, on the edge too.
    features = np.random.default_rng(0).normal(0, 5, (16, 3, 4, 4, 8)).astype(np.float16)
    x, _, _ = _batches(features)[0]
    assert (x < 0).mean() > 0.4
    assert abs(float(x.mean()) - float(features.mean())) < 0.5


def test_relu_features_stay_non_negative_under_training_noise():
    features = np.abs(np.random.default_rng(0).normal(0, 5, (16, 3, 4, 4, 8))).astype(np.float16)
    x, _, _ = _batches(features)[0]
    assert x.min() >= 0
    assert (x == 0).mean() > 0.02  # the noise did push some below zero, and they were clipped
