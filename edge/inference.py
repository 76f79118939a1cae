"""The classifier on a thread of its own, so the frame loop never waits for it.

Detection runs on every frame; a classification can take 5 ms or 3 s depending on the board and the
model. The worker holds at most one waiting crop per item, the best one offered since it last took one
(most centred), and picks the next job from the item with the fewest classified crops, the oldest first:
with a fast model every item gets many frames, with a slow one each item still gets its best frame
before any item gets a second.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from edge.classifier import Classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    item_id: str
    crop: np.ndarray  # BGR, as cut from the frame
    captured_at: float  # monotonic time of the frame
    quality: float  # higher is better (e.g. how centred the item is)


@dataclass(frozen=True)
class Result:
    item_id: str
    scores: np.ndarray
    novelty: float | None  # see `edge.classifier.Assessment`
    inference_ms: float
    captured_at: float
    crop: np.ndarray


class InferenceWorker:
    """Owns the live Classifier; every other thread only offers crops and collects results."""

    def __init__(self, classifier: Classifier) -> None:
        self._classifier = classifier
        self._next_classifier: Classifier | None = None
        self._cond = threading.Condition()
        self._waiting: dict[str, Job] = {}  # item -> its best crop not yet classified; insertion order = age
        self._done: dict[str, int] = {}  # item -> crops classified so far
        self._running: str | None = None  # the item whose crop is being classified now
        self._results: list[Result] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)

    @property
    def classifier(self) -> Classifier:
        """The live classifier: the one the next job will use."""
        with self._cond:
            return self._next_classifier or self._classifier

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the running classification; a hung one is left behind (the thread is a daemon), so that
        shutdown stays inside systemd's stop timeout."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    def offer(self, job: Job) -> None:
        """Queue ``job``'s crop unless a better one of the same item is already waiting."""
        with self._cond:
            waiting = self._waiting.get(job.item_id)
            if waiting is None:
                self._done.setdefault(job.item_id, 0)
                self._waiting[job.item_id] = job
            elif job.quality >= waiting.quality:
                self._waiting[job.item_id] = job  # keeps the item's place in line
            self._cond.notify_all()

    def pending(self, item_id: str) -> str | None:
        """ "running" while a crop of the item is being classified or its result is not collected yet,
        "waiting" while one waits its turn, else None."""
        with self._cond:
            if self._running == item_id or any(result.item_id == item_id for result in self._results):
                return "running"
            return "waiting" if item_id in self._waiting else None

    def drop_waiting(self, item_id: str) -> None:
        """The item waited too long: drop its waiting crop (what it has classified stays counted)."""
        with self._cond:
            self._waiting.pop(item_id, None)

    def forget(self, item_id: str) -> None:
        """The item is decided: drop its waiting crop; a result still running for it is discarded."""
        with self._cond:
            self._waiting.pop(item_id, None)
            self._done.pop(item_id, None)

    def results(self) -> list[Result]:
        """Results finished since the last call, in the order they finished."""
        with self._cond:
            results, self._results = self._results, []
        return results

    def use(self, classifier: Classifier) -> None:
        """Classify with ``classifier`` from the next job on (call between items)."""
        with self._cond:
            if self._running is None:
                self._classifier = classifier
            else:  # a crop of an item already decided is still running on the old one
                self._next_classifier = classifier

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or self._waiting)
                if self._stopped:
                    return
                if self._next_classifier is not None:
                    self._classifier, self._next_classifier = self._next_classifier, None
                job = self._waiting.pop(min(self._waiting, key=self._done.__getitem__))  # fewest done, oldest
                self._running = job.item_id
                classifier = self._classifier
            started = time.perf_counter()
            try:
                assessment = classifier.assess(job.crop)
            except Exception:  # one bad crop must not stop the worker
                log.exception("classifying a crop of item %s failed", job.item_id)
                assessment = None
            inference_ms = (time.perf_counter() - started) * 1000
            with self._cond:
                self._running = None
                if assessment is not None and job.item_id in self._done:  # not forgotten meanwhile
                    self._done[job.item_id] += 1
                    self._results.append(
                        Result(
                            job.item_id, assessment.scores, assessment.novelty, inference_ms, job.captured_at, job.crop
                        )
                    )
                self._cond.notify_all()
