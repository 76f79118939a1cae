"""Phase 2: its batches (noisy cached features from the distribution the edge produces) and what a warm start keeps."""

from __future__ import annotations

import keras
import numpy as np

from trainer.fit import RandomViews, train_two_phases


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


def test_a_warm_start_keeps_what_it_learnt_when_the_validation_loss_does_not_fall(tmp_path):
    """The loaded weights fit the validation images; the added training images (a line's crops) say otherwise.
    Kept whenever validation did not improve, the loaded weights came back from every loop as the live model."""
    keras.utils.set_random_seed(0)
    top = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax", name="head")])
    top.get_layer("head").set_weights([np.array([[1.5, -1.5], [0.0, 0.0]], np.float32), np.zeros(2, np.float32)])
    loaded = top.predict(np.array([[1.0, 0.0]], np.float32), verbose=0)[0]
    rng = np.random.default_rng(0)
    val_x = rng.normal(0, 1, (64, 1, 2)).astype(np.float32)
    train_x = rng.normal(0, 1, (256, 1, 2)).astype(np.float32)
    history = train_two_phases(
        top, "head", train_x, (train_x[:, 0, 0] > 0).astype(int),  # the opposite of what the weights say
        val_x, (val_x[:, 0, 0] < 0).astype(int),  # what they say
        num_classes=2, head_epochs=0, head_lr=1e-3, finetune_epochs=5, finetune_lr=0.05, patience=6,
        batch_size=16, feature_noise=0.0, label_smoothing=0.1, seed=0, checkpoint_dir=tmp_path,
    )  # fmt: skip
    after = top.predict(np.array([[1.0, 0.0]], np.float32), verbose=0)[0]
    assert history.best_phase == 2
    assert history.warm_start_val_loss is not None and history.best_val_loss > history.warm_start_val_loss
    assert after[1] > loaded[1] + 1e-3  # its best phase-2 epoch, moved toward what it was trained on
