"""Belt benchmark: does every item on a conveyor get exactly one decision, and the right lane, as often as
the same photos classified as photos?

    .venv/bin/python bench/belt.py [--bundle models/apparel-efficientnet-lite2-int8] [--per-class 4]
        [--sets test,ood] [--slow 1,2,3,5] [--json bench/results/belt.json]

For each set of labelled photos (``test``: the bundle's test split, from ../shared/data/apparel, else the
six demo photos; ``ood``: ../shared/data/apparel-ood, when present) it
  * classifies the photos as photos (the edge's classifier, the daemon's reject threshold);
  * renders them onto a synthetic conveyor clip (demo/conveyor.py: one item at a time, a second of empty
    belt between items, 15 fps), runs the real daemon on it in presence mode with realtime pacing against
    a real mosquitto, and matches its decisions to the items by order, as a PLC in presence mode does;
  * runs the daemon again with every classification slowed to 1, 2, 3 and 5 s (a big model on a small
    board), to show that detection does not wait for the classifier: items must not merge.
Not a test: it prints a table (and writes JSON) for the README, with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.edge import decisions_of, mosquitto  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from demo.conveyor import write_conveyor_clip  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.classifier import Classifier  # noqa: E402
from edge.config import ModelSettings  # noqa: E402
from edge.decision import REJECT, Thresholds  # noqa: E402
from edge.preprocess import decode_image  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

# The real daemon, with every classification slowed down by the seconds given as the first argument.
SLOWED_DAEMON = """
import sys, time
from edge import classifier
seconds = float(sys.argv.pop(1))
original = classifier.Classifier.classify
def slowed(self, image):
    time.sleep(seconds)
    return original(self, image)
classifier.Classifier.classify = slowed
from edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def photo_set(name: str, bundle_dir: Path) -> list[tuple[Path, str]]:
    """(photo, label) of a set; empty when its photos are not on this machine."""
    if name == "test":
        split = json.loads((bundle_dir / "split.json").read_text()) if (bundle_dir / "split.json").is_file() else None
        if split and (SHARED / "apparel").is_dir():
            return [(SHARED / "apparel" / s["file"], s["label"]) for s in split["samples"] if s["split"] == "test"]
        return [(path, path.parent.name) for path in sorted((ROOT / "demo" / "images").glob("*/*.*"))]
    manifest = SHARED / "apparel-ood" / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as handle:
        return [(manifest.parent / row["file"], row["label"]) for row in csv.DictReader(handle)]


def sample(photos: list[tuple[Path, str]], per_class: int, seed: int = 0) -> list[tuple[Path, str]]:
    """`per_class` photos of each label, in a shuffled belt order (the same on every run)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in sorted({label for _, label in photos}):
        of_label = [p for p in photos if p[1] == label]
        chosen += [of_label[i] for i in sorted(rng.choice(len(of_label), min(per_class, len(of_label)), False))]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def tally(predicted: list[str], truth: list[str]) -> dict[str, object]:
    """right / reject / wrong, matching the nth decision to the nth item."""
    pairs = list(zip(predicted, truth, strict=False))
    right = sum(p == t for p, t in pairs)
    reject = sum(p == REJECT for p, _ in pairs)
    return {
        "items": len(truth),
        "decisions": len(predicted),
        "right": right,
        "reject": reject,
        "wrong": len(pairs) - right - reject,
        "accuracy": round(right / len(truth), 3) if truth else None,
    }


def as_photos(bundle_dir: Path, photos: list[tuple[Path, str]]) -> dict[str, object]:
    classifier = Classifier(load_bundle(bundle_dir), threads=2)
    thresholds = Thresholds.resolve(ModelSettings(bundle=bundle_dir), classifier.bundle.metadata)
    predicted = []
    for path, _ in photos:
        scores = classifier.classify(decode_image(str(path)))
        top = classifier.labels[int(scores.argmax())]
        predicted.append(top if scores.max() >= thresholds.for_label(top) else REJECT)
    return tally(predicted, [label for _, label in photos])


def on_the_belt(bundle_dir: Path, clip: Path, truth: list[str], port: int, slow_s: float, workdir: Path) -> dict:
    """Run the daemon on the clip (realtime, presence mode); its decisions matched to the items by order."""
    config = workdir / "belt.toml"
    config.write_text(
        f'device_id = "belt"\nlog_level = "WARNING"\n[camera]\nsource = "{clip}"\nrealtime = true\n'
        f'[model]\nbundle = "{bundle_dir}"\nthreads = 2\n[trigger]\nmode = "presence"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nstats_interval_s = 3600\n'
    )
    command = [sys.executable, "-c", SLOWED_DAEMON, str(slow_s)] if slow_s else [sys.executable, "-m", "edge"]
    started = time.monotonic()
    with decisions_of("belt", port) as decisions:
        subprocess.run([*command, "--config", str(config), "run"], cwd=ROOT, check=True)
    ordered = sorted({d["seq"]: d for d in decisions}.values(), key=lambda d: d["seq"])
    result = tally([d["label"] for d in ordered], truth)
    result["no_frames"] = sum(d["reason"] == "no_frames" for d in ordered)
    result["latency_p50_ms"] = round(float(np.median([d["latency_ms"] for d in ordered if d["latency_ms"]])), 1)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "apparel-efficientnet-lite2-int8")
    parser.add_argument("--per-class", type=int, default=4, help="photos per label and set (12 items per clip)")
    parser.add_argument("--sets", default="test,ood", help="photo sets: test, ood")
    parser.add_argument("--slow", default="1,2,3,5", help="seconds per classification for the slowed runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    results: dict[str, object] = {"bundle": bundle.metadata.model_id, "cpu": cpu_description(), "sets": {}}
    print(cpu_line(results["cpu"]), flush=True)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        workdir = Path(tmp)
        for name in args.sets.split(","):
            photos = sample(photo_set(name, args.bundle), args.per_class)
            if not photos:
                print(f"{name}: photos not on this machine, skipped", flush=True)
                continue
            truth = [label for _, label in photos]
            clip = workdir / f"{name}.avi"
            write_conveyor_clip(clip, [path for path, _ in photos], truth, fps=15)
            row: dict[str, object] = {"photos": as_photos(args.bundle, photos), "belt": {}}
            for slow_s in [0.0, *(float(s) for s in args.slow.split(",") if s)]:
                run = on_the_belt(args.bundle, clip, truth, port, slow_s, workdir)
                row["belt"][f"{slow_s:g}s" if slow_s else "live"] = run  # type: ignore[index]
                print(f"{name} {slow_s:g} s/classification: {run}", flush=True)
            results["sets"][name] = row  # type: ignore[index]
            print(f"{name} as photos: {row['photos']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
