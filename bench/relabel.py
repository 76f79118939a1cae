"""Relabel-loop benchmark: does the loop fix the line it came from? Each apparel-ood source stands for a line.

    python bench/relabel.py --json bench/results/relabel.json      # Lite0, ~30 min on 2 cores

1. base: the bundle a line runs today (EfficientNet-Lite0 on the shop photos and apparel-more, the committed
   bundle's split), trained once; its work directory is what every loop warm-starts from.
2. for each out-of-domain source in turn, as a line the model never saw: up to 40 of its photos (half of a smaller
   source), class-balanced and seeded, are the operator's labelled crops (a folder with line.json, as the page
   exports it); the loop retrains warm with them (`sortline-train train ... --warm-start`), the other sources as
   its out-of-domain guard. The source's other photos judge before and after.
3. before is judged as a new source would meet it: thresholds and familiarity limits chosen on the other sources
   (leave one source out), and the loop judges its candidate against that same live model (`live_bundle`); after
   at those the loop chose (the line's validation crops beside the other sources).
   Both also on the shop's test split and the other sources, to show what the loop costs elsewhere. A candidate
   that fails the trainer's int8 parity gate is no candidate: the row says so (refused: parity) and after is the
   model before, as on the line.

Results go to the JSON with the CPU they ran on, and are printed as a Markdown table for the README.
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
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.machine import cpu_description, cpu_line
from bench.models import LOSO_MAX_WRONG
from edge.bundle import load_bundle
from trainer import calibration, evaluate, line
from trainer.config import TrainConfig
from trainer.pipeline import run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELLED = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--split-file", type=Path, default=Path("models/apparel-efficientnet-lite0-int8/split.json"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sortline-bench-relabel")
    parser.add_argument("--sources", nargs="*", help="only these sources (default: all)")
    parser.add_argument(
        "--base-seed", type=int, default=1, help="the base bundle's training seed (another draw: another --work)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a trainer setting for the loop's runs"
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    ood_root = SHARED / "apparel-ood"
    rows = list(csv.DictReader((ood_root / "manifest.csv").open(encoding="utf-8")))
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)

    base = base_bundle(args.work, args.split_file, args.backbone, args.base_seed)
    labels = tuple(base["labels"])
    test = [(Path(p), labels.index(label)) for p, label in base["test"]]
    all_ood = [(ood_root / r["file"], labels.index(r["label"]), r["source"]) for r in rows]
    base_scores, base_novelty, _ = evaluate.bundle_assessed(
        load_bundle(base["out"]), [path for path, *_ in all_ood] + [path for path, _ in test], threads=2
    )
    y_ood, sources = np.array([y for _, y, _ in all_ood]), np.array([s for _, _, s in all_ood])

    results = []
    for source in sorted(args.sources or by_source):
        chosen = _labelled(by_source[source])
        work = args.work / _slug(source)
        shutil.rmtree(work, ignore_errors=True)
        line_dir, guard_dir = work / "line", work / "ood-without"
        link(ood_root, line_dir, [r for r in by_source[source] if r["file"] in chosen])
        (line_dir / "line.json").write_text(json.dumps({"line": source, "model": base["model"]}) + "\n")
        link(ood_root, guard_dir, [r for r in rows if r["source"] != source], manifest=True)
        shutil.copytree(base["work"], work / "run", ignore=shutil.ignore_patterns("float32", "int8-candidate"))
        held = sources == source
        others = ~held
        n_ood = len(all_ood)
        before, one = calibration.operating_point(
            base_scores[:n_ood][others], y_ood[others], LOSO_MAX_WRONG, novelty=base_novelty[:n_ood][others]
        )
        live = live_bundle(base["out"], work / "live", labels, before, one)
        cfg = TrainConfig(
            data=SHARED / "apparel", more_data=[SHARED / "apparel-more"], line=[line_dir], ood=[guard_dir],
            out=work / "bundle", work_dir=work / "run", split_file=work / "split.json", backbone=args.backbone,
            warm_start=True, compare_with=live, seed=1, **overrides,
        )  # fmt: skip
        shutil.copy(base["split"], work / "split.json")
        started = time.perf_counter()
        try:
            result, failed = run(cfg), ""
        except evaluate.ParityError as exc:  # no candidate: the line keeps its model
            result, failed = {"data": {"line": None}, "decisions": {"line": {}}}, str(exc)
        loop_s = time.perf_counter() - started

        rest = held & ~np.isin([str(p.relative_to(ood_root)) for p, _, _ in all_ood], list(chosen))
        before_thresholds = before.thresholds
        decided = calibration.as_decided(base_scores, base_novelty, before.novelty_limits)
        base_decided, base_test = decided[:n_ood], decided[n_ood:]
        if failed:  # judged as what runs after the loop: the model before
            after_decided, after_test, after_thresholds = base_decided, base_test, before_thresholds
        else:
            after_decided, after_test, after_thresholds = _decided(cfg.out, all_ood, test)
        y_test = np.array([y for _, y in test])
        row = {
            "source": source,
            "photos": int(held.sum()),
            "labelled": len(chosen),
            "judged": int(rest.sum()),
            "line_crops": result["data"]["line"],
            "refused": ["parity"] if failed else _refused(result["decisions"]["line"]),
            "failed": failed,
            "loop_s": round(loop_s, 1),
            "before": {
                "line": line.judged(base_decided[rest], y_ood[rest], before_thresholds),
                "test": line.judged(base_test, y_test, before_thresholds),
                "other_sources": line.judged(base_decided[others], y_ood[others], before_thresholds),
            },
            "after": {
                "line": line.judged(after_decided[rest], y_ood[rest], after_thresholds),
                "test": line.judged(after_test, y_test, after_thresholds),
                "other_sources": line.judged(after_decided[others], y_ood[others], after_thresholds),
            },
            "thresholds": {"before": before_thresholds.tolist(), "after": after_thresholds.tolist()},
            "line_top1": {
                "before": _top1(base_decided[rest], y_ood[rest]),
                "after": _top1(after_decided[rest], y_ood[rest]),
            },
        }
        results.append(row)
        print(_row(row), flush=True)
    report = {"cpu": cpu_description(), "backbone": args.backbone, "base": base["model"], "base_seed": args.base_seed,
              "settings": overrides, "sources": results}  # fmt: skip
    print(f"\n{cpu_line(report['cpu'])}\n\n{_table(results)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def base_bundle(work_root: Path, split_file: Path, backbone: str, seed: int = 1) -> dict:
    """Train the line's current bundle once (kept in `work_root` between runs of the benchmark). What the loop
    achieves depends on which draw of the recipe the live model is (docs/training.md, "December 6"): `seed`
    trains another."""
    work, out = work_root / "base-run", work_root / "base-bundle"
    if not (out / "bundle.json").is_file():
        cfg = TrainConfig(
            data=SHARED / "apparel", more_data=[SHARED / "apparel-more"], ood=[SHARED / "apparel-ood"], out=out,
            work_dir=work, split_file=split_file, backbone=backbone, seed=seed,
        )  # fmt: skip
        run(cfg)
    bundle = load_bundle(out)
    trained = bundle.metadata.training.get("settings", {})
    if (trained.get("backbone"), trained.get("seed")) != (backbone, seed):
        sys.exit(
            f"{out} holds a base trained as {trained.get('backbone')}, seed {trained.get('seed')}, not {backbone},"
            f" seed {seed}: give this one its own --work"
        )
    split = json.loads((out / "split.json").read_text())["samples"]
    test = [(str(Path(s["folder"]) / s["file"]), s["label"]) for s in split if s["split"] == "test"]
    return {"work": work, "out": out, "split": out / "split.json", "model": bundle.metadata.model_id,
            "labels": bundle.labels, "test": test}  # fmt: skip


def live_bundle(
    base: Path, target: Path, labels: tuple[str, ...], point: calibration.OperatingPoint, one: float
) -> Path:
    """The base bundle as a line the model never saw runs it: its thresholds and familiarity limits chosen
    without the line's source (as "before" is judged). The loop's candidate is judged against this, so the
    reload's refusals are not decided by a live model tuned on the line's own photos."""
    shutil.copytree(base, target)
    meta = json.loads((target / "bundle.json").read_text(encoding="utf-8"))
    meta["recommended_threshold"] = one
    meta["recommended_thresholds"] = dict(zip(labels, map(float, point.thresholds), strict=True))
    meta["familiarity"]["per_label"] = {
        label: float(share) for label, share in zip(labels, point.novelty_limits, strict=True) if share < 1
    }
    (target / "bundle.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    load_bundle(target)  # still a valid bundle
    return target


def _decided(
    bundle_dir: Path, ood: list[tuple[Path, int, str]], test: list[tuple[Path, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundle's decided scores on the out-of-domain photos and on the test split, and its thresholds."""
    images = [path for path, *_ in ood] + [path for path, _ in test]
    decided, thresholds = evaluate.bundle_decided(load_bundle(bundle_dir), images, threads=2)
    return decided[: len(ood)], decided[len(ood) :], thresholds


def _refused(comparison: dict) -> list[str]:
    """Why the daemon would refuse the loop's candidate (its bundle's line check): worse on the line's held-back
    crops, or measured worse than the live model elsewhere; [] when it goes live."""
    return (["line"] if comparison.get("worse_on_line") else []) + sorted(comparison.get("worse_elsewhere", {}))


def _top1(decided: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of scores as the lanes see them (an unfamiliar item, all zeros, counts as wrong)."""
    return round(float(np.mean((decided.argmax(1) == y) & (decided.max(1) > 0))), 4)


def _labelled(rows: list[dict]) -> set[str]:
    """Up to 40 photos (half of a smaller source), class-balanced, the same ones every time."""
    per_label: dict[str, list[str]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["sha256"]):
        per_label[r["label"]].append(r["file"])
    return balanced(per_label, min(LABELLED, len(rows) // 2))


def balanced(per_label: dict[str, list[str]], count: int) -> set[str]:
    """`count` names (or all there are) taken a label at a time in turn, each label's list from its front."""
    queues = [list(names) for names in per_label.values()]
    count = min(count, sum(map(len, queues)))
    chosen: list[str] = []
    while len(chosen) < count:
        for names in queues:
            if names and len(chosen) < count:
                chosen.append(names.pop(0))
    return set(chosen)


def link(root: Path, target: Path, rows: list[dict], manifest: bool = False) -> None:
    """`rows` of a manifest (file, label, source, ...) as symlinks under `target`, with their manifest."""
    for r in rows:
        (target / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        (target / r["file"]).symlink_to((root / r["file"]).resolve())
    if manifest:
        with (target / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _slug(source: str) -> str:
    return source.replace("/", "__")


def _cell(row: dict) -> str:
    return " / ".join(f"{100 * row[k]:.1f}" for k in ("right", "reject", "wrong"))


def _row(r: dict) -> str:
    b, a = r["before"], r["after"]
    refused = f" refused ({', '.join(r['refused'])})" if r["refused"] else ""
    return (
        f"| {r['source']} | {r['labelled']} | {r['judged']} | {_cell(b['line'])} | **{_cell(a['line'])}**{refused} |"
        f" {_cell(b['test'])} → {_cell(a['test'])} | {_cell(b['other_sources'])} → {_cell(a['other_sources'])} |"
        f" {r['loop_s']:.0f} |"
    )


def _table(results: list[dict]) -> str:
    head = (
        "| source (the line) | labelled | judged | before: right / reject / wrong % | after |"
        " shop test before → after | other sources before → after | loop s |\n|---|---:|---:|---|---|---|---|---:|"
    )
    return "\n".join([head, *(_row(r) for r in results), _pooled(results), _pooled(results, live=True)])


def _pooled(results: list[dict], live: bool = False) -> str:
    """Every line's judged photos together: counts summed, so a big source weighs by its size. `live`: after is
    what runs after the loop (the model before, where the reload refuses the candidate)."""
    judged = sum(r["judged"] for r in results)

    def share(when: str) -> str:
        rows = [r["before" if live and r["refused"] and when == "after" else when]["line"] for r in results]
        counts = {k: sum(row["counts"][k] for row in rows) for k in ("right", "reject", "wrong")}
        return " / ".join(f"{100 * counts[k] / judged:.1f}" for k in ("right", "reject", "wrong"))

    labelled, name = sum(r["labelled"] for r in results), "live after the loop" if live else "candidates"
    return (
        f"| **all {len(results)} lines, {name}** | {labelled} | {judged} | {share('before')} | **{share('after')}** |"
        " | | |"
    )


if __name__ == "__main__":
    main()
