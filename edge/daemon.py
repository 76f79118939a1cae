"""The frame loop: camera -> ROI -> classifier -> one decision per item -> MQTT.

Like the TFLite Raspberry Pi example it is one readable loop (capture, preprocess, invoke, read
scores); around it sit what a production line needs: triggers, voting, a queue that survives the
broker going away, commands, stats and the systemd watchdog.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
import uuid
from typing import Any

import numpy as np

from edge import __version__
from edge.bundle import BundleError, load_bundle
from edge.camera import Camera, Frame, crop_roi
from edge.classifier import Classifier
from edge.commands import Command, CommandError, Trigger
from edge.config import EdgeSettings
from edge.crops import CropStore
from edge.decision import ItemVote, Thresholds, check_lanes, decide
from edge.mqtt import MqttLink
from edge.presence import PresenceDetector, PresenceEvent
from edge.rollout import BundleWatch, Candidate, Rollout, RolloutError
from edge.stats import RunStats
from edge.systemd import notify, watchdog_interval_s

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.classifier = self._load_classifier(settings.model.bundle)
        self.rollout = Rollout(settings, self.classifier)
        self.thresholds = Thresholds.resolve(settings.model, self.classifier.bundle.metadata)
        self.camera = Camera(settings.camera)
        self.link = MqttLink(settings.mqtt, settings.device_id)
        self.crops = CropStore(settings.crops)
        self.stats = RunStats()
        self.run_id = uuid.uuid4().hex[:8]
        self.paused = False
        self._stop = threading.Event()
        self._seq = 0
        self._next_classifier: Candidate | None = None
        self._watch: BundleWatch | None = None
        self.metrics = self._metrics_server() if settings.metrics.enabled else None
        self._swap_lock = threading.Lock()
        self._triggers: queue.Queue[tuple[Trigger, float]] = queue.Queue()
        self._presence = PresenceDetector(settings.trigger.presence)
        self._vote: ItemVote | None = None  # the item being voted on (presence and external modes)
        self._vote_crop: np.ndarray | None = None
        self._vote_decided = False  # presence: decided at max_frames, waiting for the item to leave
        self._vote_deadline = 0.0  # external: give up on frames after this (monotonic)
        self._vote_triggered_at = 0.0  # external: frames captured before the trigger do not count
        self._last_decision = 0.0
        self._camera_in_status: tuple[str, str | None] | None = None  # what the retained status last said

    def _load_classifier(self, bundle_path: Any) -> Classifier:
        bundle = load_bundle(bundle_path)
        check_lanes(bundle.labels, self.settings.lanes)
        classifier = Classifier(bundle, threads=self.settings.model.threads)
        log.info("model %s loaded (%s, labels %s)", bundle.metadata.model_id, classifier.runtime, bundle.labels)
        return classifier

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT or the end of a video file; returns the process exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())
        self._publish_status()  # remembered by the link: its birth message then already names the model
        self.link.start(on_command=self._on_command, on_trigger=self._on_trigger)
        if self.metrics is not None:
            self.metrics.start()
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
        if self._watch is not None:
            self._watch.stop()
        self._finish_item()
        self.camera.stop()
        undelivered = self.link.close(flush_timeout=self.settings.mqtt.flush_timeout_s)
        if self.metrics is not None:
            self.metrics.stop()
        if undelivered:
            log.error("%d decision(s) could not be delivered before shutdown", undelivered)
        log.info("stopped after %d frames, %d decisions", self.stats.frames, sum(self.stats.decisions.values()))
        return undelivered

    # ---- the frame loop --------------------------------------------------------------------
    def _loop(self) -> None:
        mode = self.settings.trigger.mode
        handle = {"continuous": self._continuous, "presence": self._presence_frame, "external": self._external}[mode]
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
                if not self.paused:
                    handle(frame)
            elif self.camera.ended:
                log.info("video source ended")
                break
            if mode == "external":
                self._expire_external(now)
            if watchdog_every and now - last_ping >= watchdog_every and self._healthy(now - last_frame_at):
                notify("WATCHDOG=1")
                last_ping = now
            if (self.camera.state, self.camera.last_error) != self._camera_in_status:
                self._publish_status()  # a camera that fails or comes back is news for the line's monitoring
            if now - last_stats >= self.settings.mqtt.stats_interval_s:
                self.link.publish_stats(self._stats_message())
                last_stats = now

    def _healthy(self, since_last_frame: float) -> bool:
        """A camera that is reconnecting is alive; one that says 'streaming' but delivers nothing is hung."""
        return since_last_frame < self.settings.watchdog_stall_s or self.camera.state != "streaming"

    def _classify(self, frame: Frame, crop: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        if crop is None:
            crop = crop_roi(frame.image, self.settings.camera.roi)
        started = time.perf_counter()
        scores = self.classifier.classify(crop)
        inference_ms = (time.perf_counter() - started) * 1000
        self.stats.classified += 1
        self.stats.inference_ms.add(inference_ms)
        if self.metrics is not None:
            self.metrics.inference_seconds.observe(inference_ms / 1000)
        return crop, scores, inference_ms

    def _continuous(self, frame: Frame) -> None:
        if frame.captured_at - self._last_decision < self.settings.trigger.min_interval_s:
            return
        self._last_decision = frame.captured_at
        vote = ItemVote(item_id=self._next_item_id(), first_seen=frame.wall_time)
        crop, scores, inference_ms = self._classify(frame)
        vote.add(scores, frame.captured_at, inference_ms)
        self._publish_decision(vote, crop)

    def _presence_frame(self, frame: Frame) -> None:
        roi = crop_roi(frame.image, self.settings.camera.roi)
        event = self._presence.update(roi)
        if event is PresenceEvent.ENTERED:
            self._vote = ItemVote(item_id=self._next_item_id(), first_seen=frame.wall_time)
            self._vote_decided = False
        if event in (PresenceEvent.ENTERED, PresenceEvent.PRESENT) and self._vote and not self._vote_decided:
            item = self._item_view(roi)
            if item is None:
                return  # partly outside the ROI: wait for a full view
            self._add_to_vote(frame, item)
            if self._vote.frames >= self.settings.trigger.presence.max_frames:
                self._publish_decision(self._vote, self._vote_crop)
                self._vote_decided = True
        elif event is PresenceEvent.LEFT:
            self._finish_item()

    def _external(self, frame: Frame) -> None:
        if self._vote is None:
            try:
                trigger, triggered_at = self._triggers.get_nowait()
            except queue.Empty:
                return
            self._vote = ItemVote(item_id=trigger.item_id)
            self._vote_deadline = triggered_at + self.settings.trigger.external_timeout_s
            self._vote_triggered_at = triggered_at
        if frame.captured_at < self._vote_triggered_at:
            return  # captured before the photo-eye fired: the item was not in view yet
        self._add_to_vote(frame)
        if self._vote.frames >= self.settings.trigger.external_frames:
            self._finish_item()

    def _expire_external(self, now: float) -> None:
        if self._vote is not None and now > self._vote_deadline:
            log.warning("trigger %s: %d frame(s) before the timeout", self._vote.item_id, self._vote.frames)
            self._finish_item()

    def _item_view(self, roi: np.ndarray) -> np.ndarray | None:
        """The item framed like a product photo, or None while it is partly out of view."""
        settings = self.settings.trigger.presence
        if not settings.crop_to_item:
            return roi
        box = self._presence.item_box
        if box is None or not self._presence.item_in_full_view:
            return None
        x0, y0, x1, y1 = box
        mx, my = round((x1 - x0) * settings.item_margin), round((y1 - y0) * settings.item_margin)
        return roi[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx]

    def _add_to_vote(self, frame: Frame, crop: np.ndarray | None = None) -> None:
        crop, scores, inference_ms = self._classify(frame, crop)
        self._vote.add(scores, frame.captured_at, inference_ms)
        self._vote_crop = crop

    def _finish_item(self) -> None:
        """Decide the item being voted on (if not decided yet) and forget it."""
        if self._vote is not None and not self._vote_decided:
            self._publish_decision(self._vote, self._vote_crop)
        self._vote, self._vote_crop, self._vote_decided = None, None, False

    def _next_item_id(self) -> str:
        return f"{self.run_id}-{self._seq + 1}"

    def _publish_decision(self, vote: ItemVote, crop: np.ndarray | None) -> None:
        ttl = self.settings.mqtt.decision_ttl_s
        body = decide(vote, self.classifier.labels, self.thresholds, self.settings.lanes, ttl)
        self._seq += 1
        message = {
            "seq": self._seq,
            "run_id": self.run_id,
            **body,
            "mode": self.settings.trigger.mode,
            "model": self.classifier.bundle.metadata.model_id,
            "device": self.settings.device_id,
        }
        if not self.link.publish_decision(message, ttl_s=ttl):
            log.error("decision queue full (%d): decision %s dropped", self.settings.mqtt.queue_size, self._seq)
        self.stats.decisions[body["label"]] += 1
        if body["latency_ms"] is not None:
            self.stats.latency_ms.add(body["latency_ms"])
            if self.metrics is not None:
                self.metrics.latency_seconds.observe(body["latency_ms"] / 1000)
        if crop is not None and body["top_label"] is not None:
            self.crops.offer(crop, body["top_label"], body["confidence"], body["item_id"])

    # ---- status, stats, commands -----------------------------------------------------------
    def _publish_status(self) -> None:
        meta = self.classifier.bundle.metadata
        self._camera_in_status = (self.camera.state, self.camera.last_error)
        self.link.set_status(
            {
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
            }
        )

    def _stats_message(self) -> dict[str, object]:
        return {
            **self.stats.snapshot(),
            "camera": self.camera.state,
            "camera_error": self.camera.last_error,
            "broker_error": self.link.last_error,
            "camera_reconnects": self.camera.reconnects,
            "dropped_frames": self.camera.dropped_frames,
            "queue_depth": self.link.queue_depth,
            "queue_dropped": self.link.dropped,
            "broker_reconnects": self.link.reconnects,
            "paused": self.paused,
            "model": self.classifier.bundle.metadata.model_id,
        }

    def _metrics_server(self) -> Any:
        from edge.metrics import MetricsServer  # prometheus-client is only needed when metrics are on

        def read() -> dict[str, object]:
            return {
                "frames": self.stats.frames,
                "decisions": dict(self.stats.decisions),
                "rejects": self.stats.decisions.get("reject", 0),
                "queue_depth": self.link.queue_depth,
                "queue_dropped": self.link.dropped,
                "camera_reconnects": self.camera.reconnects,
                "broker_reconnects": self.link.reconnects,
                "camera_state": self.camera.state,
                "paused": self.paused,
                "model": self.classifier.bundle.metadata.model_id,
            }

        return MetricsServer(self.settings.metrics, read)

    def _on_trigger(self, trigger: Trigger) -> None:
        if self.settings.trigger.mode != "external":
            raise CommandError(f"trigger.mode is {self.settings.trigger.mode}: triggers are used in external mode only")
        self._triggers.put((trigger, time.monotonic()))

    def _on_command(self, command: Command) -> dict[str, object]:
        """Runs on the MQTT thread; the frame loop picks up the change on its next frame."""
        name = command.command
        if name == "pause":
            self.paused = True
        elif name == "resume":
            self.paused = False
        elif name == "set_threshold":
            self.thresholds = dataclasses.replace(self.thresholds, default=command.value, source="command")
        elif name == "reload":
            return self._prepare_reload(command.bundle, command.url, command.sha256, origin="command")
        self._publish_status()
        return {"paused": self.paused, "threshold": self.thresholds.default}

    def _on_watch(self, bundle: Any) -> None:
        """model.bundle changed on disk (the watch thread); the live bundle itself is no news."""
        if bundle == self.rollout.live_directory and self._bundle_id(bundle) == self.rollout.live_model:
            return
        try:
            self._prepare_reload(bundle, None, None, origin="watch")
        except CommandError as exc:
            log.error("%s", exc)

    @staticmethod
    def _bundle_id(directory: Any) -> str | None:
        try:
            return load_bundle(directory, verify_hash=False).metadata.model_id
        except BundleError:
            return None

    def _prepare_reload(self, bundle: Any, url: str | None, sha256: str | None, origin: str) -> dict[str, object]:
        """Verify, load and self-test beside the live model; the frame loop swaps it in (edge.rollout)."""
        try:
            candidate = self.rollout.prepare(bundle=bundle, url=url, sha256=sha256, origin=origin)
        except RolloutError as exc:
            self._publish_status()
            live = self.classifier.bundle.metadata.model_id
            raise CommandError(f"reload refused, still running {live}: {exc}") from exc
        with self._swap_lock:
            self._next_classifier = candidate
        self._publish_status()
        return {"model": candidate.model_id, "self_test": candidate.self_test}

    def _swap_model_between_items(self) -> None:
        """Swap a reloaded model in only between items, so one item is never voted on by two models."""
        if self._next_classifier is None or self._vote is not None:
            return
        with self._swap_lock:
            candidate, self._next_classifier = self._next_classifier, None
        self.classifier = candidate.classifier
        if self.thresholds.source != "command":  # a threshold set over MQTT outlives a model swap
            self.thresholds = Thresholds.resolve(self.settings.model, candidate.classifier.bundle.metadata)
        self.rollout.swapped(candidate)
        log.info("model swapped to %s", candidate.model_id)
        self._publish_status()
