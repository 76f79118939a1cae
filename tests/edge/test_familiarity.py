"""The familiarity check's stored form: the trainer judges novelty on exactly the rows and limit the edge loads."""

from __future__ import annotations

import io

import numpy as np

from edge import familiarity


def test_the_trainer_judges_novelty_on_the_rows_and_limit_the_bundle_stores():
    """float16 rows move a cosine distance by up to ~1e-3: at a per-label limit of 0.035 that decided which
    photos were unfamiliar, so the trainer chose thresholds on novelty the edge never computes."""
    rng = np.random.default_rng(4)
    training = np.abs(rng.normal(size=(40, 24))).astype(np.float32)  # ReLU embeddings
    judged_on = familiarity.as_stored(training)  # what the trainer computes novelty with
    data, spec = familiarity.describe(judged_on, 0.0351729, "test")
    stored = np.load(io.BytesIO(data), allow_pickle=False)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(judged_on, stored.astype(np.float32))
    assert spec.limit == familiarity.as_stored_limit(0.0351729) == 0.0352
    items = np.abs(rng.normal(size=(200, 24))).astype(np.float32)
    exact = familiarity.nearest_distances(familiarity.unit_rows(training), items)
    as_read = familiarity.nearest_distances(judged_on, items)
    assert 0 < np.abs(exact - as_read).max() < 2e-3  # the rounding the trainer must not ignore, and no more
