"""Held-out lines: presence mode on lines it was never tuned on (other cameras, speeds, belts, a belt that stops).
Does every item still get one decision, at its own crossing, with the belt's speed right?

    .venv/bin/python bench/belt_heldout.py [--sets test,ood] [--lines hd-fast,...] [--presence KEY=VALUE ...]
        [--json bench/results/belt_heldout.json]
    .venv/bin/python bench/belt_heldout.py --sets test --seed 23 \
        --line 'touching-light-grey={"belt": "light-grey", "touching_share": 0.25}'     # a line of your own
    .venv/bin/python bench/belt_heldout.py --sets test --seed 2 --lines touching,white-pu  # the matrix's, in-process

The lines are demo/line.py's HELD_OUT_LINES (bench/belt.py's matrix is LINES); the photos are bench/belt.py's
(30 a set), the clips rendered with seed 7. Presence mode runs in-process on every frame (detection, tracking,
timing; no classifier: a decision is an item closed, a reject when vetoed), and each decision is paired with the
item that crossed the reference line at its crossing time, as bench/belt.py pairs the daemon's. Each run also
records how far presence mode read the belt moving in an exposure against the smear the clip was made with
(`motion_blur_px`, edge/motion_blur.py). Crossing gaps are
given in frames and in milliseconds: on a slow belt at 30 fps a frame is 5 px, so the same error on the belt is
more frames than on the matrix's lines. Not a test: it prints a table (and writes JSON) for the README, with the
CPU it ran on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.belt import chosen_lines, match, rendered_clips  # noqa: E402
from bench.belt_restart import Decided  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from demo.line import HELD_OUT_LINES, LINES, Line  # noqa: E402
from edge.camera import Frame  # noqa: E402
from edge.config import PresenceSettings  # noqa: E402
from edge.decision import REJECT  # noqa: E402
from edge.modes.presence import PresenceMode  # noqa: E402

SEED = 7  # not the matrix's seed 1: other item sizes, places and gaps as well as other lines


def run(clip: Path, line: Line, settings: PresenceSettings) -> tuple[list[dict], PresenceMode]:
    """Every frame of the clip through presence mode; each closed item as bench.belt.match reads a decision."""
    ids = itertools.count(1)
    mode = PresenceMode(settings, None, lambda: f"item-{next(ids)}")
    book = Decided()
    capture = cv2.VideoCapture(str(clip))
    for index in itertools.count(1):
        ok, image = capture.read()
        if not ok:
            break
        mode.on_frame(Frame(image, index, index / line.fps, index / line.fps), book)
    capture.release()
    decisions = [
        {
            "crossed_at": item.vote.crossed_at,
            "label": REJECT if item.vote.veto else "lane",
            "reason": item.vote.veto,
            "belt_speed_px_s": item.vote.belt_speed_px_s,
        }
        for item in book.closed
    ]
    return decisions, mode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "apparel-efficientnet-lite2-int8")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--sets", default="test,ood")
    parser.add_argument(
        "--lines", help="lines by name, held-out or bench/belt.py's (default: all held-out ones, or none with --line)"
    )
    parser.add_argument(
        "--line", action="append", default=[], metavar="NAME=JSON", help="a line of your own: demo.line.Line's fields"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the clips' seed (items, places, gaps)")
    parser.add_argument("--presence", action="append", default=[], metavar="KEY=VALUE", help="a presence setting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = PresenceSettings(**dict(item.split("=", 1) for item in args.presence))
    names = args.lines or (None if args.line else ",".join(HELD_OUT_LINES))
    lines = chosen_lines(HELD_OUT_LINES | LINES, names, args.line)
    results: dict[str, object] = {"cpu": cpu_description(), "seed": args.seed, "presence": args.presence, "sets": {}}
    results["lines"] = {name: line.__dict__ for name, line in lines.items()}
    print(cpu_line(results["cpu"]), flush=True)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        clips = rendered_clips(Path(tmp), args.sets.split(","), lines, args.bundle, args.per_class, args.seed)
        for name, line_name, line, clip, truth in clips:
            decisions, mode = run(clip, line, settings)
            row = match(decisions, truth, line)
            # no classifier here: a decision not vetoed is what would reach the classifier for a lane
            row["merged_not_vetoed"] = row.pop("lane_for_merged")
            for lanes in ("right", "reject", "wrong", "lane_for_touching_told_apart"):
                del row[lanes]
            gap = row["gap_error_p95_frames"]
            row["gap_error_p95_ms"] = None if gap is None else round(1000 * gap / line.fps)  # type: ignore[operator]
            row["suspected_merges"] = mode.tracker.merges if mode.tracker else 0
            row["suspected_splits"] = mode.tracker.fragments if mode.tracker else 0
            # how far the belt moves in an exposure, as presence mode read it, beside the smear the clip was made
            # with (edge/motion_blur.py)
            row["motion_blur_px"] = {"made": line.smear_px, "read": mode.motion_blur.px}
            results["sets"].setdefault(name, {})[line_name] = row  # type: ignore[attr-defined]
            print(f"{name} {line_name}: {row}", flush=True)
    print(f"\n{cpu_line(results['cpu'])}")  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
