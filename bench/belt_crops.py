"""Belt crops: what the model sees of each item on a simulated line, kept as labelled photos.

`bench/belt.py` judges the whole daemon, 30 items a line, in real time (about a minute a line). To ask "does
this model classify belt views as well as photos" on hundreds of items, this renders the photos into a line
(demo/line.py), runs the daemon's presence mode on every frame in-process (the same detector, tracker and crop
code) and keeps each item's most centred crop, the one the daemon's worker takes first, as
``OUT/<line>/<label>/<photo>.jpg``. Any bundle then scores the folders; ``--bundle`` does it here through the
edge's classifier, at the daemon's thresholds, the item's crop classified both ways up as the worker does.

    .venv/bin/python bench/belt_crops.py OUT [--set ood] [--per-class 60] [--lines dark-rubber,light-grey]
        [--line 'NAME={"belt": "dark-grey", "blur_px": 1}' ...] [--bundle models/apparel-efficientnet-lite2-int8 ...]
        [--leave-one-source-out] [--json results.json]

With ``--leave-one-source-out`` (the ood set) each source's crops are also judged as a new line would meet them:
at the thresholds, and the familiarity limits per label, that the trainer's rule chooses on the other sources'
photos (all of apparel-ood's), beside the same with thresholds alone; the photos likewise.

Not a test and not the belt benchmark (one crop, not the daemon's vote over several): a quick, larger sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.belt import chosen_lines, photo_set, sample  # noqa: E402
from bench.harvest import harvest  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from bench.models import LOSO_MAX_WRONG, manifest_sources  # noqa: E402
from demo.line import LINES, Line, LineItem, write_line_clip  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.classifier import Classifier  # noqa: E402
from edge.config import ModelSettings  # noqa: E402
from edge.decision import (  # noqa: E402
    REJECT,
    Thresholds,
    decision_cost,
    lane_label,
)
from edge.inference import assess_item_crop  # noqa: E402
from edge.items import Item  # noqa: E402
from edge.preprocess import decode_image  # noqa: E402
from trainer.calibration import as_decided, operating_point, outcomes  # noqa: E402

DEFAULT_LINES = "dark-rubber,light-grey,green-pvc"
PAIRED_WITHIN_S = 0.15  # an item and the crossing presence mode gave it: bench/belt.py's tolerance


def line_crops(
    folder: Path, line_name: str, photos: list[tuple[Path, str]], line: Line | None = None
) -> list[tuple[Path, str]]:
    """The photos ridden on the line (`line`, else the matrix's of that name), each item's most centred crop as
    (folder/<label>/<photo>.jpg, label); harvested once, then read back. Items laid touching a neighbour are left
    out, and so are those presence mode did not see as one item crossing where the line's truth has it
    (`crossed_by`)."""
    if not folder.is_dir():
        line = line or LINES[line_name]
        clip = folder.parent / f"{line_name}.avi"
        clip.parent.mkdir(parents=True, exist_ok=True)
        truth = write_line_clip(clip, [p for p, _ in photos], [label for _, label in photos], line, seed=1)
        items, best = harvest(clip, line.fps)
        clip.unlink()
        found = crossed_by(truth, items, 1 / line.fps)
        print(f"{line_name}: {len(found)} of {len(truth)} items seen as one, crossing where they did", flush=True)
        for known, item in found:
            crop = best.get(item.item_id)
            if crop is not None and not known.touching:
                (folder / known.label).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / known.label / f"{Path(known.image).stem}.jpg"), crop)
    return [(path, path.parent.name) for path in sorted(folder.glob("*/*.jpg"))]


def crossed_by(truth: list[LineItem], items: list[Item], frame_s: float) -> list[tuple[LineItem, Item]]:
    """Each item the line carried with the one item presence mode saw crossing within `PAIRED_WITHIN_S` of it,
    where there is exactly one and it was not taken for items touching (a part of one: its crop is half an
    item; a photo laid flat, rejected as `too_long`, is still one item and its crop whole). Paired by crossing as
    a PLC pairs them, not by order: an item cut in two (a dark garment on a white card on dark rubber shows as
    two white strips) would shift every later crop onto the next photo. `frame_s`: harvest numbers the first
    frame 1, the truth's clock 0."""
    timed = [item for item in items if item.vote.crossed_at is not None]
    crossings = np.array([item.vote.crossed_at - frame_s for item in timed])
    found = []
    for known in truth:
        near = np.flatnonzero(np.abs(crossings - known.crossed_s) < PAIRED_WITHIN_S)
        if len(near) == 1 and timed[near[0]].vote.veto != "touching":
            found.append((known, timed[near[0]]))
    return found


def loaded(bundle_dir: Path) -> tuple[Classifier, Thresholds]:
    """The bundle's classifier and the thresholds the daemon would use with it."""
    classifier = Classifier(load_bundle(bundle_dir), threads=2)
    return classifier, Thresholds.resolve(ModelSettings(bundle=bundle_dir), classifier.bundle.metadata)


def score(
    classifier: Classifier, thresholds: Thresholds, images: list[tuple[Path, str]], as_cut: bool = False
) -> dict[str, int]:
    """Right / reject / wrong of labelled images, as the daemon would decide an item on this one crop (`as_cut`:
    as `classify` decides a photo, not also turned), how many of them the familiarity check rejected, and top-1
    right whatever the thresholds."""
    outcome = {"right": 0, "reject": 0, "wrong": 0, "unfamiliar": 0, "top1": 0}
    for path, label in images:
        assessment, _ = assess_item_crop(classifier, decode_image(str(path)), False if as_cut else None)
        said, _, reason = lane_label(assessment.scores, assessment.novelty, classifier.labels, thresholds)
        outcome["right" if said == label else "reject" if said == REJECT else "wrong"] += 1
        outcome["unfamiliar"] += reason == "unfamiliar"
        outcome["top1"] += classifier.labels[int(assessment.scores.argmax())] == label  # whatever the thresholds
    return outcome


def _assessed(classifier: Classifier, images: list[tuple[Path, str]], as_cut: bool) -> tuple[np.ndarray, ...]:
    """Scores, novelty and label indices, each image decided as `score` decides it."""
    scores, novelty = [], []
    for path, _ in images:
        assessment, _ = assess_item_crop(classifier, decode_image(str(path)), False if as_cut else None)
        scores.append(assessment.scores)
        novelty.append(np.nan if assessment.novelty is None else assessment.novelty)
    labels = np.array([classifier.labels.index(label) for _, label in images])
    return np.stack(scores), np.array(novelty), labels


def left_out(classifier: Classifier, photos: list[tuple[Path, str]], crops: list[tuple[Path, str]]) -> dict:
    """Each source's photos and belt crops at the operating point chosen on the other sources' photos (1 % wrong
    lane, the cheapest at `decision_cost`), with the familiarity limits per label and with thresholds alone."""
    ood = photos[0][0].parents[1]
    sources = np.array(manifest_sources(ood, [path for path, _ in photos]))
    source_of = {path.stem: source for (path, _), source in zip(photos, sources, strict=True)}
    judged = {
        "photos": (*_assessed(classifier, photos, as_cut=True), sources),
        "crops": (*_assessed(classifier, crops, as_cut=False), np.array([source_of[p.stem] for p, _ in crops])),
    }
    scores, novelty, y, _ = judged["photos"]
    result: dict[str, dict] = {}
    for rule, chosen_on_scores, chosen_on_novelty in (
        ("thresholds_only", as_decided(scores, novelty), None),
        ("with_limits", scores, novelty),
    ):
        counts = {key: np.zeros(3, int) for key in judged}
        for name in sorted(set(sources)):
            others = sources != name
            point, _ = operating_point(
                chosen_on_scores[others],
                y[others],
                LOSO_MAX_WRONG,
                novelty=None if chosen_on_novelty is None else chosen_on_novelty[others],
            )
            for key, (s, n, labels, of) in judged.items():
                mine = of == name
                if mine.any():
                    row = outcomes(as_decided(s[mine], n[mine], point.novelty_limits), labels[mine], point.thresholds)
                    counts[key] += np.round(
                        mine.sum() * np.array([row[k] for k in ("right", "reject", "wrong")])
                    ).astype(int)
        result[rule] = {
            key: {"right": int(c[0]), "reject": int(c[1]), "wrong": int(c[2]), "cost": int(decision_cost(c[2], c[1]))}
            for key, c in counts.items()
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the crops (OUT/<line>/<label>/<photo>.jpg)")
    parser.add_argument("--set", default="ood", help="photos: ood (../shared/data/apparel-ood) or test")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--lines", help=f"lines of the matrix (default: {DEFAULT_LINES}, or none with --line)")
    parser.add_argument(
        "--line", action="append", default=[], metavar="NAME=JSON", help="a line of your own: demo.line.Line's fields"
    )
    parser.add_argument(
        "--split-from",
        type=Path,
        default=ROOT / "models" / "apparel-efficientnet-lite2-int8",
        help="the bundle whose test split the test set is",
    )
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="score the crops with these")
    parser.add_argument("--leave-one-source-out", action="store_true", help="see above (the ood set)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    photos = sample(photo_set(args.set, args.split_from), args.per_class)
    if not photos:
        print(f"{args.set}: photos not on this machine", file=sys.stderr)
        return 2
    results: dict[str, object] = {"cpu": cpu_description(), "set": args.set, "photos": len(photos), "lines": {}}
    print(cpu_line(results["cpu"]), flush=True)  # type: ignore[arg-type]
    models = {str(bundle_dir): loaded(bundle_dir) for bundle_dir in args.bundle}  # loaded once, for every line
    results["as_photos"] = {name: score(*model, photos) for name, model in models.items()}
    print("as photos", json.dumps(results["as_photos"]), flush=True)
    all_crops: list[tuple[Path, str]] = []
    names = args.lines or (None if args.line else DEFAULT_LINES)
    for name, line in chosen_lines(LINES, names, args.line).items():
        crops = line_crops(args.out / name, name, photos, line)
        all_crops += crops
        long_sides = [max(cv2.imread(str(path)).shape[:2]) for path, _ in crops]
        row: dict[str, object] = {
            "line": asdict(line),
            "crops": len(crops),
            "long_side_px_median": float(np.median(long_sides)) if long_sides else None,
        }
        for model_name, model in models.items():
            row[model_name] = score(*model, crops)
        results["lines"][name] = row  # type: ignore[index]
        print(name, json.dumps(row), flush=True)
    if args.leave_one_source_out and args.set == "ood":
        everything = photo_set("ood", args.split_from)
        results["leave_one_source_out"] = {
            name: left_out(model[0], everything, all_crops) for name, model in models.items()
        }
        print("leave one source out", json.dumps(results["leave_one_source_out"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
