"""What the commissioning page shows, kept in-process: the threshold what-if, the snapshot, crops by id, the
plots' history."""

from __future__ import annotations

import cv2
import numpy as np

from edge.stats import RunStats
from edge.ui.state import THUMBNAIL_PX, LiveView


def decision(item_id: str, label: str, scores: dict[str, float]) -> dict:
    return {"item_id": item_id, "label": label, "scores": scores}


def test_the_what_if_decides_the_kept_decisions_again_at_another_threshold() -> None:
    view = LiveView()
    view.decision(decision("a", "jeans", {"jeans": 0.95, "saree": 0.05}), None)
    view.decision(decision("b", "jeans", {"jeans": 0.85, "saree": 0.15}), None)
    view.decision(decision("c", "reject", {"jeans": 0.7, "saree": 0.3}), None)
    view.decision(decision("d", "reject", {"saree": 0.55, "jeans": 0.45}), None)
    view.decision(decision("e", "reject", {}), None)  # no frame classified: nothing to decide again
    stricter = view.what_if(0.9)
    assert stricter["decisions"] == 4
    assert stricter["per_label"] == {
        "jeans": {"unchanged": 2, "to_reject": 1, "from_reject": 0},  # a stays, b would be rejected, c stays
        "saree": {"unchanged": 1, "to_reject": 0, "from_reject": 0},
    }
    looser = view.what_if(0.5)
    assert looser["per_label"]["jeans"] == {"unchanged": 2, "to_reject": 0, "from_reject": 1}  # c gets its lane
    assert looser["per_label"]["saree"] == {"unchanged": 0, "to_reject": 0, "from_reject": 1}
    unfamiliar = decision("f", "reject", {"saree": 0.97, "jeans": 0.03}) | {"reason": "unfamiliar"}
    view.decision(unfamiliar, None)  # unlike anything trained on: no threshold gives it a lane
    assert view.what_if(0.5)["per_label"]["saree"] == {"unchanged": 1, "to_reject": 0, "from_reject": 1}


def test_the_snapshot_draws_the_boxes_and_is_encoded_at_most_five_times_a_second() -> None:
    view = LiveView(min_interval_s=60)
    assert view.snapshot_jpeg() is None  # no frame yet
    frame = np.zeros((120, 160, 3), np.uint8)
    view.frame(frame, (0, 0, 160, 120), [((40, 30, 100, 90), False, "red 0.90 (2)")], "1 item in view")
    first = view.snapshot_jpeg()
    drawn = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    assert drawn[30, 70, 1] > 150 and drawn[60, 70].max() < 40  # the item's box edge is green, inside is not
    assert (drawn[10:27, 44:140, 1] > 150).sum() > 30  # its running vote written above it
    assert view.summary()["belt"] == "1 item in view" and view.summary()["items_in_view"] == 1
    view.frame(np.full((120, 160, 3), 255, np.uint8), (0, 0, 160, 120), [], "empty belt")
    assert view.snapshot_jpeg() is first  # within the interval: the same bytes, not encoded again


def test_only_kept_decisions_crops_are_found() -> None:
    view = LiveView(max_decisions=2)
    for n in range(3):
        view.decision(decision(f"item-{n}", "jeans", {"jeans": 0.9}), np.full((8, 8, 3), n, np.uint8))
    assert view.crop_jpeg("item-0") is None  # dropped: only the last two are kept
    assert view.crop_jpeg("item-2") is not None and view.crop_jpeg("../../etc/passwd") is None
    assert [d["item_id"] for d in view.decisions()] == ["item-2", "item-1"]  # newest first


def test_a_kept_crop_is_a_small_copy_that_does_not_pin_its_frame() -> None:
    view = LiveView()
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 320:] = 255
    crop = frame[0:480, 160:640]  # a view into the frame, as the modes hand crops over
    view.decision(decision("a", "jeans", {"jeans": 0.9}), crop)
    frame[:] = 7  # the frame's memory is used again
    kept = cv2.imdecode(np.frombuffer(view.crop_jpeg("a"), np.uint8), cv2.IMREAD_COLOR)
    assert kept.shape == (THUMBNAIL_PX, THUMBNAIL_PX, 3)  # a 480x480 crop: longest side cut down, aspect kept
    half = THUMBNAIL_PX // 3
    assert kept[:, :half].max() < 40 and kept[:, -half:].min() > 210  # the crop as it was, not the reused frame


def test_the_plots_get_per_interval_percentiles_and_keep_a_bounded_history() -> None:
    stats = RunStats()
    view = LiveView(max_history=3)
    for interval, latencies in enumerate([[100.0] * 50, [2000.0], [], [120.0, 140.0]]):
        for value in latencies:
            stats.latency_ms.add(value)
        stats.decisions["red"] += len(latencies)
        message = {**stats.snapshot(), "decisions": dict(stats.decisions), "camera": "streaming", "camera_error": None,
                   "broker_error": None}  # fmt: skip
        view.stats({**message, "queue_depth": interval})
    points = view.history()
    assert len(points) == 3 and [p["queue_depth"] for p in points] == [1, 2, 3]  # the oldest point is gone
    # the 2 s spike shows in its own interval, not smoothed into the 50 samples before it
    assert [p["latency_ms"]["p50"] for p in points] == [2000.0, None, 130.0]
    assert stats.latency_ms.percentiles()["p50"] == 100.0  # the stats topic's window keeps all samples
    assert points[-1]["decisions"] == {"red": 53}
