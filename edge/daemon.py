"""The daemon: camera -> trigger mode (finds items on every frame) -> inference worker -> one decision per
item, in belt order -> MQTT.

The frame loop never waits for the classifier: detection keeps up with the camera however slow the model
is, so items are never merged because a classification spanned the gap between them. `Daemon` holds the
lifecycle (start, stop, commands, model swaps) and the wiring; the trigger modes (`edge.modes`), the item
book (`edge.items`) and the worker (`edge.inference`) do the work.

The frame loop owns the daemon's state: items, thresholds, pause, the live model and its swap, status and
figures. Commands (MQTT thread), finished reloads (their own thread) and the bundle watch reach it through
`edge.inbox` and get their replies from it; slow work (downloads, self-tests) runs beside it and hands its
result in. Page actions (ROI, belt calibration) wait in their own objects until the loop takes them between
items.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from edge import __version__, line_check
from edge.belt_calibration import BeltCalibration
from edge.bundle import BundleError, load_bundle
from edge.camera import Camera, Frame
from edge.classifier import Classifier
from edge.commands import Command, CommandError, Reload, Trigger
from edge.config import EdgeSettings, missing_extra
from edge.crops import CropStore
from edge.decision import ItemVote, Thresholds, as_late, check_lanes, decide
from edge.inbox import Inbox, InboxClosed
from edge.inference import InferenceWorker
from edge.items import Item, ItemBook
from edge.modes import build_mode
from edge.modes.external import ExternalMode
from edge.modes.presence import PresenceMode
from edge.mqtt import MqttLink
from edge.parts import DecisionLink, FrameSource
from edge.roi_override import RoiOverride
from edge.rollout import BundleWatch, Candidate, Rollout, RolloutBusy, RolloutError
from edge.stats import RunStats
from edge.systemd import notify, watchdog_interval_s

log = logging.getLogger(__name__)

SHOW_EVERY_S = 0.1  # the page shows at most 5 frames a second; handing it every frame costs a fast loop 1-2 %
FIGURES_EVERY_S = 1.0  # how fresh /metrics' figures are
COMMAND_TIMEOUT_S = 10.0  # a command the frame loop has not carried out by then is refused (the loop is stuck)


class Daemon:
    def __init__(
        self, settings: EdgeSettings, camera: FrameSource | None = None, link: DecisionLink | None = None
    ) -> None:
        """``camera`` and ``link``: other ends than the configured camera and broker (tests)."""
        self.settings = settings
        classifier = self._load_classifier(settings.model.bundle)
        self.rollout = Rollout(settings, classifier)
        self.thresholds = Thresholds.resolve(settings.model, classifier.bundle.metadata)
        self.camera: FrameSource = camera or Camera(settings.camera)
        self.link: DecisionLink = link or MqttLink(settings.mqtt, settings.device_id)
        self.crops = CropStore(settings.crops)
        self.stats = RunStats()
        self.run_id = uuid.uuid4().hex[:8]
        self.paused = False
        self.worker = InferenceWorker(classifier)
        self.items = ItemBook(self.worker, wait_s=settings.trigger.decision_wait_s)
        self._opened = 0  # items opened by presence and continuous modes: the nth gets id <run_id>-n
        self.roi = RoiOverride(settings.camera.roi, settings.state_directory)
        if self.roi.problem:
            log.error("%s", self.roi.problem)
        self.mode = build_mode(settings, self.roi.roi, self._next_item_id)
        self.belt = BeltCalibration(settings.trigger.presence, settings.state_directory)
        self._belt_version = -1  # the calibration the mode has: none yet
        self._apply_item_margin(classifier)
        self._stop = threading.Event()
        self._seq = 0
        self._next_classifier: Candidate | None = None
        self._watch: BundleWatch | None = None
        self.inbox = Inbox()  # how the other threads change what the frame loop owns (all of the above)
        self._status: dict[str, object] = {}  # the latest status published
        self.figures: dict[str, object] = {}  # the latest `_figures()`, for /metrics (read on its thread)
        self._figures_at = float("-inf")
        self.metrics = self._metrics_server() if settings.metrics.enabled else None
        self.live, self.ui = self._ui_server() if settings.ui.enabled else (None, None)
        self.opcua = self._opcua_server() if settings.opcua.enabled else None
        self._camera_in_status: tuple[str, str | None] | None = None  # what the retained status last said
        self._shown_at = float("-inf")  # when the page was last handed a frame

    @property
    def classifier(self) -> Classifier:
        return self.worker.classifier

    def _load_classifier(self, bundle_path: Any) -> Classifier:
        bundle = load_bundle(bundle_path)
        check_lanes(bundle.labels, self.settings.lanes)
        classifier = Classifier(bundle, threads=self.settings.model.threads)
        log.info("model %s loaded (%s, labels %s)", bundle.metadata.model_id, classifier.runtime, bundle.labels)
        return classifier

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Run until `stop` (SIGTERM/SIGINT, see edge.cli) or the end of a video file; returns the process exit
        status."""
        self._publish_status()  # remembered by the link: its birth message then already names the model
        self.figures = self._figures()
        if self.opcua is not None:
            self.opcua.start()  # first: a port in use stops the daemon before anything else has started
        self.link.start(on_command=self._on_command, on_trigger=self._on_trigger)
        if self.metrics is not None:
            self.metrics.start()
        if self.ui is not None:
            self.ui.start()
        self.worker.start()
        self.crops.start()
        self.camera.start()
        if self.settings.rollout.watch:
            rollout = self.settings.rollout
            self._watch = BundleWatch(self.settings.model.bundle, rollout.watch_interval_s, self._on_watch)
            self._watch.start()
        # No waiting for the broker or the first frame: both are states the loop lives with (decisions queue
        # until the broker is back; a camera that is not there yet is retried), and SIGTERM is obeyed at once.
        notify("READY=1\nSTATUS=sorting")
        log.info("ready: mode=%s device=%s", self.settings.trigger.mode, self.settings.device_id)
        try:
            self._loop()
        finally:
            undelivered = self._shutdown()
        return 1 if undelivered else 0  # a PLC missed decisions: a supervisor should see the failure

    def stop(self) -> None:
        self._stop.set()

    def _shutdown(self) -> int:
        """Decide the item in view, flush the queue, say offline; returns the decisions left undelivered."""
        notify("STOPPING=1")
        self.inbox.close()  # commands from now on are refused: the loop that would carry them out has ended
        if self._watch is not None:
            self._watch.stop()
        if isinstance(self.mode, PresenceMode):
            self.mode.stop(self.items)  # items in view timed by their paths; what it learned kept
        self._decide_open_items()
        self.worker.stop()
        self.crops.stop()
        self.camera.stop()
        undelivered = self.link.close(flush_timeout=self.settings.mqtt.flush_timeout_s)
        if self.opcua is not None:
            self.opcua.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.ui is not None:
            self.ui.stop()
        if undelivered:
            log.error("%d decision(s) could not be delivered before shutdown", undelivered)
        log.info("stopped after %d frames, %d decisions", self.stats.frames, sum(self.stats.decisions.values()))
        return undelivered

    # ---- the frame loop --------------------------------------------------------------------
    def _loop(self) -> None:
        watchdog_every = watchdog_interval_s()
        last_ping = last_frame_at = time.monotonic()
        last_stats = last_ping - self.settings.mqtt.stats_interval_s  # the first stats go out at once
        while not self._stop.is_set():
            frame = self.camera.next_frame(timeout=0.2)
            now = time.monotonic()
            if frame is not None:
                last_frame_at = now
                self.stats.frames += 1
                self._swap_model_between_items()
                self._change_roi_between_items()
                self._use_belt_calibration()
                if not self.paused:
                    self.mode.on_frame(frame, self.items)
                if self.live is not None and now - self._shown_at >= SHOW_EVERY_S:
                    self._show(frame)
                    self._shown_at = now
            elif self.camera.ended:
                log.info("video source ended")
                break
            self.inbox.run_pending()
            self.mode.on_tick(now, self.items)
            self._publish_decided(now)
            if watchdog_every and now - last_ping >= watchdog_every and self._healthy(now - last_frame_at):
                notify("WATCHDOG=1")
                last_ping = now
            if (self.camera.state, self.camera.last_error) != self._camera_in_status:
                self._publish_status()  # a camera that fails or comes back is news for the line's monitoring
            stats_due = now - last_stats >= self.settings.mqtt.stats_interval_s
            if stats_due or now - self._figures_at >= FIGURES_EVERY_S:
                self.figures, self._figures_at = self._figures(), now
                if self.opcua is not None:
                    self.opcua.status(self._status, self.figures)
            if stats_due:
                stats = {**self.stats.snapshot(), **self.figures}
                self.link.publish_stats(stats)
                if self.live is not None:
                    self.live.stats(stats)
                last_stats = now

    def _show(self, frame: Frame) -> None:
        """Hand the frame, the items' boxes (in frame pixels) with their running votes and the mode's state
        to the page."""
        height, width = frame.image.shape[:2]
        roi = self.roi.roi
        x0, y0, x1, y1 = roi.to_pixels(width, height) if roi is not None else (0, 0, width, height)
        items = []
        for seen in self.mode.in_view():
            bx0, by0, bx1, by1 = seen.box
            items.append(((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), seen.touching, self._running_vote(seen.vote)))
        reference, direction = None, None
        if isinstance(self.mode, PresenceMode) and (segment := self.mode.reference_segment()) is not None:
            (ax, ay), (bx, by) = segment
            reference = ((ax + x0, ay + y0), (bx + x0, by + y0))
            direction = self.mode.tracker.direction if self.mode.tracker is not None else None
        assert self.live is not None
        self.live.frame(frame.image, (x0, y0, x1, y1), items, self.mode.state(), reference, direction)

    def _running_vote(self, vote: ItemVote) -> str:
        scores = vote.mean_scores()
        if scores is None:
            return "..."  # not classified yet (OpenCV's fonts draw ASCII only)
        best = int(scores.argmax())
        return f"{self.classifier.labels[best]} {scores[best]:.2f} ({vote.frames})"

    def _publish_decided(self, now: float) -> None:
        for result in self.items.collect():
            self.stats.classified += 1
            self.stats.inference_ms.add(result.inference_ms)
            if self.metrics is not None:
                self.metrics.inference_seconds.observe(result.inference_ms / 1000)
        for item in self.items.decided(now):
            self._publish_decision(item)

    def _decide_open_items(self) -> None:
        """At the end: every item seen gets its decision, after the classifications still running for it."""
        self.items.close_all()
        deadline = time.monotonic() + self.settings.trigger.decision_wait_s + 5.0
        while len(self.items) and time.monotonic() < deadline:
            self._publish_decided(time.monotonic())
            time.sleep(0.01)
        for item in self.items.decided(all_open=True):  # a classification hung past the deadline: decide now
            self._publish_decision(item)

    def _healthy(self, since_last_frame: float) -> bool:
        """A camera that is reconnecting is alive; one that says 'streaming' but delivers nothing is hung."""
        return since_last_frame < self.settings.watchdog_stall_s or self.camera.state != "streaming"

    def _next_item_id(self) -> str:
        self._opened += 1
        return f"{self.run_id}-{self._opened}"

    def _publish_decision(self, item: Item) -> None:
        ttl = self.settings.mqtt.decision_ttl_s
        body = decide(item.vote, self.classifier.labels, self.thresholds, self.settings.lanes, ttl)
        self._seq += 1
        message = {
            "seq": self._seq,
            "run_id": self.run_id,
            **body,
            "mode": self.settings.trigger.mode,
            "model": self.classifier.bundle.metadata.model_id,
            "device": self.settings.device_id,
        }
        if self.live is not None:
            self.live.decision(message, item.crop)
        if self.opcua is not None:
            self.opcua.decision(message)
        if not self.link.publish_decision(message, ttl_s=ttl, late=as_late(message, self.settings.lanes.reject)):
            log.error("decision queue full (%d): decision %s dropped", self.settings.mqtt.queue_size, self._seq)
        self.stats.decisions[body["label"]] += 1
        if body["reason"] is not None:
            self.stats.reasons[str(body["reason"])] += 1
        if body["latency_ms"] is not None:
            self.stats.latency_ms.add(body["latency_ms"])
            if self.metrics is not None:
                self.metrics.latency_seconds.observe(body["latency_ms"] / 1000)
        if item.crop is not None and body["top_label"] is not None:
            self.crops.offer(item.crop, body["top_label"], body["confidence"], body["item_id"])

    # ---- status, stats, commands -----------------------------------------------------------
    def _publish_status(self) -> None:
        meta = self.classifier.bundle.metadata
        self._camera_in_status = (self.camera.state, self.camera.last_error)
        status = {
            "state": "online",
            "camera": self.camera.state,
            "camera_error": self.camera.last_error,
            "paused": self.paused,
            "model": meta.model_id,
            "model_name": meta.name,
            "model_version": meta.version,
            "labels": list(meta.labels),
            "runtime": self.classifier.runtime,
            "mode": self.settings.trigger.mode,
            "threshold": self.thresholds.default,
            "thresholds": self.thresholds.describe(),
            "version": __version__,
            "rollout": self.rollout.status(),
            "line_figures": line_check.trained_figures(meta),
        }
        self._status = status
        self.link.set_status(status)
        if self.live is not None:
            self.live.status({**status, "device": self.settings.device_id})
        if self.opcua is not None:
            self.opcua.status(status, self.figures)

    def _figures(self) -> dict[str, object]:
        """Every count and state the stats topic and /metrics report, built in this one place."""
        return {
            "frames": self.stats.frames,
            "decisions": dict(self.stats.decisions),
            "rejects": self.stats.decisions.get("reject", 0),
            "reject_reasons": dict(self.stats.reasons),
            "line": self.mode.counts(),
            "camera": self.camera.state,
            "camera_error": self.camera.last_error,
            "camera_reconnects": self.camera.reconnects,
            "dropped_frames": self.camera.dropped_frames,
            "broker_error": self.link.last_error,
            "broker_reconnects": self.link.reconnects,
            "queue_depth": self.link.queue_depth,
            "queue_dropped": self.link.dropped,
            "sent_late": self.link.late,
            "crops_saved": self.crops.saved,
            "crops_failed": self.crops.failed,
            "crops_error": self.crops.last_error,
            "paused": self.paused,
            "model": self.classifier.bundle.metadata.model_id,
        }

    def _apply_item_margin(self, classifier: Classifier) -> None:
        """Presence crops get the margin of the config, else the one the bundle's trainer framed items with."""
        if isinstance(self.mode, PresenceMode):
            configured = self.settings.trigger.presence.item_margin
            bundled = classifier.bundle.metadata.input.item_margin
            self.mode.item_margin = configured if configured is not None else bundled or 0.0

    def _ui_server(self) -> tuple[Any, Any]:
        try:
            from edge.ui.review import Review
            from edge.ui.server import UiServer  # starlette and uvicorn: the ui extra
            from edge.ui.state import LiveView
        except ModuleNotFoundError as exc:
            raise missing_extra("ui", exc) from None
        live = LiveView()
        crops = self.settings.crops
        review = None
        if crops.directory is not None and crops.labelled is not None:
            review = Review(self.crops, crops.labelled, lambda: self.classifier.labels, self.settings.device_id)
        return live, UiServer(self.settings.ui, live, review, self.roi, self.belt)

    def _opcua_server(self) -> Any:
        try:
            from edge.opcua import OpcUaServer  # asyncua: the opcua extra
            from edge.opcua_certificate import server_certificate

            certificate = server_certificate(self.settings)
        except ModuleNotFoundError as exc:
            raise missing_extra("opcua", exc) from None
        return OpcUaServer(
            self.settings.opcua, self.settings.device_id, certificate, self._on_command, self._on_trigger
        )

    def _metrics_server(self) -> Any:
        from edge.metrics import MetricsServer  # prometheus-client is only needed when metrics are on

        return MetricsServer(self.settings.metrics, lambda: self.figures)

    def _on_trigger(self, trigger: Trigger) -> None:
        if not isinstance(self.mode, ExternalMode):
            raise CommandError(f"trigger.mode is {self.settings.trigger.mode}: triggers are used in external mode only")
        self.mode.trigger(trigger)

    def _on_command(self, command: Command) -> dict[str, object] | Future[dict[str, object]]:
        """On the MQTT command thread: the frame loop carries the command out; a reload is prepared beside it."""
        if isinstance(command, Reload):
            return self._reload_beside(command)
        try:
            return self.inbox.ask(lambda: self._carry_out(command), timeout=COMMAND_TIMEOUT_S)
        except InboxClosed as exc:
            raise CommandError(f"{command.command} not carried out: {exc}") from None

    def _carry_out(self, command: Command) -> dict[str, object]:
        """On the frame loop: pause, resume, set_threshold."""
        name = command.command
        if name == "pause":
            self.paused = True
        elif name == "resume":
            self.paused = False
        elif name == "set_threshold":
            self.thresholds = self.thresholds.commanded(command.value)
        self._publish_status()
        return {"paused": self.paused, "threshold": self.thresholds.default}

    def _reload_beside(self, command: Reload) -> Future[dict[str, object]]:
        """Download, verify and self-test on a thread of its own, so commands go on meanwhile (a download can
        take minutes); the reply goes out when it is done."""
        reply: Future[dict[str, object]] = Future()

        def prepare() -> None:
            try:
                reply.set_result(
                    self._prepare_reload(command.bundle, command.url, command.sha256, "command", command.force)
                )
            except Exception as exc:
                reply.set_exception(exc)

        threading.Thread(target=prepare, name="reload", daemon=True).start()
        return reply

    def _on_watch(self, bundle: Path) -> bool:
        """model.bundle changed on disk (the watch thread); the live bundle itself is no news. False while
        another rollout is busy: the watch offers the bundle again on its next poll."""
        if bundle == self.rollout.live_directory and self._bundle_id(bundle) == self.rollout.live_model:
            return True
        try:
            self._prepare_reload(bundle, None, None, origin="watch")
        except RolloutBusy:
            return False
        except CommandError as exc:
            log.error("%s", exc)
        return True

    @staticmethod
    def _bundle_id(directory: Any) -> str | None:
        try:
            return load_bundle(directory, verify_hash=False).metadata.model_id
        except BundleError:
            return None

    def _prepare_reload(
        self, bundle: Any, url: str | None, sha256: str | None, origin: str, force: bool = False
    ) -> dict[str, object]:
        """Beside the frame loop: verify, load, self-test and judge on the line's crops next to the live model
        (edge.rollout); the loop swaps the candidate in between items."""
        try:
            candidate = self.rollout.prepare(bundle=bundle, url=url, sha256=sha256, origin=origin, force=force)
        except RolloutError as exc:
            if isinstance(exc, RolloutBusy) and origin == "watch":
                raise  # the watch offers the bundle again at its next poll; a command is told why, below
            self._tell_loop(self._publish_status)  # the status says what became of the rollout
            raise CommandError(f"reload refused, still running {self.rollout.live_model}: {exc}") from exc
        self._tell_loop(lambda: self._take_candidate(candidate))
        return {"model": candidate.model_id, "self_test": candidate.self_test, "line_check": candidate.line_check}

    def _tell_loop(self, action: Any) -> None:
        """Have the loop take the reload's outcome, and wait for it: the status says so before the reply does."""
        try:
            self.inbox.ask(action, timeout=COMMAND_TIMEOUT_S)
        except InboxClosed as exc:
            raise CommandError(f"reload not carried out: {exc}") from None

    def _take_candidate(self, candidate: Candidate) -> None:
        """On the frame loop: the next model, swapped in at the next gap between items."""
        self._next_classifier = candidate
        self._publish_status()

    def _swap_model_between_items(self) -> None:
        """Swap a reloaded model in only between items, so one item is never voted on by two models."""
        if self._next_classifier is None or len(self.items):
            return
        candidate, self._next_classifier = self._next_classifier, None
        self.worker.use(candidate.classifier)
        self._apply_item_margin(candidate.classifier)
        if self.thresholds.source != "command":  # a threshold set over MQTT outlives a model swap
            self.thresholds = Thresholds.resolve(self.settings.model, candidate.classifier.bundle.metadata)
        self.rollout.swapped(candidate)
        log.info("model swapped to %s", candidate.model_id)
        self._publish_status()

    def _use_belt_calibration(self) -> None:
        """The reference line and scale set on the page apply from the next frame."""
        if self.belt.version == self._belt_version:
            return
        self._belt_version = self.belt.version
        if isinstance(self.mode, PresenceMode):
            self.mode.use_belt(self.belt.reference_line, self.belt.mm_per_px)

    def _change_roi_between_items(self) -> None:
        """A ROI drawn on the page applies once nothing is in view, so no item is cut by two ROIs."""
        if not self.roi.changing or len(self.items) or not self.mode.idle():
            return
        changed, roi = self.roi.take_change()
        if changed:
            self.mode.use_roi(roi)
