"""The classifier on a thread of its own, so the frame loop never waits for it.

Detection runs on every frame; a classification can take 5 ms or 3 s depending on the board and the
model. The worker holds at most one waiting crop per item, the best one offered since it last took one
(most centred), and picks the next job from the item with the fewest classified crops, the oldest first:
with a fast model every item gets many frames, with a slow one each item still gets its best frame
before any item gets a second. An item's first crop is classified both ways up and the more familiar way kept
for the item (`assess_item_crop`): a garment on a belt lies waist first or waist last.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from edge.classifier import Assessment, Classifier

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
        self._turned: dict[str, bool] = {}  # item -> its crops are classified upside down (see `assess_item_crop`)
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
            self._turned.pop(item_id, None)

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
                classifier, turned = self._classifier, self._turned.get(job.item_id)
            started = time.perf_counter()
            try:
                assessment, turned = assess_item_crop(classifier, job.crop, turned)
            except Exception:  # one bad crop must not stop the worker
                log.exception("classifying a crop of item %s failed", job.item_id)
                assessment = None
            inference_ms = (time.perf_counter() - started) * 1000
            with self._cond:
                self._running = None
                if assessment is not None and job.item_id in self._done:  # not forgotten meanwhile
                    self._done[job.item_id] += 1
                    self._turned[job.item_id] = bool(turned)
                    crop = job.crop[::-1, ::-1] if turned else job.crop  # as the model saw it, for review
                    self._results.append(
                        Result(job.item_id, assessment.scores, assessment.novelty, inference_ms, job.captured_at, crop)
                    )
                self._cond.notify_all()


def assess_item_crop(classifier: Classifier, crop: np.ndarray, turned: bool | None) -> tuple[Assessment, bool]:
    """An item's first crop both ways up, keeping the more familiar way for the rest of the item (`turned`: the
    way chosen, None for its first crop). On a belt a garment lies waist first or waist last, and a crop turned
    upright by its long axis cannot tell which: on the simulator's top-to-bottom line half the crops came out
    upside down and 44 % unfamiliar, 14 % taking the nearer way. Without a familiarity check there is nothing to
    choose by: crops are classified as cut."""
    if turned is not None:
        return classifier.assess(crop[::-1, ::-1] if turned else crop), turned
    as_cut = classifier.assess(crop)
    if as_cut.novelty is None:
        return as_cut, False
    upside_down = classifier.assess(crop[::-1, ::-1])
    assert upside_down.novelty is not None
    return (upside_down, True) if upside_down.novelty < as_cut.novelty else (as_cut, False)
