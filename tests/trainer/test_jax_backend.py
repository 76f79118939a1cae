"""The trainer on another Keras backend, as on a GPU machine without TensorFlow: a tiny run trained on JAX (CPU)
in a venv without TensorFlow stops after training; `sortline-train export` makes the bundle in another process, on
TensorFlow; the edge loads it and classifies as a run trained on TensorFlow does (within the parity gate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from trainer_images import CLASSES, draw_item, tiny_settings, write_dataset

from edge.bundle import load_bundle
from edge.classifier import Classifier

ROOT = Path(__file__).resolve().parents[2]
# Training runs in a venv with JAX and no TensorFlow (the trainer-jax extra), as on a GPU machine that has only
# JAX (TensorFlow imports JAX whenever both are installed, so one venv could not show that it is not needed).
JAX_PYTHON = ROOT / ".venv-jax" / "bin" / "python"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not JAX_PYTHON.is_file(), reason="no .venv-jax: scripts/bootstrap.sh test makes it"),
]


def _sortline_train(*args: str, backend: str, python: Path | str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "trainer", *args], capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip


def test_a_run_trained_on_jax_is_exported_on_tensorflow_and_classifies_like_one_trained_there(tmp_path):
    data = write_dataset(tmp_path / "data", 15, np.random.default_rng(5))
    (tmp_path / "tiny.toml").write_text(tiny_settings())
    common = ["--config", str(tmp_path / "tiny.toml"), "--cache-dir", str(tmp_path / "cache")]

    trained = _sortline_train("train", str(data), "--out", str(tmp_path / "jax-bundle"), "--work-dir",
                              str(tmp_path / "jax-run"), *common, backend="jax", python=JAX_PYTHON)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "trained on jax" in trained.stderr and not (tmp_path / "jax-bundle" / "bundle.json").exists()
    record = json.loads((tmp_path / "jax-run" / "run.json").read_text())
    assert record["backend"] == "jax"

    exported = _sortline_train("export", str(tmp_path / "jax-run"), backend="jax")  # the converter: TensorFlow
    assert exported.returncode == 0, exported.stderr[-3000:]
    on_tensorflow = _sortline_train("train", str(data), "--out", str(tmp_path / "tf-bundle"), "--work-dir",
                                    str(tmp_path / "tf-run"), *common, backend="tensorflow")  # fmt: skip
    assert on_tensorflow.returncode == 0, on_tensorflow.stderr[-3000:]

    from_jax, from_tf = load_bundle(tmp_path / "jax-bundle"), load_bundle(tmp_path / "tf-bundle")
    report = json.loads((tmp_path / "jax-bundle" / "report.json").read_text())
    assert report["parity"]["lane_agreement"] >= 0.98  # the same gate as every run (the default settings)
    assert from_jax.labels == from_tf.labels and from_jax.metadata.input == from_tf.metadata.input
    fresh_rng = np.random.default_rng(77)
    fresh = [(label, draw_item(label, fresh_rng)) for label in CLASSES for _ in range(8)]
    answers = {
        name: [bundle.labels[int(Classifier(bundle, threads=1).classify(image).argmax())] for _, image in fresh]
        for name, bundle in (("jax", from_jax), ("tensorflow", from_tf))
    }
    truth = np.array([label for label, _ in fresh])
    right = {name: float(np.mean(np.array(said) == truth)) for name, said in answers.items()}
    agree = float(np.mean(np.array(answers["jax"]) == np.array(answers["tensorflow"])))
    # Two trainings from their own random starts (the backends draw differently): alike, not identical.
    assert min(right.values()) >= 0.8 and agree >= 0.8, (right, agree)
