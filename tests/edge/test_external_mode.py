"""External mode in-process: a trigger is an item that was there when the trigger came, whatever happens to the
camera or the trigger rate afterwards; a repeated trigger is refused, never a second item."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.camera import Frame
from edge.classifier import Assessment
from edge.commands import CommandError, Trigger
from edge.config import LaneSettings, TriggerSettings
from edge.decision import Thresholds, decide
from edge.inference import InferenceWorker
from edge.items import ItemBook
from edge.modes.external import MAX_WAITING, ExternalMode

LABELS = ("red", "green", "blue")
LANES = LaneSettings(map={"red": 1, "green": 2, "blue": 3}, reject=0)


class RedClassifier:
    def assess(self, crop: np.ndarray) -> Assessment:
        return Assessment(np.array([0.9, 0.05, 0.05], np.float32))


@pytest.fixture
def line():
    worker = InferenceWorker(RedClassifier())  # type: ignore[arg-type]
    worker.start()
    yield (
        ExternalMode(TriggerSettings(mode="external", external_frames=2, external_timeout_s=1.0), None),
        ItemBook(worker, wait_s=5),
    )
    worker.stop()


def frame(seq: int) -> Frame:
    return Frame(np.zeros((24, 32, 3), np.uint8), seq, time.monotonic(), time.time())


def settle(book: ItemBook, ttl_s: float = 10.0) -> list[dict]:
    """Every item decided, once its classifications are in."""
    decided: list[dict] = []
    give_up = time.monotonic() + 10
    while len(book) and time.monotonic() < give_up:
        book.collect()
        decided += [decide(item.vote, LABELS, Thresholds(0.5), LANES, ttl_s) for item in book.decided()]
        time.sleep(0.01)
    return decided


def test_a_repeated_trigger_is_refused_while_its_item_is_undecided_and_taken_once_it_is(line):
    mode, book = line
    mode.trigger(Trigger(item_id="PLC-1"))
    with pytest.raises(CommandError, match=r"PLC-1.*already triggered and not decided yet"):
        mode.trigger(Trigger(item_id="PLC-1"))  # a QoS 1 redelivery, 0.3 s later
    for seq in range(3):
        mode.on_frame(frame(seq), book)
    assert [d["item_id"] for d in settle(book)] == ["PLC-1"]
    mode.on_tick(time.monotonic(), book)
    mode.trigger(Trigger(item_id="PLC-1"))  # decided: a PLC that counts its ids round may use it again


def test_triggers_that_waited_past_the_timeout_for_frames_are_rejects_counted_from_when_they_came(line):
    mode, book = line
    came = time.time()
    for number in range(3):
        mode.trigger(Trigger(item_id=f"PLC-{number}"))
    mode.on_tick(time.monotonic() + 1.5, book)  # the camera is gone: no frame for 1.5 s
    mode.on_frame(frame(1), book)  # it is back; what is in view now is not those items
    decisions = settle(book)
    assert [(d["item_id"], d["label"], d["reason"], d["frames"]) for d in decisions] == [
        (f"PLC-{number}", "reject", "no_frames", 0) for number in range(3)
    ]
    assert all(came - 0.001 <= d["first_seen"] <= came + 0.5 and abs(d["deadline"] - d["first_seen"] - 10) < 0.002
               for d in decisions)  # fmt: skip


def test_more_triggers_than_can_wait_are_refused(line):
    mode, _book = line
    for number in range(MAX_WAITING):
        mode.trigger(Trigger(item_id=f"PLC-{number}"))
    with pytest.raises(CommandError, match=f"{MAX_WAITING} triggers are already waiting for frames"):
        mode.trigger(Trigger(item_id="PLC-one-too-many"))


def test_a_decision_made_after_its_deadline_is_a_late_reject(line):
    mode, book = line
    mode.trigger(Trigger(item_id="PLC-slow"))
    for seq in range(2):
        mode.on_frame(frame(seq), book)
    time.sleep(0.05)
    (decision,) = settle(book, ttl_s=0.01)  # a line that gives the decision 10 ms
    assert (decision["label"], decision["lane"], decision["reason"]) == ("reject", 0, "late")
    assert decision["top_label"] == "red" and decision["deadline"] < decision["decided_at"]
