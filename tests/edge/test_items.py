"""Items, the inference worker and presence mode in-process, with injected classifiers: decisions leave in
belt order, one per item, however slow the classifier is."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from demo.conveyor import write_conveyor_clip
from edge.bundle import load_bundle
from edge.camera import Frame
from edge.classifier import Assessment, Classifier
from edge.config import LaneSettings, PresenceSettings
from edge.decision import Thresholds, decide
from edge.inference import InferenceWorker, Job
from edge.items import ItemBook
from edge.modes.presence import PresenceMode
from tests.edge.daemon_helpers import garments, wait_until

LABELS = ("red", "green", "blue")
LANES = LaneSettings(map={"red": 1, "green": 2, "blue": 3}, reject=0)


class GatedClassifier:
    """Classifies only when the test lets it: `release(n)` lets n classifications finish."""

    def __init__(self) -> None:
        self.seen: list[float] = []  # the quality tag (first pixel) of each crop classified, in order
        self._gate = threading.Semaphore(0)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def assess(self, crop: np.ndarray) -> Assessment:
        assert self._gate.acquire(timeout=10)
        self.seen.append(float(crop[0, 0, 0]))
        return Assessment(np.array([0.9, 0.05, 0.05], np.float32))


def crop(tag: int) -> np.ndarray:
    return np.full((8, 8, 3), tag, np.uint8)


@pytest.fixture
def gated():
    classifier = GatedClassifier()
    worker = InferenceWorker(classifier)  # type: ignore[arg-type]
    worker.start()
    yield classifier, worker
    classifier.release(100)
    worker.stop()


def open_running(book: ItemBook, worker: InferenceWorker, item_id: str):
    """An item whose first crop the (gated) worker is classifying now."""
    item = book.open(item_id)
    book.offer(item, crop(1), 0.0)
    wait_until(lambda: worker.pending(item_id) == "running")
    return item


def drain(book: ItemBook, count: int, timeout: float = 10.0) -> list:
    """Collect results and decided items, as the frame loop does, until `count` items have been decided."""
    decided: list = []
    deadline = time.monotonic() + timeout
    while len(decided) < count:
        assert time.monotonic() < deadline, f"{len(decided)} of {count} items decided"
        book.collect()
        decided += book.decided()
        time.sleep(0.005)
    return decided


def test_decisions_leave_in_belt_order_even_when_a_later_item_is_classified_first(gated):
    classifier, worker = gated
    book = ItemBook(worker, wait_s=60)
    first = open_running(book, worker, "a")  # the worker holds a's crop ...
    second = book.open("b")
    book.offer(second, crop(2), 0.0)
    book.close(second)
    book.close(first)
    assert book.decided() == []  # ... so nothing may leave, not even b, which is behind a
    classifier.release(2)
    decided = drain(book, 2)
    assert [item.item_id for item in decided] == ["a", "b"]
    assert [item.vote.frames for item in decided] == [1, 1]


def test_an_item_whose_crop_waits_too_long_is_decided_without_it(gated):
    classifier, worker = gated
    book = ItemBook(worker, wait_s=0.05)
    busy = open_running(book, worker, "busy")
    starved = book.open("starved")
    book.offer(starved, crop(2), 0.0)
    book.close(busy)
    book.close(starved, now=time.monotonic() - 1)  # left the view a second ago
    assert book.decided() == []  # busy is still being classified; starved's crop is dropped meanwhile
    classifier.release(1)
    decided = drain(book, 2)
    assert [(item.item_id, item.vote.frames) for item in decided] == [("busy", 1), ("starved", 0)]
    assert classifier.seen == [1]  # the worker never spent time on the overdue crop
    body = decide(decided[1].vote, LABELS, Thresholds(0.5), LANES, ttl_s=10)
    assert (body["label"], body["lane"], body["reason"]) == ("reject", 0, "no_frames")
    assert worker.pending("starved") is None  # its crop was dropped, the worker moves on


def test_the_worker_keeps_each_items_best_crop_and_serves_the_least_classified_item_first(gated):
    classifier, worker = gated
    worker.offer(Job("a", crop(10), 0.0, quality=0.1))
    wait_until(lambda: worker.pending("a") == "running")  # a's first crop is being classified
    worker.offer(Job("a", crop(11), 0.0, quality=0.2))
    worker.offer(Job("a", crop(12), 0.0, quality=0.9))  # the best view of a
    worker.offer(Job("a", crop(13), 0.0, quality=0.5))
    worker.offer(Job("b", crop(20), 0.0, quality=0.3))
    classifier.release(3)
    wait_until(lambda: len(classifier.seen) == 3)
    assert classifier.seen == [10, 20, 12]  # b (none classified yet) before a's second; a's best view
    assert len(worker.results()) == 3


class SlowClassifier:
    """The real int8 classifier, made as slow as a big model on a small board."""

    def __init__(self, inner: Classifier, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds
        self.labels, self.bundle = inner.labels, inner.bundle

    def assess(self, image: np.ndarray) -> Assessment:
        time.sleep(self.seconds)
        return self.inner.assess(image)


def belt_decisions(tmp_path: Path, bundle: Path, order: list[str], seconds: float, gap_frames: int) -> list[dict]:
    """The decisions presence mode makes, item by item, for a 30 fps belt clip of coloured garments in
    `order`, with the real int8 classifier slowed to `seconds` per classification."""
    images = garments(tmp_path)
    clip, fps = tmp_path / "belt.avi", 30
    write_conveyor_clip(
        clip, [images[label] for label in order], order, fps=fps, size=(320, 240), gap_frames=gap_frames,
        crossing_s=0.8, lead_frames=15,
    )  # fmt: skip
    worker = InferenceWorker(SlowClassifier(Classifier(load_bundle(bundle), threads=1), seconds))  # type: ignore[arg-type]
    worker.start()
    book = ItemBook(worker, wait_s=0.3)
    ids = iter(range(1, 100))
    mode = PresenceMode(PresenceSettings(), None, lambda: f"item-{next(ids)}")
    decided = []
    capture = cv2.VideoCapture(str(clip))
    started = time.monotonic()
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            time.sleep(max(0.0, started + index / fps - time.monotonic()))  # the camera's pace
            now = time.monotonic()
            mode.on_frame(Frame(image, index + 1, now, time.time()), book)
            book.collect()
            decided += book.decided(now)
            index += 1
        book.close_all()
        decided += drain(book, len(book))
    finally:
        capture.release()
        worker.stop()
    assert [item.item_id for item in decided] == [f"item-{n}" for n in range(1, len(decided) + 1)]
    return [decide(item.vote, LABELS, Thresholds(0.5), LANES, 10) for item in decided]


@pytest.mark.parametrize("seconds_per_classification", [0.0, 1.0])
def test_every_item_gets_exactly_one_decision_however_slow_the_classifier(
    tmp_path: Path, color_bundle: Path, seconds_per_classification: float
):
    order = ["red", "green", "blue", "green", "red"]
    bodies = belt_decisions(tmp_path, color_bundle, order, seconds_per_classification, gap_frames=8)
    assert len(bodies) == len(order)
    for body, truth in zip(bodies, order, strict=True):
        assert body["label"] == truth or (body["label"], body["reason"]) == ("reject", "no_frames"), body
    rights = sum(body["label"] == truth for body, truth in zip(bodies, order, strict=True))
    if seconds_per_classification == 0:
        assert rights == len(order) and min(body["frames"] for body in bodies) >= 3
    else:
        assert rights >= 2  # a classification per second, an item every ~0.7 s: some get none, none merge


def test_two_items_in_view_at_once_are_two_items(tmp_path: Path, color_bundle: Path):
    order = ["red", "blue", "green", "red"]
    # each item enters 10 frames before the one ahead of it has left: two in view, apart on the belt
    bodies = belt_decisions(tmp_path, color_bundle, order, 0.0, gap_frames=-10)
    assert [body["label"] for body in bodies] == order


def test_at_shutdown_every_open_item_is_decided_even_with_a_classification_still_running(gated):
    _, worker = gated
    book = ItemBook(worker, wait_s=60)
    open_running(book, worker, "hung")
    never_closed = book.open("never-closed")
    assert book.decided() == []
    assert [item.item_id for item in book.decided(all_open=True)] == ["hung", "never-closed"]
    assert len(book) == 0 and never_closed.vote.frames == 0


class WaistUpClassifier:
    """Familiar with garments whose bright waist band is at the top; counts what it was shown."""

    labels = ("jeans", "saree", "trousers")

    def __init__(self, novelty: bool = True) -> None:
        self.shown: list[str] = []
        self.novelty = novelty

    def assess(self, crop: np.ndarray) -> Assessment:
        waist_up = crop[: len(crop) // 4].mean() > crop[-len(crop) // 4 :].mean()
        self.shown.append("waist up" if waist_up else "waist down")
        novelty = (0.3 if waist_up else 1.8) if self.novelty else None
        return Assessment(np.array([0.9, 0.05, 0.05], np.float32), novelty)


def _next_results(worker: InferenceWorker) -> list:
    """Wait for the worker's next finished classification(s)."""
    results: list = []

    def arrived() -> bool:
        results.extend(worker.results())
        return bool(results)

    wait_until(arrived)
    return results


def _garment(waist_up: bool) -> np.ndarray:
    crop = np.zeros((40, 20, 3), np.uint8)
    crop[:8] = 250  # the waist band
    return crop if waist_up else crop[::-1]


def test_an_item_lying_waist_last_is_classified_the_more_familiar_way_up():
    classifier = WaistUpClassifier()
    worker = InferenceWorker(classifier)  # type: ignore[arg-type]
    worker.start()
    try:
        results = []
        for crop in [_garment(waist_up=False)] * 3:  # every crop of this item lies upside down
            worker.offer(Job("a", crop, 0.0, 1.0))
            results += _next_results(worker)
    finally:
        worker.stop()
    assert [r.novelty for r in results] == [0.3, 0.3, 0.3]  # the turned way is familiar: never "unfamiliar"
    assert classifier.shown == ["waist down", "waist up", "waist up", "waist up"]  # both ways once, then turned
    assert results[0].crop[:8].mean() > 200  # the crop kept for review is the way the model saw it


def test_without_a_familiarity_check_crops_are_classified_as_cut():
    classifier = WaistUpClassifier(novelty=False)
    worker = InferenceWorker(classifier)  # type: ignore[arg-type]
    worker.start()
    try:
        worker.offer(Job("b", _garment(waist_up=False), 0.0, 1.0))
        results = _next_results(worker)
    finally:
        worker.stop()
    assert classifier.shown == ["waist down"] and results[0].novelty is None
