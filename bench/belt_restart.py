"""Restart benchmark: the daemon restarted while the belt runs (an update, a crash, a reboot). Of the items that
pass once it is back, how many get exactly one decision at their own crossing, and how many decisions does no
item explain?

    .venv/bin/python bench/belt_restart.py [--sets test,ood] [--lines dark-rubber,...] [--at 0.2,0.35,0.5,0.65,0.8]
        [--presence KEY=VALUE ...] [--json bench/results/belt_restart.json]

The photos and clips are bench/belt.py's (30 items a line, seed 1). Presence mode runs in-process on every frame
(detection, tracking, timing; no classifier: a decision is an item closed, a reject when vetoed), started at each
point of the clip as a restart would start it: nothing learned, the empty belt learned with items passing. Each
start runs twice: afresh, and with what the run before it kept in the state directory (`edge.line_memory`:
``line.json``, the line's item lengths, and since session 33 ``empty_belt.npz``, the empty belt). An item counts as
decided when a decision's crossing time lies within 0.15 s of its own (the clip's clock is exact here); missed items
are told apart by when they crossed: in the first 1.5 s, while the belt is learned, nothing is seen; later ones are
the detector's failures. Not a test: it prints a table (and writes JSON) for the README, with the CPU it ran on.
Items still in view that had crossed before the start are decided too, with their (past) crossing time, and items
seen only for a frame or two after they crossed are decided without one (untimed): both counted apart, not as
phantoms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.belt import rendered_clips  # noqa: E402
from bench.belt_crops import BestCrops  # noqa: E402
from bench.machine import cpu_description, cpu_line  # noqa: E402
from demo.line import LINES, LineItem  # noqa: E402
from edge.camera import Frame  # noqa: E402
from edge.config import PresenceSettings  # noqa: E402
from edge.items import Item  # noqa: E402
from edge.line_memory import LineMemory  # noqa: E402
from edge.modes.presence import PresenceMode  # noqa: E402

TOLERANCE_S = 0.15  # a decision's crossing this close to an item's is that item's
LEARNING_S = 1.5  # items crossing this soon after a start pass while the empty belt is learned


class Decided(BestCrops):
    """The item book as far as this benchmark needs it: the items closed, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[Item] = []

    def offer(self, item: Item, crop: np.ndarray, captured_at: float, quality: float = 0.0) -> None:
        pass

    def close(self, item: Item, now: float | None = None) -> None:
        super().close(item, now)
        self.closed.append(item)


def frames(clip: Path, start: int = 0):
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    index = start
    while (read := capture.read())[0]:
        index += 1
        yield index, read[1]
    capture.release()


def kept_state(clip: Path, fps: int, starts: list[int], state: Path, settings: PresenceSettings) -> dict[int, Path]:
    """One run over the whole clip; at each start, what a daemon stopped there would have kept (its line.json
    and empty_belt.npz, in a state directory of its own)."""
    counter = iter(range(1, 1_000_000))
    mode = PresenceMode(settings, None, lambda: str(next(counter)))
    book, kept = Decided(), {}
    for index, image in frames(clip):
        tracker = mode.tracker
        if index - 1 in starts and tracker is not None and tracker.direction is not None:
            kept[index - 1] = state / str(index - 1)
            view = (image.shape[1], image.shape[0]), tracker.direction[0]
            memory = LineMemory(kept[index - 1])
            memory.keep(*view, mode.lengths.singles, now=0.0, at_once=True, velocity=tuple(tracker.velocity))
            if (belt := mode.detector.checked_belt) is not None:
                memory.keep_belt((view[0], (0, 0, *view[0])), belt, now=0.0, at_once=True)
        mode.on_frame(Frame(image, index, index / fps, index / fps), book)
    return kept


def after_a_restart(
    clip: Path, fps: int, start: int, truth: list[LineItem], state: Path | None, settings: PresenceSettings
) -> dict[str, object]:
    """Presence mode started at frame `start` (with the state directory `state`, or none); the items that
    cross after it, against the decisions."""
    counter = iter(range(1, 1_000_000))
    mode = PresenceMode(settings, None, lambda: str(next(counter)), memory=LineMemory(state))
    book = Decided()
    for index, image in frames(clip, start):
        mode.on_frame(Frame(image, index, index / fps, index / fps), book)
    # the items that come into view after the start are this run's; those in view as it starts were the run
    # before's (it decided them as it stopped): a decision of this run for one of them is a second one
    mine = [item for item in truth if item.first_frame > start]
    before = [item for item in truth if item.first_frame <= start <= item.last_frame]
    crossings = np.array([item.crossed_s for item in mine])
    decisions = [(item.vote.crossed_at, item.vote.veto) for item in book.closed]
    timed = np.array([at for at, _ in decisions if at is not None])
    decided = [_near(t, timed) for t in crossings]
    theirs = np.array([item.crossed_s for item in before])
    again = [at for at, _ in decisions if at is not None and not _near(at, crossings) and _near(at, theirs)]
    phantoms = [(at, veto) for at, veto in decisions if at is not None and not (_near(at, crossings) or at in again)]
    missed = [t - start / fps for t, hit in zip(crossings, decided, strict=True) if not hit]
    return {
        "items": len(mine),
        "decided": int(sum(decided)),
        "missed_while_learning": sum(bool(m < LEARNING_S) for m in missed),
        "missed_later": sum(bool(m >= LEARNING_S) for m in missed),
        "in_view_at_the_start": len(before),
        "decided_again": len(again),
        # an item seen only after it crossed, for too few frames to time it: a decision a PLC pairing by time
        # cannot place (one pairing by order can)
        "untimed": sum(at is None for at, _ in decisions),
        "phantoms": len(phantoms),
        "phantom_lanes": sum(veto is None for _, veto in phantoms),
        "belt_checks": mode.detector.checks,
    }


def _near(at: float, times: np.ndarray) -> bool:
    return bool(len(times)) and float(np.abs(times - at).min()) < TOLERANCE_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "apparel-efficientnet-lite2-int8")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--sets", default="test,ood")
    parser.add_argument("--lines", default=",".join(LINES))
    parser.add_argument("--at", default="0.2,0.35,0.5,0.65,0.8", help="restart points, shares of the clip")
    parser.add_argument("--presence", action="append", default=[], metavar="KEY=VALUE", help="a presence setting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = PresenceSettings(**dict(item.split("=", 1) for item in args.presence))
    shares = [float(share) for share in args.at.split(",")]
    results: dict[str, object] = {"cpu": cpu_description(), "at": shares, "presence": args.presence, "sets": {}}
    print(cpu_line(results["cpu"]), flush=True)  # type: ignore[arg-type]
    counted = ("items", "decided", "missed_while_learning", "missed_later", "in_view_at_the_start", "decided_again",
               "untimed", "phantoms", "phantom_lanes")  # fmt: skip
    totals = {how: dict.fromkeys(counted, 0) for how in ("afresh", "kept")}
    names = args.lines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        clips = rendered_clips(
            Path(tmp), args.sets.split(","), {n: LINES[n] for n in names}, args.bundle, args.per_class, 1
        )
        for name, line_name, line, clip, truth in clips:
            count = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
            starts = [int(count * share) for share in shares]
            kept = kept_state(clip, line.fps, starts, Path(tmp) / f"state-{name}-{line_name}", settings)
            runs = []
            for start in starts:
                run = {
                    "at_s": round(start / line.fps, 2),
                    "afresh": after_a_restart(clip, line.fps, start, truth, None, settings),
                    "kept": after_a_restart(clip, line.fps, start, truth, kept.get(start), settings),
                }
                for how in ("afresh", "kept"):
                    for key in totals[how]:
                        totals[how][key] += run[how][key]  # type: ignore[index]
                runs.append(run)
            results["sets"].setdefault(name, {})[line_name] = runs  # type: ignore[attr-defined]
            print(f"{name} {line_name}: {runs}", flush=True)
    results["totals"] = totals
    print(f"\n{cpu_line(results['cpu'])}")  # type: ignore[arg-type]
    for how, total in totals.items():
        print(f"{how}: {total}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
