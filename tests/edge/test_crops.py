"""The unsure-crop store: saved off the frame loop, inside its budget, and a full disk is counted, not hidden."""

from __future__ import annotations

import resource
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import CropSettings
from edge.crops import CropStore


def noise(seed: int, size: int = 160) -> np.ndarray:
    """A crop that does not compress: about 60 KB as JPEG."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture
def store(tmp_path: Path):
    crops = CropStore(CropSettings(directory=tmp_path / "crops", below_confidence=0.8, max_megabytes=0.2))
    crops.start()
    yield crops
    crops.stop()


def test_unsure_crops_are_saved_by_the_writer_and_the_oldest_go_when_over_budget(store: CropStore, tmp_path: Path):
    for seed in range(6):
        store.offer(noise(seed), "jeans", 0.42, f"run-{seed}")
        time.sleep(0.01)  # distinct modification times: "oldest" is well defined
    store.offer(noise(99), "jeans", 0.95, "run-sure")  # sure: not kept
    store.stop()
    kept = sorted(path.name for path in (tmp_path / "crops" / "jeans").glob("*.jpg"))
    assert store.saved == 6 and store.failed == 0
    assert sum(path.stat().st_size for path in (tmp_path / "crops").glob("*/*.jpg")) <= 0.2 * 1024 * 1024
    assert kept and all("run-sure" not in name for name in kept)
    assert "_run-5_42.jpg" in kept[-1]  # the newest stays


def test_a_full_disk_leaves_no_broken_file_and_is_counted(store: CropStore, tmp_path: Path):
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # files stop growing at 4 KB: as a full disk does
    try:
        saved = store.keep(noise(1), "saree", 0.3, "run-7")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert saved is None
    assert list((tmp_path / "crops").glob("*/*.jpg")) == []  # no truncated JPEG left for the labelling page
    assert store.failed == 1 and "could not save crop" in store.last_error and "too large" in store.last_error
    assert store.keep(noise(2), "saree", 0.3, "run-8") is not None  # space again: saving goes on
    assert store.last_error is None
