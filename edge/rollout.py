"""Model rollouts while the line runs: a new bundle goes live only after it has proved itself.

A rollout comes from the MQTT ``reload`` command (a directory on the device or an http(s) URL of a
tar archive, with the expected sha256) or from the watch on ``model.bundle`` (typically the
``current`` symlink that install.sh and the Ansible role flip). Each one is

  fetched (URL: size-limited download, safe unpack into the models directory) -> verified (bundle
  metadata, sha256 of every file, lanes for every label) -> loaded beside the live model in its own
  interpreter -> self-tested on the bundle's reference images -> judged against the live model on the
  line's own held-back crops and the trainer's own comparison (`edge.line_check`; a worse one is refused
  unless forced)
  -> handed to the frame loop, which swaps it in between two items.

Any failure leaves the live model running (and, for the watch, points the symlink back at it), so
the line never stops and a restart never picks up a model that failed. The last result goes to the
status topic and, when ``rollout.state_file`` is set, to a JSON file local health checks can read.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import line_check
from edge.bundle import BundleError, ModelBundle, load_bundle
from edge.classifier import Classifier
from edge.config import ConfigError, EdgeSettings
from edge.decision import Thresholds, check_lanes
from edge.preprocess import decode_image

log = logging.getLogger(__name__)


class RolloutError(Exception):
    """A bundle that will not go live; ``stage`` says where it failed."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class RolloutBusy(RolloutError):
    """Another rollout is being prepared; this one was not started."""

    def __init__(self) -> None:
        super().__init__("busy", "another rollout is in progress")


@dataclass(frozen=True)
class Candidate:
    """A verified, loaded and self-tested model waiting for the gap between two items."""

    classifier: Classifier
    source: str
    origin: str  # "command" or "watch"
    self_test: dict[str, int]
    line_check: dict[str, Any]  # the candidate and the live model on the line's held-back crops (edge.line_check)

    @property
    def model_id(self) -> str:
        return self.classifier.bundle.metadata.model_id


def self_test(classifier: Classifier, bundle: ModelBundle, min_accuracy: float, required: bool) -> dict[str, int]:
    """Classify the bundle's reference images; RolloutError when too few come out right."""
    images = bundle.metadata.self_test
    if not images:
        if required:
            raise RolloutError("self_test", f"{bundle.metadata_path}: no self-test images (rollout.require_self_test)")
        return {"passed": 0, "total": 0}
    wrong = []
    for image in images:
        path = bundle.directory / image.file
        try:
            scores = classifier.classify(decode_image(str(path)))
        except ValueError as exc:
            raise RolloutError("self_test", str(exc)) from exc
        best = int(scores.argmax())
        if classifier.labels[best] != image.label:
            wrong.append(f"{image.file}: {classifier.labels[best]} ({scores[best]:.2f}), expected {image.label}")
    passed = len(images) - len(wrong)
    if passed < min_accuracy * len(images):
        raise RolloutError(
            "self_test", f"self-test {passed}/{len(images)} right, {min_accuracy:.0%} needed: " + "; ".join(wrong[:5])
        )
    return {"passed": passed, "total": len(images)}


def fetch_bundle(url: str, models_dir: Path, sha256: str, max_bytes: int, timeout_s: float) -> Path:
    """Download a tar(.gz) of a bundle directory into ``models_dir/<name>-<version>-<sha12>``."""
    if not url.startswith(("http://", "https://")):
        raise RolloutError("download", f"{url}: only http:// and https:// URLs are accepted")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".incoming-") as scratch:
        archive = Path(scratch) / "bundle.tar"
        _download(url, archive, max_bytes, timeout_s)
        unpacked = Path(scratch) / "bundle"
        _unpack(archive, unpacked, max_bytes * 4, url)
        root = unpacked if (unpacked / "bundle.json").is_file() else _single_subdirectory(unpacked, url)
        bundle = _verified(root, sha256)
        target = models_dir / f"{bundle.metadata.name}-{bundle.metadata.version}-{bundle.metadata.sha256[:12]}"
        if not target.exists():
            os.replace(root, target)
        elif _verified(target, sha256).metadata != bundle.metadata:
            raise RolloutError("verify", f"{target}: exists with different metadata; remove it or bump the version")
    return target


STALL_S = 30.0  # a server that sends nothing for this long has failed, whatever time the download has left


def _download(url: str, destination: Path, max_bytes: int, timeout_s: float) -> None:
    """Within ``timeout_s`` for the whole transfer (a server sending a byte every few seconds never trips a
    per-read timeout), ``max_bytes`` at most."""
    request = urllib.request.Request(url, headers={"User-Agent": "sortline-edge"})
    give_up = time.monotonic() + timeout_s
    try:
        with (
            urllib.request.urlopen(request, timeout=min(timeout_s, STALL_S)) as response,
            destination.open("wb") as out,
        ):
            declared = response.headers.get("Content-Length")
            if declared and int(declared) > max_bytes:
                raise RolloutError("download", f"{url}: {int(declared)} bytes, more than rollout.max_download_mb")
            received = 0
            while block := response.read1(1 << 20):  # what has come, not a full megabyte: the clock is checked
                received += len(block)
                if received > max_bytes:
                    raise RolloutError("download", f"{url}: more than {max_bytes} bytes, rollout.max_download_mb")
                if time.monotonic() > give_up:
                    raise RolloutError(
                        "download", f"{url}: not complete after {timeout_s:g} s (rollout.download_timeout_s)"
                    )
                out.write(block)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RolloutError("download", f"{url}: download failed: {exc}") from exc


def _unpack(archive: Path, destination: Path, max_bytes: int, url: str) -> None:
    """Plain files and directories only, all inside ``destination``, bounded in total size."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                    raise RolloutError("download", f"{url}: archive entry {member.name!r} is not a plain relative file")
            if sum(member.size for member in members) > max_bytes:
                raise RolloutError("download", f"{url}: archive unpacks to more than {max_bytes} bytes")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(destination, **extra)
    except (tarfile.TarError, OSError) as exc:
        raise RolloutError("download", f"{url}: not a readable tar archive: {exc}") from exc


def _single_subdirectory(directory: Path, url: str) -> Path:
    children = [child for child in directory.iterdir() if child.is_dir()]
    if len(children) != 1 or not (children[0] / "bundle.json").is_file():
        raise RolloutError("download", f"{url}: the archive holds no bundle.json (at its top or in one directory)")
    return children[0]


def _verified(directory: Path, sha256: str | None) -> ModelBundle:
    try:
        bundle = load_bundle(directory)
    except BundleError as exc:
        raise RolloutError("verify", str(exc)) from exc
    if sha256 and sha256 != bundle.metadata.sha256:
        actual = bundle.metadata.sha256
        raise RolloutError("verify", f"{bundle.model_path}: sha256 {actual} is not the expected {sha256}")
    return bundle


class Rollout:
    """One rollout at a time: prepare a candidate, record what became of it."""

    def __init__(self, settings: EdgeSettings, live: Classifier) -> None:
        self._settings = settings
        self._lock = threading.Lock()  # one rollout prepared at a time
        self._state_lock = threading.Lock()  # `last` and the state file, written from two threads
        self.link = settings.model.bundle if settings.model.bundle.is_symlink() else None
        self.models_dir = settings.rollout.models_dir or settings.model.bundle.absolute().parent
        self.live_directory = live.bundle.directory.resolve()
        self.live_model = live.bundle.metadata.model_id
        self.last: dict[str, Any] | None = None
        self._write_state()

    def prepare(
        self,
        *,
        bundle: Path | None = None,
        url: str | None = None,
        sha256: str | None = None,
        origin: str = "command",
        force: bool = False,
    ) -> Candidate:
        """`force`: roll out even a candidate the line check finds worse than the live model."""
        source = url or str(bundle)
        if not self._lock.acquire(blocking=False):
            raise RolloutBusy
        try:
            candidate = self._prepare(source, bundle, url, sha256, origin, force)
        except RolloutError as exc:
            log.error("rollout of %s refused (%s), keeping %s: %s", source, exc.stage, self.live_model, exc)
            self._record("failed", source=source, origin=origin, stage=exc.stage, error=str(exc))
            if origin == "watch":
                self._point_link(self.live_directory)
            raise
        finally:
            self._lock.release()
        log.info("rollout: %s passed its self-test %s and the line check %s, swapping between items",
                 candidate.model_id, candidate.self_test, candidate.line_check)  # fmt: skip
        self._record("pending", model=candidate.model_id, source=source, origin=origin, self_test=candidate.self_test,
                     line_check=candidate.line_check)  # fmt: skip
        return candidate

    def _prepare(
        self, source: str, bundle: Path | None, url: str | None, sha256: str | None, origin: str, force: bool
    ) -> Candidate:
        rollout = self._settings.rollout
        if url is not None:
            max_bytes = int(rollout.max_download_mb * 1024 * 1024)
            bundle = fetch_bundle(url, self.models_dir, sha256 or "", max_bytes, rollout.download_timeout_s)
        assert bundle is not None
        loaded = _verified(bundle, sha256)
        try:
            check_lanes(loaded.labels, self._settings.lanes)
            Thresholds.resolve(self._settings.model, loaded.metadata)
        except ConfigError as exc:
            raise RolloutError("verify", str(exc)) from exc
        try:
            classifier = Classifier(loaded, threads=self._settings.model.threads)
        except BundleError as exc:
            raise RolloutError("load", str(exc)) from exc
        tested = self_test(classifier, loaded, rollout.self_test_min_accuracy, rollout.require_self_test)
        return Candidate(classifier, source, origin, tested, self._judged_on_line(classifier, force))

    def _judged_on_line(self, candidate: Classifier, force: bool) -> dict[str, Any]:
        """The candidate against the live model on the line's held-back crops here, and as the trainer measured it
        elsewhere; RolloutError if worse, unless forced."""
        try:
            live = load_bundle(self.live_directory)
            judged = line_check.compare(candidate, live, self._settings.model, self._settings.crops.labelled)
        except (BundleError, ValueError, OSError) as exc:
            raise RolloutError("line_check", f"cannot judge the candidate on the line's crops: {exc}") from exc
        worse = []
        if judged.get("worse"):
            before, after = line_check.Outcome(**judged["live"]), line_check.Outcome(**judged["candidate"])
            worse.append(f"on the line's {judged['crops']} held-back crops: {after} (live: {before})")
        if judged.get("worse_elsewhere"):
            worse.append("as the trainer measured it: " + "; ".join(judged["worse_elsewhere"].values()))
        if worse and not force:
            raise RolloutError(
                "line_check",
                f'worse than the live model {" and ".join(worse)}; send the reload with "force": true to roll it'
                " out anyway",
            )
        return judged | {"forced": bool(worse)}

    def swapped(self, candidate: Candidate) -> None:
        """The frame loop runs the candidate now; make it what a restart loads, too."""
        self.live_directory = candidate.classifier.bundle.directory.resolve()
        self.live_model = candidate.model_id
        self._point_link(self.live_directory)
        self._record(
            "ok",
            model=candidate.model_id,
            source=candidate.source,
            origin=candidate.origin,
            self_test=candidate.self_test,
            line_check=candidate.line_check,
        )

    def status(self) -> dict[str, Any] | None:
        return self.last

    def _record(self, result: str, **fields: Any) -> None:
        """Called from the reload thread (prepared, failed) and the frame loop (swapped)."""
        with self._state_lock:
            self.last = {"result": result, "model": None, "stage": None, "error": None, "at": round(time.time(), 3)}
            self.last.update(fields)
            self._write_state()

    def _point_link(self, directory: Path) -> None:
        """Repoint the ``model.bundle`` symlink (atomically) so a restart loads ``directory``."""
        if self.link is None or self.link.resolve() == directory:
            return
        beside = directory.parent == self.link.parent.resolve()
        target = Path(os.path.relpath(directory, self.link.parent)) if beside else directory
        staging = self.link.with_name(f".{self.link.name}.{os.getpid()}.{threading.get_ident()}")  # two threads
        try:
            staging.unlink(missing_ok=True)
            staging.symlink_to(target)
            os.replace(staging, self.link)
            log.info("%s -> %s", self.link, target)
        except OSError as exc:
            log.error("cannot repoint %s to %s: %s", self.link, directory, exc)

    def _write_state(self) -> None:
        path = self._settings.rollout.state_file
        if path is None:
            return
        state = {"live": {"model": self.live_model, "bundle": str(self.live_directory)}, "last": self.last}
        try:
            staging = path.with_name(f".{path.name}.tmp")
            staging.write_text(json.dumps(state, indent=2) + "\n")
            os.replace(staging, path)
        except OSError as exc:
            log.warning("cannot write rollout state %s: %s", path, exc)


class BundleWatch:
    """Polls ``model.bundle`` (where a symlink points, and bundle.json's mtime); calls back once a
    change has held still for two polls, so a bundle still being copied is not picked up half-written.
    A callback that returns False has not taken the bundle: it is offered again at the next poll."""

    def __init__(self, path: Path, interval_s: float, on_change: Callable[[Path], bool]) -> None:
        self._path, self._interval, self._on_change = path, interval_s, on_change
        self._stop = threading.Event()
        self._seen = self._signature()
        self._thread = threading.Thread(target=self._run, name="bundle-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _signature(self) -> tuple[str, float] | None:
        try:
            resolved = self._path.resolve(strict=True)
            return str(resolved), (resolved / "bundle.json").stat().st_mtime
        except OSError:
            return None

    def _run(self) -> None:
        pending = None
        while not self._stop.wait(self._interval):
            current = self._signature()
            if current is None or current == self._seen:
                pending = None
                continue
            if current != pending:
                pending = current  # changed: wait one more poll for it to settle
                continue
            try:
                if not self._on_change(Path(current[0])):
                    continue  # not taken now (another rollout is busy): offered again at the next poll
            except Exception:  # the watch must outlive any one bad bundle
                log.exception("rollout from the watch on %s failed", self._path)
            self._seen, pending = self._signature(), None
