"""Compare committed bundles where it matters: photos unlike the training shop's, speed and size.

    .venv/bin/python bench/models.py [BUNDLE ...] [--ood ../shared/data/apparel-ood] [--json OUT]

For every bundle (default: each directory in models/), through the edge's own `Classifier` (scores, and the
familiarity check where the bundle has one): top-1 on the out-of-domain photos; the shares sent to the right lane,
to reject and to a wrong lane at the thresholds the daemon would use (chosen by the trainer on these same photos:
in-sample); the same shares **leaving one source out** (the manifest's `source` column): each source scored at the
thresholds (and, with the check, familiarity limits per label) chosen on all the other sources as the trainer
chooses them (the cheapest with at most 1 % wrong lane),
pooled over the sources, with one threshold for all labels and with one per label; the in-domain test accuracy
recorded by the trainer on the shop's own test split (`apparel`, where the bundle records it per data folder);
interpreter milliseconds per frame (p50 of 100 invocations, 1 and 2 threads) on this CPU; the model file's size; and
how many of the crafted inputs that are not garments (the simulator's five empty belts, the page's screenshots,
noise, a flat card, a gradient) the daemon's rule rejects. Prints a Markdown table headed by the CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.edge import interpreter_only  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.classifier import Classifier, classify_files  # noqa: E402
from edge.config import ModelSettings  # noqa: E402
from edge.decision import REJECT, Thresholds, lane_label  # noqa: E402
from edge.preprocess import IMAGE_SUFFIXES  # noqa: E402
from trainer.calibration import as_decided, leave_one_source_out, outcomes, unfamiliar  # noqa: E402

LOSO_MAX_WRONG = 0.01  # the target every bundle is judged at, whatever it was trained with


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


def measure(bundle_dir: Path, ood: Path | None, crafted: dict[str, np.ndarray]) -> dict:
    bundle = load_bundle(bundle_dir)
    meta = bundle.metadata
    thresholds = Thresholds.resolve(ModelSettings(bundle=bundle_dir), meta)
    row: dict = {
        "bundle": meta.model_id,
        "backbone": meta.training.get("settings", {}).get("backbone", "vgg16"),
        "model_mb": round(bundle.model_path.stat().st_size / 1e6, 1),
        "test_accuracy": meta.metrics.get("test_accuracy"),
        # the training shop's own test split, where the bundle was trained on more than one data folder
        "shop_test_accuracy": meta.metrics.get("decisions", {})
        .get("test_by_source", {})
        .get("apparel", {})
        .get("accuracy", meta.metrics.get("test_accuracy")),
        "threshold": ", ".join(f"{label} {thresholds.for_label(label):g}" for label in bundle.labels),
        "threshold_source": thresholds.source,
        "ms_1_thread": interpreter_ms(bundle_dir, 1),
        "ms_2_threads": interpreter_ms(bundle_dir, 2),
    }
    classifier = Classifier(bundle, threads=2)
    row["crafted"] = crafted_rejected(classifier, thresholds, crafted)
    if ood is not None:
        images = labelled_images(ood, bundle.labels)
        assessed = [(path, a, y) for (path, a, _), (_, y) in zip(
            classify_files(classifier, [p for p, _ in images]), images, strict=True) if a is not None]  # fmt: skip
        scores, y = np.stack([a.scores for _, a, _ in assessed]), np.array([y for _, _, y in assessed])
        novelty = np.array([np.nan if a.novelty is None else a.novelty for _, a, _ in assessed])
        limits = np.array([thresholds.novelty_limit(label) for label in bundle.labels])
        sources = manifest_sources(ood, [path for path, _, _ in assessed])
        at_daemon = np.array([thresholds.for_label(label) for label in bundle.labels])
        row["ood"] = {
            "images": len(y),
            "top1": round(float(np.mean(scores.argmax(1) == y)), 4),
            "unfamiliar": round(float(np.mean(unfamiliar(scores, novelty, limits))), 4),
            "at_daemon_thresholds": outcomes(as_decided(scores, novelty, limits), y, at_daemon),
            "leave_one_source_out": {
                kind: leave_one_source_out(
                    scores, y, sources, LOSO_MAX_WRONG, per_label=kind == "per_label", novelty=novelty
                )
                for kind in ("one", "per_label")
            }
            | {  # as the trainer chose before December 5's familiarity limits per label: the check at 1 for all
                "per_label_thresholds_only": leave_one_source_out(
                    as_decided(scores, novelty), y, sources, LOSO_MAX_WRONG, per_label=True
                )
            },
        }
    return row


def crafted_inputs(work: Path) -> dict[str, np.ndarray]:
    """Things that are not garments, as a camera could send them: the simulator's five empty belts (the first
    frame of each line, before an item arrives), the commissioning page's screenshots, noise, a flat orange card
    and a colour gradient."""
    import cv2

    from demo.line import LINES, write_line_clip

    images: dict[str, np.ndarray] = {}
    photo = sorted((ROOT / "demo" / "images").glob("*/*.*"))[0]
    for belt, line in {line.belt: line for line in reversed(LINES.values())}.items():  # each belt's first line
        clip = work / f"empty-{belt}.avi"
        write_line_clip(clip, [photo], ["jeans"], line, seed=1)
        capture = cv2.VideoCapture(str(clip))
        ok, frame = capture.read()
        capture.release()
        if ok:
            images[f"empty belt ({belt})"] = frame[:, frame.shape[1] // 4 : 3 * frame.shape[1] // 4]
    for shot in sorted((ROOT / "docs" / "screenshots").glob("*.png")):
        images[f"screenshot {shot.stem}"] = cv2.imread(str(shot))
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))
    images["noise"] = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    images["orange card"] = np.full((300, 300, 3), (40, 120, 200), np.uint8)
    images["gradient"] = cv2.merge([ramp, ramp.T, ramp])
    return images


def crafted_rejected(classifier: Classifier, thresholds: Thresholds, crafted: dict[str, np.ndarray]) -> dict:
    """How many crafted non-garment inputs the daemon's rule rejects, and the lanes the others would get."""
    let_through = {}
    for name, image in crafted.items():
        assessment = classifier.assess(image)
        label, confidence, _ = lane_label(assessment.scores, assessment.novelty, classifier.labels, thresholds)
        if label != REJECT:
            let_through[name] = f"{label} {confidence:.2f}"
    return {"inputs": len(crafted), "rejected": len(crafted) - len(let_through), "sent_to_a_lane": let_through}


def manifest_sources(root: Path, paths: list[Path]) -> list[str]:
    """Each photo's source from the set's manifest.csv (a photo it does not name: the set's folder name)."""
    manifest = root / "manifest.csv"
    named = {}
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as handle:
            named = {row["file"]: row.get("source") or "" for row in csv.DictReader(handle)}
    return [named.get(path.relative_to(root).as_posix()) or root.name for path in paths]


def _shares(row: dict) -> str:
    return f"{row['right']:.1%} / {row['reject']:.1%} / **{row['wrong']:.1%}**"


def markdown(result: dict) -> str:
    lines = [
        f"CPU: {cpu_line(result['cpu'])}",
        "",
        "| bundle | out-of-domain top-1 | at the daemon's thresholds (in-sample): right / reject / wrong lane |"
        " leave one source out, one threshold | leave one source out, per-label thresholds and familiarity limits"
        " | the same, thresholds only | in-domain test | not garments: rejected | ms/frame (1 / 2 threads) | MB |",
        "|---|---:|---|---|---|---|---:|---:|---:|---:|",
    ]
    for row in result["bundles"]:
        ood = row.get("ood")
        loso = ood["leave_one_source_out"] if ood else {}
        cells = [
            f"{ood['top1']:.1%}" if ood else "-",
            f"{_shares(ood['at_daemon_thresholds'])} at {row['threshold']}" if ood else "-",
            *(
                _shares(loso[k]["all"]) if loso.get(k) else "-"
                for k in ("one", "per_label", "per_label_thresholds_only")
            ),
            f"{row['shop_test_accuracy']:.1%}",
            f"{row['crafted']['rejected']} of {row['crafted']['inputs']}",
            f"{row['ms_1_thread']} / {row['ms_2_threads']}",
            str(row["model_mb"]),
        ]
        lines.append(f"| `{row['bundle'].split(':')[0]}` | " + " | ".join(cells) + " |")
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
    with tempfile.TemporaryDirectory() as work:
        crafted = crafted_inputs(Path(work))
    rows = [measure(b, ood, crafted) for b in bundles]
    result = {"cpu": cpu_description(), "ood": str(ood) if ood else None, "bundles": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
