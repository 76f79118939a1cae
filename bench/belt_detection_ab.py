"""Detection cost of this tree against another revision's, the two taking turns pass by pass on the same clips.

A shared machine's other load comes and goes over minutes: two runs of `bench/belt.py --detection-only` an hour
apart differ by more than most changes to the detector save (session 42, one evening, the same code: p99 over
3 ms on 4 of the matrix's 22 runs, then on 7). Here each tree's detector runs in a worker process of its own (the
other revision checked out in a temporary git worktree), and the two take turns, one pass each on the same clip,
the order swapped every pass, so that the load falls on both alike. Each frame counts the least it took in its
tree's passes, as `bench.belt.detection_ms` counts it.

    .venv/bin/python bench/belt_detection_ab.py --against 233cb70 [--sets test,ood] [--lines top-to-bottom,...]
        [--passes 3] [--seed 1] [--json bench/results/belt-detection-ab.json]

Clips are rendered by this tree's simulator from the photos `bench/belt.py` uses. The other revision needs
`bench/harvest.py` and `bench.belt.TimedDetector` (session 36 on). Not a test: it prints a table (and writes
JSON) with the CPU it ran on.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a worker times the detector of the tree it is given: that tree's packages are imported, not this one's
TREE = Path(sys.argv[sys.argv.index("--worker") + 1]) if "--worker" in sys.argv[:-1] else ROOT
sys.path.insert(0, str(TREE))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import cv2  # noqa: E402

from bench.belt import TimedDetector  # noqa: E402
from bench.harvest import harvest  # noqa: E402
from demo.line import HELD_OUT_LINES, LINES  # noqa: E402
from edge.config import PresenceSettings  # noqa: E402
from edge.modes.presence import PresenceMode  # noqa: E402

OVER_MS = 3.0  # the target: at most this at p99 on a 640x480 frame


def work() -> None:
    """Worker: for each `LINE CLIP` line on stdin, one pass of presence mode over the clip; each frame's detection
    milliseconds as a JSON list on stdout."""
    cv2.setNumThreads(1)
    ids = iter(range(1, 1 << 62))
    for request in sys.stdin:
        name, clip = request.split(maxsplit=1)
        line = {**LINES, **HELD_OUT_LINES}[name]
        mode = PresenceMode(PresenceSettings(), None, lambda: str(next(ids)))
        detector = mode.detector = TimedDetector(PresenceSettings())
        harvest(Path(clip.strip()), line.fps, mode)
        print(json.dumps(detector.costs_ms), flush=True)


class Worker:
    """A worker process timing one tree's detector."""

    def __init__(self, tree: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def one_pass(self, name: str, clip: Path) -> list[float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{name} {clip}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"a worker stopped while timing {name} (its traceback is above)")
        return json.loads(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def taking_turns(name: str, clip: Path, workers: dict[str, Worker], passes: int) -> dict[str, list[list[float]]]:
    """Each worker's passes over the clip (each frame's milliseconds), the workers taking turns a pass each, the
    order swapped every pass."""
    timed: dict[str, list[list[float]]] = {tree: [] for tree in workers}
    for turn in range(passes):
        for tree in list(workers) if turn % 2 == 0 else list(workers)[::-1]:
            timed[tree].append(workers[tree].one_pass(name, clip))
    return timed


def summary(runs: list[dict], tree: str) -> dict[str, float]:
    """Over the runs, one tree's p50 and p99 ranges and means, and the runs over `OVER_MS` at p99."""
    p50 = [run[tree]["p50"] for run in runs]
    p99 = [run[tree]["p99"] for run in runs]
    return {
        "p50_min": min(p50),
        "p50_max": max(p50),
        "p50_mean": round(statistics.mean(p50), 2),
        "p99_min": min(p99),
        "p99_max": max(p99),
        "p99_mean": round(statistics.mean(p99), 2),
        "p99_over_3ms": sum(value > OVER_MS for value in p99),
    }


def main() -> int:
    from bench.belt import chosen_lines, least_per_frame, photo_set, sample
    from bench.machine import cpu_description, cpu_line
    from demo.line import write_line_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the revision to compare with (a commit, tag or branch)")
    parser.add_argument("--sets", default="test,ood")
    parser.add_argument("--lines", default=None, help="comma-separated names of the matrix's lines (default: all)")
    parser.add_argument("--passes", type=int, default=3, help="passes per tree and clip (each frame: the least)")
    parser.add_argument("--seed", type=int, default=1, help="the clips' seed")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    revision = subprocess.run(
        ["git", "rev-parse", "--short=12", args.against], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if not revision:
        raise SystemExit(f"--against: no revision {args.against!r} in {ROOT}")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    results: dict[str, object] = {
        "cpu": cpu_description(),
        "before": revision,
        "after": f"{head.stdout.strip()} (the working tree)",
        "passes": args.passes,
        "seed": args.seed,
        "runs": [],
    }
    print(cpu_line(results["cpu"]), flush=True)  # type: ignore[arg-type]
    lines = chosen_lines(LINES, args.lines, [])
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(other), revision], cwd=ROOT, check=True)
        workers = {"before": Worker(other), "after": Worker(ROOT)}
        try:
            for set_name in args.sets.split(","):
                photos = sample(
                    photo_set(set_name, ROOT / "models" / "apparel-efficientnet-lite2-int8"), args.per_class
                )
                if not photos:
                    print(f"{set_name}: photos not on this machine, skipped", flush=True)
                    continue
                for line_name, line in lines.items():
                    clip = Path(tmp) / f"{set_name}-{line_name}.avi"
                    write_line_clip(clip, [p for p, _ in photos], [label for _, label in photos], line, seed=args.seed)
                    timed = taking_turns(line_name, clip, workers, args.passes)
                    run = {"set": set_name, "line": line_name, **{t: least_per_frame(c) for t, c in timed.items()}}
                    runs.append(run)
                    print(
                        f"{set_name:5s} {line_name:16s}",
                        *(f"{t} {run[t]['p50']:.2f} / {run[t]['p99']:.2f}" for t in workers),
                        flush=True,
                    )
                    clip.unlink()
        finally:
            for worker in workers.values():
                worker.close()
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    results["runs"] = runs
    results["summary"] = {
        **{tree: summary(runs, tree) for tree in ("before", "after")},
        **{
            f"after_over_before_{p}": round(statistics.mean(run["after"][p] / run["before"][p] for run in runs), 3)
            for p in ("p50", "p99")
        },
    }
    print(json.dumps(results["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[:-1]:
        work()
    else:
        sys.exit(main())
