"""Choose the relabel loop's recipe without the line it is reported on: leave one line out over bench/relabel.py runs.

    python bench/relabel_recipes.py default=bench/results/relabel.json lw025=/tmp/relabel-lw025.json ...

Each run is the whole benchmark with one recipe (`bench/relabel.py --set KEY=VALUE`). Picking the recipe that
did best on the very lines it is then reported on would flatter it; here each line gets the recipe that did best
on the other lines, by what runs after the loop there (the candidate, or the live model where the reload refused
it), a wrong lane costing `edge.decision.WRONG_LANE_COST` rejects, as everywhere else. Each line's row says which
recipe it got; a recipe that every fold picks is the one to make the default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line
from edge.decision import decision_cost

OUTCOMES = ("right", "reject", "wrong")


def live_after(row: dict) -> dict:
    """What the line runs after the loop: the candidate's counts, or the model before where it was refused."""
    return row["before" if row["refused"] else "after"]["line"]["counts"]


def cost(counts: dict) -> int:
    return int(decision_cost(counts["wrong"], counts["reject"]))


def choose(runs: dict[str, dict]) -> list[dict]:
    """Per line: the recipe with the lowest summed cost on every other line, and that line's row under it."""
    by_recipe = {name: {row["source"]: row for row in run["sources"]} for name, run in runs.items()}
    lines = sorted(set.intersection(*(set(rows) for rows in by_recipe.values())))
    chosen = []
    for held in lines:
        elsewhere = {
            name: sum(cost(live_after(rows[other])) for other in lines if other != held)
            for name, rows in by_recipe.items()
        }
        recipe = min(elsewhere, key=lambda name: (elsewhere[name], list(runs).index(name)))
        chosen.append({"line": held, "recipe": recipe, "elsewhere_cost": elsewhere, "row": by_recipe[recipe][held]})
    return chosen


def _share(counts: dict) -> str:
    total = sum(counts[k] for k in OUTCOMES)
    return " / ".join(f"{100 * counts[k] / total:.1f}" for k in OUTCOMES)


def table(chosen: list[dict], runs: dict[str, dict]) -> str:
    lines = [
        "| the line (source) | recipe (chosen on the other lines) | before: right / reject / wrong % | candidate |"
        " refused | after the loop |",
        "|---|---|---|---|---|---|",
    ]
    pooled = {when: dict.fromkeys(OUTCOMES, 0) for when in ("before", "after", "live")}
    for pick in chosen:
        row = pick["row"]
        before, after = row["before"]["line"]["counts"], row["after"]["line"]["counts"]
        for when, counts in (("before", before), ("after", after), ("live", live_after(row))):
            for k in OUTCOMES:
                pooled[when][k] += counts[k]
        refused = ", ".join(row["refused"]) or "no"
        lines.append(
            f"| {pick['line']} | {pick['recipe']} | {_share(before)} | {_share(after)} | {refused} |"
            f" **{_share(live_after(row))}** |"
        )
    lines.append(
        f"| **all {len(chosen)} lines** | | {_share(pooled['before'])} | {_share(pooled['after'])} | |"
        f" **{_share(pooled['live'])}** |"
    )
    totals = {name: sum(cost(live_after(r)) for r in run["sources"]) for name, run in runs.items()}
    lines.append("")
    lines.append("Each recipe on all lines (cost of what runs after the loop, in rejects; lower is better): "
                 + ", ".join(f"{name} {total}" for name, total in totals.items()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=JSON", help="a bench/relabel.py result per recipe")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        runs[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    chosen = choose(runs)
    cpus = {cpu_line(run["cpu"]) for run in runs.values()}
    print("\n".join(sorted(cpus)) + "\n\n" + table(chosen, runs))
    if args.json:
        report = {"runs": {name: str(path) for name, path in (i.split("=", 1) for i in args.runs)},
                  "settings": {name: run["settings"] for name, run in runs.items()}, "chosen": chosen}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
