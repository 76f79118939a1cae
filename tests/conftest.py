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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first. Two workers take a file at a time (``--dist loadfile``): a minute-long file
    collected last leaves one worker idle while the other finishes it; started first, the short files fill
    in around it."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within and among the rest stays
