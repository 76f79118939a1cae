"""`sortline-train train DATA --out DIR [...]`, `sortline-train export WORK_DIR [--out DIR]` and
`sortline-train predict --bundle DIR IMAGE...`.

The train flags are generated from `TrainConfig`, so a setting has one name, one default and one
help text whether it comes from a flag, a TOML file or a SORTLINE_TRAIN_* variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.config import SettingSources, validation_problems
from trainer.config import TrainConfig, load_config

EXIT_BAD_INPUT = 2
EXIT_PARITY = 3
_POSITIONAL = {"data", "more_data"}
_FILE_OR_ENV_ONLY = {"augmentation"}  # nested settings: TOML table [augmentation] or SORTLINE_TRAIN_AUGMENTATION__*


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sortline-train", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train and export a model bundle",
        description="Settings: defaults < --config TOML < SORTLINE_TRAIN_* env < flags.",
    )
    train.add_argument(
        "data",
        type=Path,
        nargs="+",
        help=f"{TrainConfig.model_fields['data'].description}; {TrainConfig.model_fields['more_data'].description}",
    )
    train.add_argument("--config", type=Path, help="TOML file with any of the settings below (snake_case keys)")
    for name, info in TrainConfig.model_fields.items():
        if name in _POSITIONAL | _FILE_OR_ENV_ONLY:
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = " (required)" if info.is_required() else "" if default in (None, []) else f" (default: {default})"
        repeatable = {"action": "append", "type": Path} if name in ("ood", "line") else {}
        train.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{info.description or ''}{shown}" + (" (repeatable)" if repeatable else ""),
            **repeatable,
        )

    export = commands.add_parser(
        "export",
        help="turn a finished training run into the bundle (int8 export, parity gate, report): needs TensorFlow",
        description="A run trained on JAX or PyTorch (KERAS_BACKEND) stops before the export; export it here.",
    )
    export.add_argument("work_dir", type=Path, help="the run's --work-dir")
    export.add_argument("--out", type=Path, help="the bundle directory (default: the run's --out)")

    predict = commands.add_parser("predict", help="classify images with a bundle, as the edge would")
    predict.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    predict.add_argument("--threads", type=int, default=2)
    predict.add_argument("images", type=Path, nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "predict":
        return predict(args.bundle, args.images, args.threads)
    if args.command == "export":
        return export(args.work_dir, args.out)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "data")}
    overrides["data"], overrides["more_data"] = args.data[0], args.data[1:]
    try:
        cfg = load_config(args.config, **overrides)
    except ValidationError as exc:
        sources = SettingSources(env_prefix="SORTLINE_TRAIN_", config_file=args.config, flags=overrides)
        problems = "\n".join(f"  {problem}" for problem in validation_problems(exc, sources))
        print(f"sortline-train: invalid settings:\n{problems}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(f"sortline-train: invalid settings: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # a TOML syntax error
        print(f"sortline-train: {args.config}: not valid TOML: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return train(cfg)


def train(cfg: TrainConfig) -> int:
    return _pipeline_stage(lambda pipeline: pipeline.run(cfg), cfg.out, cfg.work_dir, cfg.backend)


def export(work_dir: Path, out: Path | None) -> int:
    # the converter needs TensorFlow whatever $KERAS_BACKEND says (it trained the run, maybe elsewhere)
    return _pipeline_stage(lambda pipeline: pipeline.export(work_dir, out), out, work_dir, "tensorflow")


def _pipeline_stage(
    stage: Callable[[Any], dict], out: Path | None, work_dir: Path | None, backend: str | None = None
) -> int:
    """Run a pipeline stage with the backend chosen (``backend``, else $KERAS_BACKEND, else TensorFlow) and the
    extras checked; errors as exit codes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from trainer.accelerator import TRAINER_EXTRA, BackendError, choose_backend

    try:
        choose_backend(backend)  # set before Keras is imported
    except BackendError as exc:
        print(f"sortline-train: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:  # Keras, imagehash, matplotlib: the trainer extras, which a daemon-only install lacks
        from trainer import pipeline
        from trainer.data import DataError
        from trainer.evaluate import ParityError
        from trainer.model import WeightsError
        from trainer.trained_run import TrainedRunError
    except ModuleNotFoundError as exc:
        print(f"sortline-train: training needs the trainer extra (missing module {exc.name!r}): {TRAINER_EXTRA}",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT

    try:
        result = stage(pipeline)
    except (DataError, WeightsError, TrainedRunError) as exc:
        print(f"sortline-train: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ParityError as exc:
        print(
            f"sortline-train: {exc}\nNo bundle written to {out}; the rejected candidate is in "
            f"{work_dir}/int8-candidate.",
            file=sys.stderr,
        )
        return EXIT_PARITY
    if "trained" in result:
        print(
            f"trained in {result['trained']}; export it where TensorFlow is: sortline-train export {result['trained']}"
        )
        return 0
    print(_summary(result))
    return 0


def _summary(result: dict) -> str:
    """The run's last line: accuracy, leave-one-source-out decisions, parity, thresholds, report, time."""
    out = Path(result["bundle_dir"])
    p, ood, d = result["parity"], result["ood_int8"], result["decisions"]
    loso = (d.get("leave_one_source_out") or {}).get("per_label")
    return (
        f"bundle {out}: test accuracy int8 {result['test_int8']['accuracy']:.1%}, float32"
        f" {result['test_float32']['accuracy']:.1%}"
        + (f", out-of-domain {ood['accuracy']:.1%}" if ood else "")
        + (
            f" (leaving each source out: right {loso['all']['right']:.1%}, reject {loso['all']['reject']:.1%},"
            f" wrong lane {loso['all']['wrong']:.1%})"
            if loso
            else ""
        )
        + f"; int8/float32 lane agreement {p['lane_agreement']:.1%}; thresholds "
        + ", ".join(f"{label} {t:g}" for label, t in d["recommended_thresholds"].items())
        + f"; report {out / 'report.md'}; {result['timing']['total_s']:.0f} s"
    )


def predict(bundle_dir: Path, images: list[Path], threads: int) -> int:
    from edge.bundle import BundleError, load_bundle
    from edge.classifier import Classifier, classify_files
    from edge.config import ModelSettings
    from edge.decision import Thresholds

    try:
        bundle = load_bundle(bundle_dir)
        classifier = Classifier(bundle, threads=threads)
    except BundleError as exc:
        print(f"sortline-train: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    thresholds = Thresholds.resolve(ModelSettings(), bundle.metadata)
    failed = 0
    for path, assessment, error in classify_files(classifier, images):
        if assessment is None:
            print(f"{path}: error: {error}", file=sys.stderr)
            failed += 1
            continue
        ranked = sorted(zip(classifier.labels, assessment.scores, strict=True), key=lambda pair: -pair[1])
        limit = thresholds.novelty_limit(ranked[0][0])
        novelty = assessment.novelty
        unfamiliar = f"; unfamiliar (novelty {novelty:.2f}, above {limit:g})" if novelty and novelty > limit else ""
        print(
            f"{path}: {ranked[0][0]}  ("
            + ", ".join(f"{label} {score:.3f}" for label, score in ranked)
            + f"){unfamiliar}"
        )
    return EXIT_BAD_INPUT if failed else 0
