"""Compare committed bundles where it matters: photos unlike the training shop's, speed and size.

    .venv/bin/python bench/models.py [BUNDLE ...] [--ood ../shared/data/apparel-ood] [--json OUT]

For every bundle (default: each directory in models/): top-1 on the out-of-domain photos and the share of
them sent to the right lane, to reject and to a wrong lane at the threshold the daemon would use (the
bundle's recommended one, else 0.6), all through the edge's own `Classifier`; the same three shares when
the threshold is chosen as the trainer chooses it but on a random half of the photos and applied to the
other half (the mean of 200 such splits: the bundle's own threshold was chosen on all of them, so its
wrong-lane share is in-sample by construction); the in-domain test
accuracy recorded by the trainer; interpreter milliseconds per frame (p50 of 100 invocations, 1 and 2
threads) on this CPU; and the model file's size. Prints a Markdown table headed by the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.edge import interpreter_only  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.classifier import Classifier, classify_files  # noqa: E402
from edge.config import ModelSettings  # noqa: E402
from edge.decision import Thresholds  # noqa: E402
from edge.preprocess import IMAGE_SUFFIXES  # noqa: E402
from trainer.calibration import outcomes, recommend_threshold  # noqa: E402


def labelled_images(root: Path, labels: tuple[str, ...]) -> list[tuple[Path, int]]:
    return [
        (path, labels.index(folder.name))
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in labels)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def interpreter_ms(bundle_dir: Path, threads: int) -> float:
    """p50 of 100 invocations on a demo photo (bench/edge.py's interpreter-only loop)."""
    image = sorted((ROOT / "demo" / "images").glob("*/*.*"))[0]
    return round(interpreter_only(bundle_dir, image, threads, runs=100)["p50_ms"], 1)


def held_out(scores: np.ndarray, y: np.ndarray, max_wrong: float, splits: int = 200) -> dict:
    """Right / reject / wrong on one half at the threshold recommended on the other, averaged over random halves."""
    rng, rows = np.random.default_rng(0), []
    for _ in range(splits):
        order = rng.permutation(len(y))
        chosen_on, applied_to = order[: len(y) // 2], order[len(y) // 2 :]
        threshold = recommend_threshold(scores[chosen_on], y[chosen_on], max_wrong)
        rows.append(outcomes(scores[applied_to], y[applied_to], threshold))
    mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("threshold", "right", "reject", "wrong")}
    return mean | {"wrong_p90": round(float(np.percentile([r["wrong"] for r in rows], 90)), 4), "splits": splits}


def measure(bundle_dir: Path, ood: Path | None) -> dict:
    bundle = load_bundle(bundle_dir)
    meta = bundle.metadata
    thresholds = Thresholds.resolve(ModelSettings(bundle=bundle_dir), meta)
    row: dict = {
        "bundle": meta.model_id,
        "backbone": meta.training.get("settings", {}).get("backbone", "vgg16"),
        "model_mb": round(bundle.model_path.stat().st_size / 1e6, 1),
        "test_accuracy": meta.metrics.get("test_accuracy"),
        "threshold": thresholds.default,
        "threshold_source": thresholds.source,
        "ms_1_thread": interpreter_ms(bundle_dir, 1),
        "ms_2_threads": interpreter_ms(bundle_dir, 2),
    }
    if ood is not None:
        classifier = Classifier(bundle, threads=2)
        images = labelled_images(ood, bundle.labels)
        scored = [(scores, y) for (_, scores, _), (_, y) in zip(
            classify_files(classifier, [p for p, _ in images]), images, strict=True) if scores is not None]  # fmt: skip
        scores, y = np.stack([s for s, _ in scored]), np.array([y for _, y in scored])
        top, confident = scores.argmax(1), scores.max(1) >= thresholds.default
        row["ood"] = {
            "images": len(y),
            "top1": round(float(np.mean(top == y)), 4),
            "right": round(float(np.mean(confident & (top == y))), 4),
            "reject": round(float(np.mean(~confident)), 4),
            "wrong": round(float(np.mean(confident & (top != y))), 4),
            "held_out": held_out(scores, y, meta.training.get("settings", {}).get("max_wrong_lane", 0.03)),
        }
    return row


def markdown(result: dict) -> str:
    lines = [
        f"CPU: {cpu_line(result['cpu'])}",
        "",
        "| bundle | out-of-domain top-1 | at its threshold: right / reject / wrong lane | threshold chosen on"
        " half, other half: right / reject / wrong | in-domain test | ms/frame (1 / 2 threads) | MB |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for row in result["bundles"]:
        ood = row.get("ood")
        top1 = f"{ood['top1']:.1%}" if ood else "-"
        lanes = f"{ood['right']:.1%} / {ood['reject']:.1%} / **{ood['wrong']:.1%}**" if ood else "-"
        half = ood["held_out"] if ood else None
        held = f"{half['right']:.1%} / {half['reject']:.1%} / **{half['wrong']:.1%}**" if half else "-"
        lines.append(
            f"| `{row['bundle'].split(':')[0]}` | {top1} | {lanes} at {row['threshold']:g} ({row['threshold_source']})"
            f" | {held} | {row['test_accuracy']:.1%} | {row['ms_1_thread']} / {row['ms_2_threads']}"
            f" | {row['model_mb']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", type=Path)
    parser.add_argument("--ood", type=Path, default=ROOT.parent / "shared" / "data" / "apparel-ood")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    bundles = args.bundles or sorted(p for p in (ROOT / "models").iterdir() if (p / "bundle.json").is_file())
    ood = args.ood if args.ood.is_dir() else None
    if ood is None:
        print(f"{args.ood}: not found; out-of-domain columns left empty", file=sys.stderr)
    result = {"cpu": cpu_description(), "ood": str(ood) if ood else None, "bundles": [measure(b, ood) for b in bundles]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
