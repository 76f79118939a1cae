"""Whole path on tiny real images: train -> export -> the edge's load_bundle + Classifier classify them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from trainer_images import CLASSES, draw_item

from edge.bundle import Quantization, load_bundle, write_bundle
from edge.classifier import Classifier
from trainer.augment import Augmentation
from trainer.cli import EXIT_BAD_INPUT, main
from trainer.config import TrainConfig
from trainer.evaluate import ParityError, check_parity, score_candidate

pytestmark = pytest.mark.slow

# Tiny and fast: 32x32 input, random init, colour is the signal here (so no hue/grayscale augmentation).
# The parity gate is open: int8 kernels round differently on AVX-512 and AVX2 CPUs, and on a 10-image
# test split one flipped image is 10 points. The gate itself is tested apart (unit tests and a broken
# calibration that fails on every CPU).
LENIENT_GATE = {"max_accuracy_drop": 100.0, "min_agreement": 0.0}
STRICT_GATE = {"max_accuracy_drop": 1.0, "min_agreement": 0.98}
TINY = {
    "backbone": "vgg16",
    "weights": "none",
    "image_size": 32,
    "views": 2,
    "members": 2,  # the ensemble path: two members with their own views, joined in one exported model
    "head_epochs": 60,
    "head_lr": 3e-3,
    "finetune_epochs": 2,
    "patience": 8,
    "calibration_per_class": 8,
    "near_duplicate_distance": 2,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "augmentation": Augmentation(hue_p=0, grayscale_p=0, saturation=0.1),
    **LENIENT_GATE,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TrainConfig, dict]:
    from trainer.pipeline import run

    tmp = tmp_path_factory.mktemp("e2e")
    root = tmp / "data"
    rng = np.random.default_rng(7)
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for i in range(15):
            cv2.imwrite(str(root / label / f"{i:02d}.jpg"), draw_item(label, rng))
    near_dup = cv2.resize(cv2.imread(str(root / "red_box" / "00.jpg")), None, fx=0.7, fy=0.7)
    cv2.imwrite(str(root / "red_box" / "00_resized.jpg"), near_dup, [cv2.IMWRITE_JPEG_QUALITY, 60])
    (root / "green_disc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cfg = TrainConfig(data=root, out=tmp / "bundle", work_dir=tmp / "work", cache_dir=tmp / "cache", **TINY)
    return cfg, run(cfg)


def test_bundle_loads_in_the_edge_and_classifies_new_images(trained):
    cfg, _ = trained
    bundle = load_bundle(cfg.out)
    classifier = Classifier(bundle, threads=1)

    assert bundle.labels == tuple(sorted(CLASSES))
    assert bundle.metadata.input.dtype == "uint8" and bundle.metadata.input.preprocessing_in_model
    assert bundle.metadata.input.height == bundle.metadata.input.width == 32
    assert bundle.metadata.quantization.scheme == "int8"
    assert "class-balanced" in bundle.metadata.quantization.calibration
    rng = np.random.default_rng(123)  # images never seen in training
    fresh = [(label, draw_item(label, rng)) for label in CLASSES for _ in range(6)]
    hits = [bundle.labels[int(np.argmax(classifier.classify(image)))] == label for label, image in fresh]
    assert np.mean(hits) >= 0.8, f"{np.mean(hits):.0%} of fresh images classified right"  # chance: 33 %


def test_bundle_metadata_records_parity_metrics_and_data(trained):
    cfg, result = trained
    meta = load_bundle(cfg.out).metadata
    parity = meta.metrics["parity"]
    assert set(parity) >= {"float32_accuracy", "int8_accuracy", "top1_agreement"}
    assert parity["images"] == sum(result["data"]["split_counts"]["test"].values())
    assert 0.5 <= parity["top1_agreement"] <= 1.0  # int8 is the float model, rounded
    assert meta.metrics["test_accuracy"] == result["test_int8"]["accuracy"] == parity["int8_accuracy"]
    assert set(meta.metrics["test_int8"]["per_class"]) == set(CLASSES)
    data = meta.training["data"]
    assert data["broken"] == 1 and data["images"] == 46
    assert data["class_counts"] == {"blue_bar": 15, "green_disc": 15, "red_box": 16}
    assert meta.trainer_version


def test_each_member_trains_on_the_original_and_its_own_augmented_views(trained):
    cfg, result = trained
    members = result["training"]["members"]
    assert [m["views"] for m in members] == [[0, 1], [0, 2]]
    assert [m["seed"] for m in members] == [cfg.seed, cfg.seed + 1]
    counts = {name: sum(c.values()) for name, c in result["data"]["split_counts"].items()}
    # three views cached per training image (one shared, one per member), one per validation image; the test
    # split is scored by the exported files, never from cached features
    assert result["training"]["cache"]["computed"] == 3 * counts["train"] + counts["val"]
    assert "2 ensemble members (seeds 1, 2, own augmented views each)" in (cfg.out / "report.md").read_text()


def test_report_plots_and_split_file_are_written(trained):
    cfg, _ = trained
    for name in ("report.json", "report.md", "training_curves.png", "confusion_matrix.png", "worst_mistakes.png"):
        assert (cfg.out / name).stat().st_size > 100, name
    report = json.loads((cfg.out / "report.json").read_text())
    assert all(member["phase1"]["val_loss"] for member in report["training"]["history"])
    assert report["timing"]["total_s"] > 0
    assert "Test accuracy (int8 bundle" in (cfg.out / "report.md").read_text()
    split = json.loads((cfg.out / "split.json").read_text())["samples"]
    by_file = {item["file"]: item for item in split}
    assert by_file["red_box/00.jpg"]["group"] == by_file["red_box/00_resized.jpg"]["group"]
    assert by_file["red_box/00.jpg"]["split"] == by_file["red_box/00_resized.jpg"]["split"]
    assert (cfg.work_dir / "float32" / "model.tflite").is_file()


def test_float32_tflite_takes_rgb_pixels_and_matches_keras(trained):
    """Preprocessing lives in the model: the exported float model equals Keras on the same RGB pixels (with the
    fitted temperature, which the export divides into the last layer after the weights were saved)."""
    import keras

    from trainer.calibration import with_temperature
    from trainer.pipeline import blank_model

    cfg, _ = trained
    model = blank_model(cfg, 3, load_bundle(cfg.out).metadata.training["activation_caps"]).model
    model.load_weights(cfg.work_dir / "model.weights.h5")
    classifier = Classifier(load_bundle(cfg.work_dir / "float32"), threads=1)
    pixels = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    tflite = np.stack([classifier.assess_pixels(p).scores for p in pixels])
    keras_scores = keras.ops.convert_to_numpy(model(pixels.astype(np.float32)))
    temperature = load_bundle(cfg.out).metadata.temperature
    np.testing.assert_allclose(tflite, with_temperature(keras_scores, temperature), atol=1e-4)


def test_parity_gate_refuses_an_int8_model_with_broken_calibration(trained, tmp_path):
    """Calibrating on black frames sets the int8 ranges far too narrow; scored as the pipeline scores a candidate,
    the gate must refuse it on every CPU."""
    from trainer.export import to_tflite
    from trainer.pipeline import blank_model

    cfg, _ = trained
    bundle = load_bundle(cfg.out)
    joined = blank_model(cfg, 3, bundle.metadata.training["activation_caps"])
    joined.model.load_weights(cfg.work_dir / "model.weights.h5")
    broken = tmp_path / "broken-int8"
    write_bundle(
        broken,
        to_tflite(joined.exportable(), [np.zeros((32, 32, 3), np.uint8)] * 4),
        name="broken",
        version="1",
        labels=bundle.labels,
        input_spec=bundle.metadata.input,
        quantization=Quantization(scheme="int8", calibration="black frames"),
    )
    split = json.loads((cfg.out / "split.json").read_text())["samples"]
    test = [(cfg.data / item["file"], bundle.labels.index(item["label"])) for item in split if item["split"] == "test"]
    train = [cfg.data / item["file"] for item in split if item["split"] == "train"]
    scored = score_candidate(
        broken,
        cfg.work_dir / "float32",
        bundle.labels,
        train=train,
        test=([path for path, _ in test], np.array([y for _, y in test])),
        ood=([], np.array([], dtype=int)),
        ood_sources=[],
        val=([path for path, _ in test], np.array([y for _, y in test])),
        max_wrong_lane=0.03,
        threads=1,
    )
    with pytest.raises(ParityError, match="parity gate failed"):
        check_parity(scored.parity, **STRICT_GATE)


def test_predict_command_prints_the_top_label(trained, capsys, tmp_path):
    cfg, _ = trained
    image = tmp_path / "item.png"
    cv2.imwrite(str(image), draw_item("green_disc", np.random.default_rng(99)))
    assert main(["predict", "--bundle", str(cfg.out), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: green_disc")
    assert main(["predict", "--bundle", str(cfg.out), str(tmp_path / "missing.png")]) == EXIT_BAD_INPUT


def test_cli_refuses_bad_weights_before_training(trained, tmp_path, capsys):
    cfg, _ = trained
    code = main(
        [
            "train",
            str(cfg.data),
            "--out",
            str(tmp_path / "o"),
            "--work-dir",
            str(tmp_path / "w"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--image-size",
            "32",
            "--weights",
            str(tmp_path / "nope.h5"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "no such file" in capsys.readouterr().err
    assert not Path(tmp_path / "o" / "bundle.json").exists()


def _grown_copy(cfg: TrainConfig, tmp_path: Path, added: int) -> TrainConfig:
    """The trained run's data plus `added` new images per class, with a copy of its work dir and split."""
    import shutil

    data, work = tmp_path / "data", tmp_path / "work"
    shutil.copytree(cfg.data, data)
    shutil.copytree(cfg.work_dir, work)
    rng = np.random.default_rng(2024)
    for label in CLASSES:
        for i in range(added):
            cv2.imwrite(str(data / label / f"new{i}.jpg"), draw_item(label, rng))
    shutil.copy(cfg.out / "split.json", tmp_path / "split.json")
    return cfg.model_copy(
        update={"data": data, "work_dir": work, "out": tmp_path / "bundle", "split_file": tmp_path / "split.json"}
    )


def test_warm_start_rerun_continues_from_the_previous_weights(trained, tmp_path):
    import keras

    from trainer.pipeline import run

    cfg, first = trained
    grown = _grown_copy(cfg, tmp_path, added=2).model_copy(update={"warm_start": True, "warm_start_epochs": 2})
    result = run(grown)
    training = result["training"]
    assert training["warm_start_from"] == str(grown.work_dir / "model.weights.h5")
    for member in training["members"]:
        assert member["epochs"]["phase1"] == 0 and 1 <= member["epochs"]["phase2"] <= 2
    assert 0 < training["cache"]["computed"] <= 6 * (1 + grown.members)  # only the new images' views ...
    assert training["cache"]["reused"] == first["training"]["cache"]["computed"]  # ... the rest from the cache
    assert result["data"]["images"] == 52
    assert result["data"]["reused_split_assignments"] == 46  # the earlier split kept, the new images added
    assert "Warm start from" in (grown.out / "report.md").read_text()
    assert keras.mixed_precision.global_policy().name == "float32"  # the run's compute precision did not leak


def test_a_finished_run_is_exported_again_in_another_process_to_the_same_model(trained, tmp_path):
    """What a run trained on JAX or PyTorch gets: `sortline-train export WORK_DIR` where TensorFlow is."""
    cfg, result = trained
    again = tmp_path / "exported"
    done = subprocess.run(  # as on the machine the run came from: KERAS_BACKEND names another backend
        [sys.executable, "-m", "trainer", "export", str(cfg.work_dir), "--out", str(again)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"bundle {again}:" in done.stdout
    first, second = load_bundle(cfg.out), load_bundle(again)
    assert second.labels == first.labels and second.metadata.temperature == first.metadata.temperature
    assert second.metadata.recommended_thresholds == first.metadata.recommended_thresholds
    rng = np.random.default_rng(321)
    fresh = [draw_item(label, rng) for label in CLASSES for _ in range(4)]
    scores = [(Classifier(b, threads=1).classify(image) for image in fresh) for b in (first, second)]
    assert [s.argmax() for s in scores[0]] == [s.argmax() for s in scores[1]]
    report = json.loads((again / "report.json").read_text())
    assert report["training"]["members"] == result["training"]["members"]  # the training record carried over


def test_export_of_a_directory_without_a_finished_run_says_so(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "no finished training run here (missing run.json, trained.weights.h5, split.json)" in capsys.readouterr().err
