"""What a training run tells people: report.json for machines, report.md and PNG plots for humans."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from edge.decision import WRONG_LANE_COST
from edge.line_check import WORSE_ITEMS, WORSE_POINTS
from edge.preprocess import decode_image
from trainer.fit import History

_WORSE = (  # `edge.line_check.Outcome.worse_than`, in words
    f"its decisions cost at least {WORSE_ITEMS} rejects' worth and more than {WORSE_POINTS:g} point more,"
    f" a wrong lane counting as {WRONG_LANE_COST} rejects"
)

PLOTS = {
    "history": "training_curves.png",
    "confusion": "confusion_matrix.png",
    "mistakes": "worst_mistakes.png",
    "ood_mistakes": "worst_ood_mistakes.png",
}


def plot_history(histories: list[History], path: Path) -> None:
    """Loss and accuracy per epoch, phase 1 then phase 2 on one time axis; one colour per ensemble member."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for k, history in enumerate(histories):
            member = f"member {k + 1} " if len(histories) > 1 else ""
            n1 = len(history.phase1.get("loss", []))
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.phase1.get(key, []) + history.phase2.get(key, [])
                label = member + key.replace("val_", "validation ")
                ax.plot(range(1, len(values) + 1), values, style, color=f"C{k}", label=label)
            if history.phase2:
                ax.axvline(n1 + 0.5, color=f"C{k}", lw=0.8, alpha=0.5)
        ax.set_xlabel("epoch (phase 1 head, then phase 2 fine-tune from the vertical line)")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: tuple[str, ...], path: Path, title: str) -> None:
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_worst(
    images: list[Path],
    y_true: np.ndarray,
    scores: np.ndarray,
    labels: tuple[str, ...],
    path: Path,
    count: int = 12,
    title: str = "Test split, int8 model",
) -> list[dict]:
    """Grid of the most confident mistakes (or, with none, the least confident right answers)."""
    pred = scores.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    if len(wrong):
        order, what = wrong[np.argsort(-scores[wrong, pred[wrong]])], "most confident mistakes"
    else:
        order, what = np.argsort(scores[np.arange(len(pred)), pred]), "no mistakes: least confident answers"
    order = order[:count]
    cols = 4
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    listed = []
    for ax, i in zip(axes.flat, order, strict=False):
        ax.imshow(decode_image(str(images[i]))[..., ::-1])
        ax.set_title(f"true {labels[y_true[i]]}\npred {labels[pred[i]]} {scores[i, pred[i]]:.2f}", fontsize=8)
        listed.append(
            {
                "file": str(images[i]),
                "true": labels[y_true[i]],
                "predicted": labels[pred[i]],
                "score": round(float(scores[i, pred[i]]), 4),
            }
        )
    fig.suptitle(f"{title}: {what}")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return listed


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(summary_markdown(report), encoding="utf-8")


def summary_markdown(r: dict) -> str:
    t, p, d = r["test_int8"], r["parity"], r["data"]
    folders = dict.fromkeys([d["root"], *d["more_data"], *d["line"]["folders"]])
    lines = [
        f"# {r['bundle']['name']} {r['bundle']['version']}",
        "",
        f"Trained on {', '.join(f'`{root}`' for root in folders)}:"
        f" {d['images']} images after"
        f" removing {len(d['broken'])} unreadable and "
        f"{len(d['exact_duplicates_removed'])} exact-duplicate files; {d['near_duplicate_groups']} near-duplicate "
        f"groups ({d['images_in_near_duplicate_groups']} images) kept whole within one split.",
        "",
        "| split | " + " | ".join(d["labels"]) + " |",
        "|---|" + "---:|" * len(d["labels"]),
        *(
            f"| {s} | " + " | ".join(str(c.get(lbl, 0)) for lbl in d["labels"]) + " |"
            for s, c in d["split_counts"].items()
        ),
        "",
        f"**Test accuracy (int8 bundle, {sum(v['support'] for v in t['per_class'].values())} images): "
        f"{t['accuracy']:.1%}**; float32 {r['test_float32']['accuracy']:.1%}. Over {p['images']} test and "
        f"out-of-domain images int8 scores {p['int8_accuracy']:.1%} vs float32 {p['float32_accuracy']:.1%}; float32 "
        f"gives the same label to {p['lane_agreement']:.1%} of the {p['lane_items']} items int8 sends to a lane "
        f"(top-1 agreement over all: {p['top1_agreement']:.1%}; {_gate_note(r['training']['settings'])}).",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
            for k, v in t["per_class"].items()
        ),
        "",
        *_line_section(r["decisions"].get("line")),
        *_decisions_section(r),
        _start_note(r["training"]),
        f"Input {r['bundle']['input']}, int8 model {r['bundle']['model_bytes'] / 1e6:.1f} MB. "
        f"Run time {r['timing']['total_s']:.0f} s (features {r['timing']['features_s']:.0f} s: "
        f"{r['training']['cache']['computed']} computed, {r['training']['cache']['reused']} reused).",
        "",
        *(f"![{name}]({file})" for name, file in PLOTS.items()),
        "",
    ]
    return "\n".join(lines)


def _decisions_section(r: dict) -> list[str]:
    """Out-of-domain accuracy per class and style, and what the recommended threshold does on each set."""
    d, ood = r["decisions"], r.get("ood_int8")
    lines = []
    if ood:
        lines += [
            f"**Out-of-domain accuracy (int8, {sum(v['support'] for v in ood['per_class'].values())} photos from "
            f"{', '.join(f'`{s}`' for s in ood['sets'])}; validation only, never trained on): {ood['accuracy']:.1%}**",
            "",
            "| class / style | accuracy | images |",
            "|---|---:|---:|",
            *(f"| {k} | {v['recall']:.1%} | {v['support']} |" for k, v in ood["per_class"].items()),
            *(f"| {k} | {v['accuracy']:.1%} | {v['images']} |" for k, v in ood["per_style"].items()),
            "",
        ]
    per_label = ", ".join(f"{k} {v:g}" for k, v in d["recommended_thresholds"].items())
    lines += [
        f"Scores calibrated with temperature {d['temperature']:g}. Reject thresholds per top label: **{per_label}**"
        f" (the cheapest, a wrong lane costing {WRONG_LANE_COST} rejects, with at most {d['max_wrong_lane']:.0%} wrong"
        f" lane on the {d['threshold_chosen_on']};"
        f" one threshold for all labels would be {d['recommended_threshold']:g}). An item whose embedding lies"
        f" further from every training image than {d['familiarity_limit']:g} (cosine distance) is rejected as"
        " unfamiliar whatever its scores" + _tightened(d.get("novelty_limits") or {}, d["familiarity_limit"]) + ".",
        "",
        "| set | right lane | reject | wrong lane | of which unfamiliar | ECE |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {d[key]['right']:.1%} | {d[key]['reject']:.1%} | {d[key]['wrong']:.1%} |"
            f" {d[key]['unfamiliar']:.1%} | {d[key]['ece']:.3f} |"
            for key, name in (
                ("test", "in-domain test"),
                ("ood", "out-of-domain (in-sample: thresholds chosen on it)"),
                ("ood_one_threshold", "out-of-domain, one threshold for all labels"),
            )
            if key in d
        ),
        "",
        *_outcome_table("In-domain test split by data folder", d["test_by_source"]),
        *_loso_section(d),
        *_wrong_lane_section(d),
        "| threshold | " + " | ".join(f"{name} right / reject / wrong" for name in d["risk_coverage"]) + " |",
        "|---:|" + "---|" * len(d["risk_coverage"]),
        *(
            f"| {t:g} | "
            + " | ".join(
                " / ".join(f"{row[k]:.1%}" for k in ("right", "reject", "wrong"))
                for rows in d["risk_coverage"].values()
                for row in rows
                if row["threshold"] == t
            )
            + " |"
            for t in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
        ),
        "",
    ]
    return lines


_LINE_SETS = {
    "line": "the line's held-back crops",
    "test": "in-domain test (shop photos)",
    "ood": "out-of-domain photos (guard)",
}


def _line_section(comparison: dict | None) -> list[str]:
    """Before / after on the line's own items: what an operator asks of a retrained model first."""
    if not comparison:
        return []
    crops, live = comparison["crops"], comparison.get("live")
    lines = [
        f"## The line: `{comparison['line'] or 'no line crops'}`",
        "",
        f"The line's own crops: {crops['train']} trained on, {crops['val']} chose the epochs and thresholds,"
        f" {crops['test']} held back to judge (too few to tell small differences: the brackets are 95 % intervals).",
        "",
        "| set | images | candidate: right / reject / wrong |"
        + (f" live `{live['bundle']}`: right / reject / wrong |" if live else ""),
        "|---|---:|---|" + ("---|" if live else ""),
    ]
    for key, name in _LINE_SETS.items():
        if key not in comparison["candidate"] or not comparison["candidate"][key]["images"]:
            continue
        cells = [_judged_cell(comparison["candidate"][key]), *([_judged_cell(live[key])] if live else [])]
        lines.append(f"| {name} | {comparison['candidate'][key]['images']} | " + " | ".join(cells) + " |")
    if live and crops["test"]:
        verdict = "**worse**: the daemon refuses it unless forced" if comparison["worse_on_line"] else "not worse"
        lines += [
            "",
            f"On the line's held-back crops the candidate is {verdict} (worse: {_WORSE}, the rule for every set).",
        ]
    if live and comparison.get("worse_elsewhere"):
        lines += [
            "",
            f"**Worse than the live model off the line** ({_WORSE}), so the daemon refuses it unless forced: "
            + "; ".join(comparison["worse_elsewhere"].values())
            + ".",
        ]
    return [*lines, ""]


def _judged_cell(row: dict) -> str:
    right, wrong = row["right_95"], row["wrong_95"]
    return (
        f"{row['right']:.1%} [{right[0]:.0%}–{right[1]:.0%}] / {row['reject']:.1%} /"
        f" {row['wrong']:.1%} [{wrong[0]:.0%}–{wrong[1]:.0%}]"
    )


def _outcome_table(title: str, rows: dict[str, dict]) -> list[str]:
    return [
        f"{title}:",
        "",
        "| source | images | top-1 | right lane | reject | wrong lane |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {row['images']} | {row['accuracy']:.1%} | {row['right']:.1%} | {row['reject']:.1%} |"
            f" {row['wrong']:.1%} |"
            for name, row in rows.items()
        ),
        "",
    ]


def _tightened(shares: dict[str, float], limit: float) -> str:
    """The per-label familiarity limits, where they are tighter than the bundle's (chosen with the thresholds)."""
    tighter = [f"{label} {share:g} of it ({share * limit:.3g})" for label, share in shares.items() if share < 1]
    return f"; for some top labels, chosen with the thresholds, closer still: {', '.join(tighter)}" if tighter else ""


def _loso_section(d: dict) -> list[str]:
    """The honest estimate: each out-of-domain source scored at thresholds chosen on all the others."""
    loso = d.get("leave_one_source_out") or {}
    done = [k for k, v in loso.items() if v]
    if not done:
        return []
    lines = [
        "**Leave one source out** (what a new source can expect): each out-of-domain source is scored at the"
        " thresholds and familiarity limits chosen, as above, on all the other sources; the model never trained or"
        " chose its epochs on any of them.",
        "",
        "| source | images | " + " | ".join(f"{_LOSO_NAMES[k]}: right / reject / wrong" for k in done) + " |",
        "|---|---:|" + "---|" * len(done),
    ]
    first = next(v for v in loso.values() if v)
    for source in [*first["sources"], "all"]:
        cells = []
        for result in (v for v in loso.values() if v):
            row = result["all"] if source == "all" else result["sources"][source]
            cells.append(" / ".join(f"{row[k]:.1%}" for k in ("right", "reject", "wrong")))
        images = first["all"]["images"] if source == "all" else first["sources"][source]["images"]
        name = "**all (pooled)**" if source == "all" else source
        lines.append(f"| {name} | {images} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _pair_row(pair: str, rows: list[dict]) -> str:
    confidences = ", ".join(f"{row['confidence']:.2f}" for row in rows)
    photos = ", ".join(f"`{Path(row['file']).name}`" for row in rows[:3]) + (" …" if len(rows) > 3 else "")
    return f"| {pair} | {len(rows)} | {confidences} | {photos} |"


_LOSO_NAMES = {"one": "one threshold", "per_label": "per-label thresholds"}


def _wrong_lane_section(d: dict) -> list[str]:
    """Which pairs of labels meet out of domain, at which confidence (photos: worst_ood_mistakes.png)."""
    pairs = d.get("ood_wrong_lanes")
    if pairs is None:
        return []
    if not pairs:
        return ["No out-of-domain photo goes to a wrong lane at these thresholds.", ""]
    return [
        "Wrong lanes out of domain at these thresholds, by pair (most confident first):",
        "",
        "| true -> sent to | items | confidences | photos |",
        "|---|---:|---|---|",
        *(_pair_row(pair, rows) for pair, rows in pairs.items()),
        "",
    ]


def _start_note(training: dict) -> str:
    """Where training started and how each member's epochs went."""
    members = training["members"]
    start = (
        f"Warm start from `{training['warm_start_from']}` (phase 1 skipped; {training.get('warm_start_reused')})"
        if training.get("warm_start_from")
        else "From the backbone weights"
    )
    if len(members) > 1:
        seeds = ", ".join(str(m["seed"]) for m in members)
        start += f"; {len(members)} ensemble members (seeds {seeds}, own augmented views each)"
    runs = "; ".join(
        f"{m['epochs']['phase1']} head + {m['epochs']['phase2']} fine-tuning epochs, best validation loss "
        f"{m['best_val_loss']:.4f} in phase {m['best_phase']}{_warm_start_loss(m)}"
        for m in members
    )
    return f"{start}: {runs}."


def _warm_start_loss(member: dict) -> str:
    loss = member.get("warm_start_val_loss")
    return "" if loss is None else f" (the loaded weights: {loss:.4f})"


def _gate_note(settings: dict) -> str:
    agreement, drop = settings["min_agreement"], settings["max_accuracy_drop"]
    note = f"parity gate passed at min agreement {agreement:.0%}, max accuracy drop {drop:g} points"
    if agreement < 0.98 or drop > 1.0:
        note += "; **relaxed from the required 98 % / 1 point: this int8 model is not faithful to float32**"
    return note
