"""`sortline-edge`: run the daemon, check a configuration, or classify image files."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from edge.belt_calibration import BeltCalibration
from edge.bundle import BundleError, load_bundle
from edge.config import ConfigError, EdgeSettings, Roi, load_settings, missing_extra
from edge.decision import Thresholds, check_lanes, lane_label
from edge.preprocess import IMAGE_SUFFIXES
from edge.roi_override import RoiOverride

log = logging.getLogger("edge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sortline-edge", description=__doc__)
    config_help = "TOML config file (SORTLINE_* environment overrides it)"
    parser.add_argument("--config", type=Path, help=config_help)
    # --config is also accepted after the sub-command; SUPPRESS keeps the sub-parser from resetting it to None.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", parents=[after], help="run the sorting daemon (the default)")
    commands.add_parser("check-config", parents=[after], help="validate and print the effective config, secrets masked")
    classify = commands.add_parser("classify", parents=[after], help="print label and scores for images or folders")
    classify.add_argument("images", nargs="+", type=Path, help="image files, or folders searched for images")
    classify.add_argument("--bundle", type=Path, help="model bundle directory (default: model.bundle from the config)")
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

        daemon = Daemon(settings)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: daemon.stop())
        return daemon.run()
    except (ConfigError, BundleError) as exc:
        print(f"sortline-edge: {exc}", file=sys.stderr)
        return 2


def _check_config(settings: EdgeSettings) -> int:
    """What `run` checks before its first frame, model load included: this is the unit's ExecStartPre and
    the fleet's health check, so a bundle it passes must run."""
    from edge.classifier import Classifier

    print(settings.masked_json())
    bundle = load_bundle(settings.model.bundle)
    check_lanes(bundle.labels, settings.lanes)
    Classifier(bundle, threads=1)  # the runtime loads the model; its inputs and outputs must fit the labels
    thresholds = Thresholds.resolve(settings.model, bundle.metadata)
    per_label = f", per label {thresholds.per_label}" if thresholds.per_label else ""
    familiarity = bundle.metadata.familiarity
    familiar = "; no familiarity check in this bundle"
    if familiarity:
        tighter = "".join(
            f", {label} items {familiarity.limit * thresholds.novelty_limit(label):.3g}"
            for label in familiarity.per_label
        )
        distance = familiarity.limit * thresholds.max_novelty
        familiar = f"; unfamiliar items (further than {distance:.3g} from every training image{tighter}) rejected"
    roi = RoiOverride(settings.camera.roi, settings.state_directory)
    if roi.problem:
        print(f"sortline-edge: warning: {roi.problem}", file=sys.stderr)
    kept = f", kept in {roi.path}" if roi.source == "page" else ""
    print(
        f"ok: model {bundle.metadata.model_id}, labels {list(bundle.labels)}, reject threshold"
        f" {thresholds.default} (from {thresholds.source}){per_label}{familiar}; roi {_roi_text(roi.roi)}"
        f" (from the {roi.source}{kept})",
        file=sys.stderr,
    )
    if settings.trigger.mode == "presence":
        print(_belt_text(settings), file=sys.stderr)
    if settings.opcua.enabled:
        print(_opcua_text(settings))
    return 0


def _opcua_text(settings: EdgeSettings) -> str:
    """The OPC UA endpoint and, beyond loopback, the server certificate's thumbprint (made on first use), which
    an integrator compares with what their client shows before trusting it."""
    from edge.opcua_certificate import server_certificate

    try:
        certificate = server_certificate(settings)
    except ModuleNotFoundError as exc:
        raise missing_extra("opcua", exc) from None
    endpoint = settings.opcua.endpoint
    if certificate is None:
        return f"OPC UA server {endpoint}: loopback, anonymous clients, no message security"
    return (
        f"OPC UA server {endpoint}: user {settings.opcua.username}, Basic256Sha256 Sign / SignAndEncrypt; "
        f"OPC UA server certificate thumbprint {certificate.thumbprint()} ({certificate.cert_file})"
    )


def _belt_text(settings: EdgeSettings) -> str:
    """Where decisions are timed and at what scale, and where each value comes from (page or config)."""
    belt = BeltCalibration(settings.trigger.presence, settings.state_directory)
    if belt.problem:
        print(f"sortline-edge: warning: {belt.problem}", file=sys.stderr)
    state = belt.describe()
    source = {name: "page" if name in state["from_page"] else "config" for name in ("reference_line", "mm_per_px")}
    kept = f", kept in {belt.path}" if state["from_page"] else ""
    scale = "not calibrated (belt speed in px/s only)" if belt.mm_per_px is None else f"{belt.mm_per_px:g} mm/px"
    return (
        f"belt: travel {settings.trigger.presence.direction}; reference line at {belt.reference_line:g} of the ROI"
        f" along the travel (from the {source['reference_line']}); {scale} (from the {source['mm_per_px']}){kept}"
    )


def _roi_text(roi: Roi | None) -> str:
    if roi is None:
        return "the whole frame"
    return f"x={roi.x:g} y={roi.y:g} width={roi.width:g} height={roi.height:g} ({roi.unit})"


def _classify(settings: EdgeSettings, bundle_path: Path, images: list[Path]) -> int:
    from edge.classifier import Classifier, classify_files

    classifier = Classifier(load_bundle(bundle_path), threads=settings.model.threads)
    thresholds = Thresholds.resolve(settings.model, classifier.bundle.metadata)
    files, failures = [], 0
    for path in images:
        found = image_files(path)
        if not found:
            why = "no images in this folder" if path.is_dir() else "no such file"
            print(f"sortline-edge: {path}: {why}", file=sys.stderr)
            failures += 1
        files += found
    for path, assessment, error in classify_files(classifier, files):
        if assessment is None:
            print(f"sortline-edge: {error}", file=sys.stderr)
            failures += 1
            continue
        label, confidence, reason = lane_label(assessment.scores, assessment.novelty, classifier.labels, thresholds)
        ranked = {lab: round(float(s), 4) for lab, s in zip(classifier.labels, assessment.scores, strict=True)}
        novelty = None if assessment.novelty is None else round(assessment.novelty, 3)
        row = {"file": str(path), "label": label, "confidence": round(confidence, 4), "scores": ranked}
        print(json.dumps(row | {"reason": reason, "novelty": novelty}))
    return 1 if failures else 0


def image_files(path: Path) -> list[Path]:
    """A file as given (a non-image file is reported when it fails to decode); a folder's images, recursively
    and sorted, so `classify data/apparel-ood` runs over a whole labelled set."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [path] if path.exists() else []
