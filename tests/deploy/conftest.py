"""Shared by the deploy tests: a wheel of this checkout, so installs into a temporary root need no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sortline_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built once (pip fetches the build backend if it is not cached)."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("src")  # build from a copy: setuptools writes build/ into the tree
    subprocess.run(["cp", "-R", *(str(ROOT / n) for n in ("pyproject.toml", "README.md", "edge")), str(source)])
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot build a sortline wheel here (setuptools>=69 from PyPI needed): {result.stderr[-500:]}")
    return next(out.glob("sortline-*.whl"))
