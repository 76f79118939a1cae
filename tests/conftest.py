"""Session-wide fixtures: real TFLite bundles converted once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.model_factory import write_color_bundle


@pytest.fixture(scope="session")
def color_bundle_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tensorflow", reason="converting test models needs TensorFlow (the trainer-cpu extra)")
    return write_color_bundle(tmp_path_factory.mktemp("bundles") / "color-int8")


@pytest.fixture
def color_bundle(color_bundle_master: Path, tmp_path: Path) -> Path:
    """A private copy of the int8 colour bundle that a test may damage."""
    return Path(shutil.copytree(color_bundle_master, tmp_path / "color-int8"))
