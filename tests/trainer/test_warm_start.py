"""Warm starts: the earlier weights are used only when they fit the model and never saw a held-out image."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from trainer import warm_start

FINGERPRINT = {"backbone": "efficientnet-lite0", "labels": ["a", "b"], "image_size": 32, "dense_units": 16}


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(16), keras.layers.Dense(2)])


@pytest.fixture
def earlier_run(tmp_path):
    trained = _model(1)
    warm_start.save(tmp_path, trained, FINGERPRINT, trained_on=["sha-a", "sha-b"])
    return tmp_path, trained


def test_matching_weights_are_loaded(earlier_run):
    work, trained = earlier_run
    fresh = _model(2)
    reused = warm_start.load(work, fresh, FINGERPRINT, held_out={"sha-c"}, training={"sha-a", "sha-d"})
    assert reused is not None and reused.weights == str(work / warm_start.WEIGHTS)
    assert reused.note == "the weights trained on 2 images; 1 of this run's 2 training images among them, 1 new"
    for loaded, saved in zip(fresh.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, saved)


def test_a_changed_model_trains_from_scratch(earlier_run, caplog):
    work, _ = earlier_run
    fresh = _model(2)
    before = fresh.get_weights()
    with caplog.at_level(logging.WARNING, logger="sortline.train"):
        assert warm_start.load(work, fresh, {**FINGERPRINT, "dense_units": 32}, held_out=set(), training=set()) is None
    assert "differs in dense_units; training from scratch" in caplog.text
    for kept, original in zip(fresh.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, original)


def test_weights_that_saw_a_now_held_out_image_are_refused(earlier_run, caplog):
    """A changed split must not let the warm-start weights carry test images they were trained on."""
    work, _ = earlier_run
    with caplog.at_level(logging.WARNING, logger="sortline.train"):
        assert warm_start.load(work, _model(2), FINGERPRINT, held_out={"sha-b"}, training=set()) is None
    assert "1 image(s) the earlier run trained on are now in validation or test" in caplog.text


def test_no_or_unreadable_earlier_run_trains_from_scratch(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sortline.train"):
        assert warm_start.load(tmp_path, _model(2), FINGERPRINT, held_out=set(), training=set()) is None
        warm_start.save(tmp_path, _model(1), FINGERPRINT, trained_on=[])
        (tmp_path / warm_start.FINGERPRINT).write_text("{not json")
        assert warm_start.load(tmp_path, _model(2), FINGERPRINT, held_out=set(), training=set()) is None
    assert "no earlier run" in caplog.text and "unreadable" in caplog.text
