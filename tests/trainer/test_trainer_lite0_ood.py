"""EfficientNet-Lite0 end to end with an out-of-domain set: OOD report, calibrated scores, a recommended threshold
that the edge then uses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from trainer_images import CLASSES, draw_item

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.config import ModelSettings
from edge.decision import Thresholds, lane_label
from trainer import calibration
from trainer.augment import Augmentation
from trainer.cli import build_parser
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow

STYLES = ("flat-lay", "worn")
SOURCES = ("shop-a", "shop-b")


def _write_ood(root: Path, rng: np.random.Generator) -> None:
    """Other-looking photos of the same classes (darker, larger), with a manifest naming each one's style and
    source (two sources: 6 and 12 photos)."""
    rows = []
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for i in range(6):
            image = (draw_item(label, rng, height=180, width=180).astype(np.float32) * 0.8).astype(np.uint8)
            name = f"{label}/{i}.jpg"
            cv2.imwrite(str(root / name), image)
            rows.append({"file": name, "label": label, "style": STYLES[i % 2], "source": SOURCES[i % 3 > 0]})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "label", "style", "source"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def lite0_run(tmp_path_factory) -> tuple[TrainConfig, dict]:
    from trainer.pipeline import run

    tmp = tmp_path_factory.mktemp("lite0")
    rng = np.random.default_rng(11)
    for label in CLASSES:
        (tmp / "data" / label).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(tmp / "data" / label / f"{i:02d}.jpg"), draw_item(label, rng))
    _write_ood(tmp / "ood", rng)
    cfg = TrainConfig(
        data=tmp / "data",
        out=tmp / "bundle",
        work_dir=tmp / "work",
        cache_dir=tmp / "cache",
        ood=[tmp / "ood"],
        backbone="efficientnet-lite0",
        weights="imagenet",
        image_size=64,
        views=2,
        head_epochs=40,
        finetune_epochs=2,
        calibration_per_class=6,
        near_duplicate_distance=2,
        val_fraction=0.2,
        test_fraction=0.2,
        augmentation=Augmentation(hue_p=0, grayscale_p=0, saturation=0.1),
        max_accuracy_drop=100.0,  # int8 rounding differs between CPUs; the gate is tested elsewhere
        min_agreement=0.0,
    )
    return cfg, run(cfg)


def test_lite0_bundle_loads_on_the_edge_and_classifies_new_images(lite0_run):
    cfg, result = lite0_run
    bundle = load_bundle(cfg.out)
    classifier = Classifier(bundle, threads=1)
    rng = np.random.default_rng(321)
    fresh = [(label, draw_item(label, rng)) for label in CLASSES for _ in range(5)]
    hits = [bundle.labels[int(np.argmax(classifier.classify(image)))] == label for label, image in fresh]
    assert np.mean(hits) >= 0.8, f"{np.mean(hits):.0%} of fresh images right"
    assert result["bundle"]["model_bytes"] > 3_000_000  # the whole Lite0, int8
    assert bundle.metadata.training["settings"]["backbone"] == "efficientnet-lite0"


def test_ood_accuracy_is_reported_per_class_and_style(lite0_run):
    cfg, result = lite0_run
    ood = load_bundle(cfg.out).metadata.metrics["ood_int8"]
    assert {k: v["support"] for k, v in ood["per_class"].items()} == dict.fromkeys(CLASSES, 6)
    assert set(ood["per_style"]) == {f"{label}/{style}" for label in CLASSES for style in STYLES}
    assert sum(v["images"] for v in ood["per_style"].values()) == 18
    assert 0 <= ood["accuracy"] <= 1 and result["ood_int8"]["accuracy"] == ood["accuracy"]
    test_images = sum(result["data"]["split_counts"]["test"].values())
    assert result["parity"]["images"] == test_images + 18  # the gate judges test and OOD photos together
    report = (cfg.out / "report.md").read_text()
    assert "Out-of-domain accuracy (int8, 18 photos" in report and "blue_bar/flat-lay" in report


def test_the_threshold_is_chosen_on_the_ood_set_and_the_edge_uses_it(lite0_run):
    cfg, result = lite0_run
    meta = load_bundle(cfg.out).metadata
    decisions = meta.metrics["decisions"]
    assert decisions["threshold_chosen_on"] == "out-of-domain validation"
    assert meta.recommended_threshold == decisions["recommended_threshold"] in calibration.THRESHOLDS
    ood_rows = result["decisions"]["risk_coverage"]["ood"]
    at_threshold = next(row for row in ood_rows if row["threshold"] == meta.recommended_threshold)
    assert at_threshold["wrong"] <= cfg.max_wrong_lane or meta.recommended_threshold == calibration.THRESHOLDS[-1]
    thresholds = Thresholds.resolve(ModelSettings(bundle=cfg.out), meta)
    assert (thresholds.default, thresholds.source) == (meta.recommended_threshold, "bundle")
    assert Thresholds.resolve(ModelSettings(bundle=cfg.out, threshold=0.5), meta).default == 0.5


def test_exported_scores_are_divided_by_the_fitted_temperature(lite0_run):
    """The warm-start weights are saved before calibration: the same model, softmax(logits / T), is the export."""
    from trainer.pipeline import blank_model

    cfg, _ = lite0_run
    meta = load_bundle(cfg.out).metadata
    assert meta.temperature and meta.temperature != 1.0
    model = blank_model(cfg, 3, {}).model
    model.load_weights(cfg.work_dir / "model.weights.h5")
    pixels = np.random.default_rng(5).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    uncalibrated = model.predict(pixels.astype(np.float32), verbose=0)
    exported = Classifier(load_bundle(cfg.work_dir / "float32"), threads=1)
    scores = np.stack([exported.assess_pixels(p).scores for p in pixels])
    np.testing.assert_allclose(scores, calibration.with_temperature(uncalibrated, meta.temperature), atol=1e-4)


def test_ood_flag_repeats_and_the_backbone_is_a_flag(tmp_path):
    args = build_parser().parse_args(
        ["train", "d", "--out", "o", "--ood", "a", "--ood", "b", "--backbone", "vgg16", "--max-wrong-lane", "0.05"]
    )
    assert args.ood == [Path("a"), Path("b")] and args.backbone == "vgg16"
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data")}
    cfg = TrainConfig(**flags, data=args.data[0], work_dir=tmp_path)
    assert cfg.finetune_from == "block5_conv1" and cfg.max_wrong_lane == 0.05
    assert TrainConfig(data="d", out="o").finetune_from == "block15"  # Lite0 by default, its last block
    assert json.loads(cfg.model_dump_json())["ood"] == ["a", "b"]


def test_each_ood_source_is_judged_at_thresholds_chosen_on_the_others(lite0_run):
    cfg, result = lite0_run
    loso = result["decisions"]["leave_one_source_out"]
    for kind in ("one", "per_label"):
        assert set(loso[kind]["sources"]) == set(SOURCES)
        assert [loso[kind]["sources"][s]["images"] for s in SOURCES] == [6, 12]
        shares = loso[kind]["all"]
        assert shares["images"] == 18 and shares["right"] + shares["reject"] + shares["wrong"] == pytest.approx(
            1, abs=2e-4
        )
    # the pooled shares are the sources' weighted by their photos, each at the threshold chosen without it
    one = loso["one"]["sources"]
    assert loso["one"]["all"]["wrong"] == pytest.approx(
        (6 * one["shop-a"]["wrong"] + 12 * one["shop-b"]["wrong"]) / 18, abs=1e-4
    )
    report = (cfg.out / "report.md").read_text()
    assert "Leave one source out" in report and "| shop-a | 6 |" in report and "| shop-b | 12 |" in report


def test_the_bundle_carries_per_label_thresholds_and_the_edge_applies_them(lite0_run):
    cfg, result = lite0_run
    meta = load_bundle(cfg.out).metadata
    assert meta.recommended_thresholds == result["decisions"]["recommended_thresholds"]
    assert sorted(meta.recommended_thresholds) == sorted(CLASSES)
    thresholds = Thresholds.resolve(ModelSettings(bundle=cfg.out), meta)
    assert {label: thresholds.for_label(label) for label in CLASSES} == meta.recommended_thresholds


def test_the_familiarity_check_rejects_what_is_unlike_the_training_images(lite0_run):
    cfg, _ = lite0_run
    bundle = load_bundle(cfg.out)
    assert bundle.metadata.familiarity is not None and bundle.familiar_path.is_file()
    classifier = Classifier(bundle, threads=1)
    trained_on = [cfg.data / s["file"] for s in json.loads((cfg.out / "split.json").read_text())["samples"]
                  if s["split"] == "train"]  # fmt: skip
    thresholds = Thresholds.resolve(ModelSettings(), bundle.metadata)
    ordinary = classifier.assess(cv2.imread(str(trained_on[0])))
    assert ordinary.novelty is not None and ordinary.novelty < 0.05  # its own embedding
    assert lane_label(ordinary.scores, ordinary.novelty, bundle.labels, thresholds)[2] != "unfamiliar"
    rng = np.random.default_rng(5)
    crafted = [rng.integers(0, 256, (120, 120, 3), dtype=np.uint8), np.full((120, 120, 3), (30, 160, 230), np.uint8)]
    for image in crafted:  # noise, a flat orange card: no bar of any colour
        assessment = classifier.assess(image)
        reason = lane_label(assessment.scores, assessment.novelty, bundle.labels, thresholds)[2]
        assert reason == "unfamiliar", f"novelty {assessment.novelty}"


def test_a_bundle_whose_training_embeddings_were_replaced_is_refused(lite0_run, tmp_path):
    import shutil

    from edge.bundle import BundleError

    cfg, _ = lite0_run
    copy = shutil.copytree(cfg.out, tmp_path / "bundle")
    (copy / "familiar.npy").write_bytes(b"not an array")
    with pytest.raises(BundleError, match=r"familiar.npy: sha256 does not match"):
        load_bundle(copy)
