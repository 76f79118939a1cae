"""Restart benchmark: the daemon restarted while the belt runs (an update, a crash, a reboot). Does every item
get exactly one decision at its own crossing, from the run before the restart or the one after it, and how many
decisions does no item explain?

    .venv/bin/python bench/belt_restart.py [--sets test,ood] [--lines dark-rubber,...] [--at 0.2,0.35,0.5,0.65,0.8]
        [--presence KEY=VALUE ...] [--json bench/results/belt_restart.json]

The photos and clips are bench/belt.py's (30 items a line, seed 1). Presence mode runs in-process on every frame
(detection, tracking, timing; no classifier: a decision is an item closed, a reject when vetoed). For each restart
point the run before runs from the clip's start and is stopped there as the daemon stops (the items in view decided,
their crossings as their paths have them; what it learned kept in a state directory of its own); the run after
starts there twice: afresh, and with what the run before kept (`edge.line_memory`: ``line.json``, the line's item
lengths and the belt's velocity, and since session 33 ``empty_belt.npz``, the empty belt). Every item in view at the
restart or after it is the run before's when it decided it, else the run after's; a decision counts for an item when
its crossing time lies within 0.15 s of the item's own (the clip's clock is exact here). Items the run after missed
are told apart by when they crossed: in the first 1.5 s, while the belt is learned afresh, nothing is seen; later
ones are the detector's failures. A decision of the run after for an item the run before decided is a second one.
Not a test: it prints a table (and writes JSON) for the README, with the CPU it ran on.
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
from bench.harvest import BestCrops  # noqa: E402
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


def the_run_before(clip: Path, fps: int, stop: int, state: Path, settings: PresenceSettings) -> list[Decision]:
    """A daemon run from the clip's start, stopped at frame `stop` as the daemon stops (the items in view decided,
    their crossings as their paths have them; what it learned kept in `state`): its decisions."""
    counter = iter(range(1, 1_000_000))
    mode = PresenceMode(settings, None, lambda: str(next(counter)), memory=LineMemory(state))
    book = Decided()
    for index, image in frames(clip):
        if index > stop:
            break
        mode.on_frame(Frame(image, index, index / fps, index / fps), book)
    mode.stop(book)
    return [_decision(item) for item in book.closed]


Decision = tuple[float | None, str | None]  # crossed_at on the clip's clock (None: untimed), veto


def _decision(item: Item) -> Decision:
    return item.vote.crossed_at, item.vote.veto


def after_a_restart(
    clip: Path,
    fps: int,
    start: int,
    truth: list[LineItem],
    theirs_decided: list[Decision],
    state: Path | None,
    settings: PresenceSettings,
) -> dict[str, object]:
    """Presence mode started at frame `start` (with the state directory the run before kept, or none); the
    items in view then or after, against the decisions of the run before (as it stopped, too) and this one."""
    counter = iter(range(1, 1_000_000))
    mode = PresenceMode(settings, None, lambda: str(next(counter)), memory=LineMemory(state))
    book = Decided()
    for index, image in frames(clip, start):
        mode.on_frame(Frame(image, index, index / fps, index / fps), book)
    # an item in view at the start or after it is the run before's when it decided it (at its own crossing);
    # the others are this run's to decide
    earlier = np.array([at for at, _ in theirs_decided if at is not None])
    untimed_before = sum(at is None for at, _ in theirs_decided)
    items = [item for item in truth if item.last_frame >= start]
    theirs = [item for item in items if _near(item.crossed_s, earlier)]
    mine = [item for item in items if not _near(item.crossed_s, earlier)]
    decisions = [_decision(item) for item in book.closed]
    timed = np.array([at for at, _ in decisions if at is not None])
    decided = [_near(item.crossed_s, timed) for item in mine]
    missed = [item.crossed_s - start / fps for item, hit in zip(mine, decided, strict=True) if not hit]
    crossings = np.array([item.crossed_s for item in items])
    phantoms = [(at, veto) for at, veto in decisions if at is not None and not _near(at, crossings)]
    return {
        "items": len(mine),
        "decided": int(sum(decided)),
        "missed_while_learning": sum(bool(m < LEARNING_S) for m in missed),
        "missed_later": sum(bool(m >= LEARNING_S) for m in missed),
        "decided_before": len(theirs),
        "decided_again": sum(_near(item.crossed_s, timed) for item in theirs),
        # decisions without a crossing time: a PLC pairing by time cannot place them (one pairing by order can);
        # the run before's are those it made for items it had seen too little of as it stopped
        "untimed_before": untimed_before,
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
    counted = ("items", "decided", "missed_while_learning", "missed_later", "decided_before", "decided_again",
               "untimed_before", "untimed", "phantoms", "phantom_lanes")  # fmt: skip
    totals = {how: dict.fromkeys(counted, 0) for how in ("afresh", "kept")}
    names = args.lines.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        clips = rendered_clips(
            Path(tmp), args.sets.split(","), {n: LINES[n] for n in names}, args.bundle, args.per_class, 1
        )
        for name, line_name, line, clip, truth in clips:
            count = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
            starts = [int(count * share) for share in shares]
            runs = []
            for start in starts:
                state = Path(tmp) / f"state-{name}-{line_name}-{start}"
                before = the_run_before(clip, line.fps, start, state, settings)
                run = {
                    "at_s": round(start / line.fps, 2),
                    "afresh": after_a_restart(clip, line.fps, start, truth, before, None, settings),
                    "kept": after_a_restart(clip, line.fps, start, truth, before, state, settings),
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
