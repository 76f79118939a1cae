"""`sortline-edge`: run the daemon, check a configuration, or classify image files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge.bundle import BundleError, load_bundle
from edge.config import ConfigError, EdgeSettings, load_settings
from edge.decision import REJECT, Thresholds, check_lanes

log = logging.getLogger("edge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sortline-edge", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML config file (SORTLINE_* environment overrides it)")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the sorting daemon (the default)")
    commands.add_parser("check-config", help="validate and print the effective config, secrets masked")
    classify = commands.add_parser("classify", help="print label and scores for image files")
    classify.add_argument("images", nargs="+", type=Path)
    classify.add_argument("--bundle", type=Path, help="model bundle (default: model.bundle from the config)")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"sortline-edge: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check-config":
            return _check_config(settings)
        if args.command == "classify":
            return _classify(settings, args.bundle or settings.model.bundle, args.images)
        from edge.daemon import Daemon  # the daemon's imports (OpenCV, paho) are not needed above

        return Daemon(settings).run()
    except (ConfigError, BundleError) as exc:
        print(f"sortline-edge: {exc}", file=sys.stderr)
        return 2


def _check_config(settings: EdgeSettings) -> int:
    print(settings.masked_json())
    bundle = load_bundle(settings.model.bundle)
    check_lanes(bundle.labels, settings.lanes)
    thresholds = Thresholds.resolve(settings.model, bundle.metadata)
    per_label = f", per label {thresholds.per_label}" if thresholds.per_label else ""
    print(
        f"ok: model {bundle.metadata.model_id}, labels {list(bundle.labels)}, reject threshold"
        f" {thresholds.default} (from {thresholds.source}){per_label}",
        file=sys.stderr,
    )
    return 0


def _classify(settings: EdgeSettings, bundle_path: Path, images: list[Path]) -> int:
    from edge.classifier import Classifier, classify_files

    classifier = Classifier(load_bundle(bundle_path), threads=settings.model.threads)
    thresholds = Thresholds.resolve(settings.model, classifier.bundle.metadata)
    failures = 0
    for path, scores, error in classify_files(classifier, images):
        if scores is None:
            print(f"{path}: error: {error}", file=sys.stderr)
            failures += 1
            continue
        best = int(scores.argmax())
        top = classifier.labels[best]
        label = top if scores[best] >= thresholds.for_label(top) else REJECT
        ranked = {lab: round(float(s), 4) for lab, s in zip(classifier.labels, scores, strict=True)}
        print(
            json.dumps(
                {"file": str(path), "label": label, "confidence": round(float(scores[best]), 4), "scores": ranked}
            )
        )
    return 1 if failures else 0
