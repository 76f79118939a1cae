"""The relabel loop on a belt: do a line's own labelled crops close the gap between belt and photos?

    .venv/bin/python bench/belt_relabel.py --json bench/results/belt_relabel.json     # Lite0, ~15 min on 2 cores

`bench/relabel.py` lets each out-of-domain source stand for a line, as photos. On a real line the operator labels
what the camera cut, so here the line is a simulated belt (demo/line.py) carrying out-of-domain photos the model
never trained on:

1. the photos (``--per-class`` of each label from ../shared/data/apparel-ood) ride each ``--lines`` belt; the
   daemon's presence mode cuts each item's most centred crop (`bench/belt_crops.py`);
2. base: the bundle a line runs today (`bench/relabel.py`'s, trained once and kept in --work), as a line whose
   items it never saw runs it: its thresholds and familiarity limits chosen on the out-of-domain photos that do
   not ride the belt (`bench/relabel.py`'s `live_bundle`), not on all of them, the belt's among them;
3. on the first line, ``--labelled`` crops (class-balanced, seeded) are the operator's labels (a folder with
   line.json, as the page exports it); the loop retrains warm with them, the out-of-domain photos not on the belt
   as its guard;
4. the line's other crops judge before and after, one crop an item as the daemon's worker decides its first
   (`bench/belt_crops.score`), and so do the same unlabelled items on the other belts, the shop's test split and
   the guard photos, so a cost elsewhere shows. Each set also as photos, for the gap the loop is meant to close.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.belt import photo_set, sample
from bench.belt_crops import line_crops, loaded, score
from bench.machine import cpu_description, cpu_line
from bench.models import LOSO_MAX_WRONG
from bench.relabel import SHARED, balanced, base_bundle, link, live_bundle
from edge.bundle import load_bundle
from trainer import calibration, evaluate
from trainer.config import TrainConfig
from trainer.pipeline import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="dark-rubber,light-grey", help="the first is the line that labels")
    parser.add_argument("--per-class", type=int, default=70)
    parser.add_argument("--labelled", type=int, default=40)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--split-file", type=Path, default=Path("models/apparel-efficientnet-lite0-int8/split.json"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sortline-bench-relabel")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a trainer setting for the loop's run"
    )
    args = parser.parse_args()
    ood_root = SHARED / "apparel-ood"
    photos = sample(photo_set("ood", Path()), args.per_class)
    if not photos:
        print("../shared/data/apparel-ood is not on this machine", file=sys.stderr)
        return 2
    report: dict = {
        "cpu": cpu_description(),
        "backbone": args.backbone,
        "settings": dict(s.split("=", 1) for s in args.set),
    }
    print(cpu_line(report["cpu"]), flush=True)
    names = args.lines.split(",")
    crops = {}
    for name in names:
        crops[name] = line_crops(args.work / f"belt-crops-{args.per_class}" / name, name, photos)
    labelled = chosen_crops(crops[names[0]], args.labelled)
    judged = {name: [(p, label) for p, label in found if p.name not in labelled] for name, found in crops.items()}
    on_belt = {str(photo.relative_to(ood_root)) for photo, _ in photos}
    with (ood_root / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        guard_rows = [row for row in csv.DictReader(handle) if row["file"] not in on_belt]
    guard = [(ood_root / row["file"], row["label"]) for row in guard_rows]

    base = base_bundle(args.work, args.split_file, args.backbone)
    work = args.work / f"belt-{names[0]}"
    shutil.rmtree(work, ignore_errors=True)
    line_dir, guard_dir = work / "line", work / "ood-not-on-belt"
    for path, label in crops[names[0]]:
        if path.name in labelled:
            (line_dir / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, line_dir / label / path.name)
    if labelled:
        (line_dir / "line.json").write_text(json.dumps({"line": names[0], "model": base["model"]}) + "\n")
    link(ood_root, guard_dir, guard_rows, manifest=True)
    shutil.copytree(base["work"], work / "run", ignore=shutil.ignore_patterns("float32", "int8-candidate"))
    shutil.copy(base["split"], work / "split.json")
    live = live_on_guard(base["out"], work / "live", guard)
    cfg = TrainConfig(
        data=SHARED / "apparel", more_data=[SHARED / "apparel-more"], line=[line_dir] if labelled else [],
        ood=[guard_dir], out=work / "bundle", work_dir=work / "run", split_file=work / "split.json",
        backbone=args.backbone, warm_start=True, compare_with=live, seed=1, **report["settings"],
    )  # fmt: skip
    started = time.perf_counter()
    result = run(cfg)
    report["loop_s"] = round(time.perf_counter() - started, 1)
    report["line"] = {"name": names[0], "labelled": len(labelled), "crops": result["data"]["line"]}
    report["refused"] = result["decisions"]["line"].get("worse_elsewhere", {})
    report["worse_on_line"] = bool(result["decisions"]["line"].get("worse_on_line"))

    unlabelled_photos = [(path, label) for path, label in photos if f"{path.stem}.jpg" not in labelled]
    shop_test = [(Path(p), label) for p, label in base["test"]]
    sets = {  # name -> (items, as_cut: decided as `classify` decides a photo, not as a belt item's first crop)
        **{f"{name} belt": (judged[name], False) for name in names},
        "its items as photos": (unlabelled_photos, True),
        "shop test photos": (shop_test, True),
        "guard photos": (guard, True),
    }
    report["judged"] = {}
    for when, bundle_dir in (("before", live), ("after", cfg.out)):
        model = loaded(bundle_dir)
        report["judged"][when] = {
            key: {"items": len(items), **score(*model, items, as_cut)} for key, (items, as_cut) in sets.items()
        }
        print(when, json.dumps(report["judged"][when]), flush=True)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def live_on_guard(base: Path, target: Path, guard: list[tuple[Path, str]]) -> Path:
    """The base bundle with the operating point the trainer's rule chooses on the guard photos alone (none of
    them rides the belt): what a line carrying these items runs before its own crops are labelled."""
    bundle = load_bundle(base)
    labels = tuple(bundle.metadata.labels)
    scores, novelty, _ = evaluate.bundle_assessed(bundle, [path for path, _ in guard], threads=2)
    y = np.array([labels.index(label) for _, label in guard])
    point, one = calibration.operating_point(scores, y, LOSO_MAX_WRONG, novelty=novelty)
    return live_bundle(base, target, labels, point, one)


def chosen_crops(crops: list[tuple[Path, str]], count: int) -> set[str]:
    """`count` crops' file names, class-balanced, the same ones every run."""
    rng = np.random.default_rng(1)
    by_label: dict[str, list[str]] = {}
    for path, label in crops:
        by_label.setdefault(label, []).append(path.name)
    return balanced(
        {label: [str(n) for n in rng.permutation(names)] for label, names in sorted(by_label.items())}, count
    )


def table(report: dict) -> str:
    def cell(row: dict) -> str:
        n = row["items"]
        return (
            " / ".join(f"{100 * row[k] / n:.1f}" for k in ("right", "reject", "wrong"))
            + f" (top-1 {100 * row['top1'] / n:.1f})"
        )

    before, after = report["judged"]["before"], report["judged"]["after"]
    lines = ["| judged on | items | before: right / reject / wrong % | after the loop |", "|---|---:|---|---|"]
    lines += [f"| {key} | {before[key]['items']} | {cell(before[key])} | **{cell(after[key])}** |" for key in before]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
