"""Camera: real video files written with OpenCV, read through the grabber thread."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera import Camera, crop_roi, driver_stamp, source_kind
from edge.config import CameraSettings, ConfigError, Roi
from tests.edge.daemon_helpers import wait_until
from tests.edge.frames_helpers import frame_index, numbered_clip


def settings(source: str | Path, **overrides) -> CameraSettings:
    fast = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2, "read_timeout_s": 2.0}
    return CameraSettings(source=str(source), **{**fast, **overrides})


@pytest.fixture
def running() -> Iterator[Callable[[CameraSettings], Camera]]:
    """Start cameras and always stop them, so a failing test leaves no grabber thread behind."""
    cameras: list[Camera] = []

    def start(camera_settings: CameraSettings) -> Camera:
        camera = Camera(camera_settings)
        cameras.append(camera)
        camera.start()
        return camera

    yield start
    for camera in cameras:
        camera.stop()


def test_file_source_delivers_every_frame_in_order_then_ends(tmp_path, running):
    clip = numbered_clip(tmp_path / "clip.avi", 40)
    camera = running(settings(clip, realtime=False))

    frames = []
    while (frame := camera.next_frame(timeout=5)) is not None:
        frames.append(frame)

    assert [frame_index(f.image) for f in frames] == list(range(40))
    assert [f.seq for f in frames] == list(range(1, 41))
    assert all(a.captured_at <= b.captured_at for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8
    assert camera.state == "ended" and camera.ended
    assert camera.dropped_frames == 0 and camera.reconnects == 0
    assert camera.frame_size == (96, 64)
    assert camera.next_frame(timeout=0.01) is None


def test_loop_restarts_the_file_at_its_end(tmp_path, running):
    clip = numbered_clip(tmp_path / "clip.avi", 10)
    camera = running(settings(clip, realtime=False, loop=True))

    frames = [camera.next_frame(timeout=5) for _ in range(25)]

    assert [frame_index(f.image) for f in frames] == [*range(10), *range(10), *range(5)]
    assert [f.seq for f in frames] == list(range(1, 26))
    assert camera.state == "streaming" and camera.reconnects == 0


def test_slow_consumer_gets_the_newest_frame_and_latency_does_not_grow(tmp_path, running):
    fps = 50
    clip = numbered_clip(tmp_path / "clip.avi", 50, fps=fps)
    camera = running(settings(clip, realtime=True))

    taken = []
    while (frame := camera.next_frame(timeout=5)) is not None:
        taken.append(frame)
        time.sleep(0.08)  # a slow classifier: four camera frames per inference

    seqs = [f.seq for f in taken]
    assert seqs == sorted(set(seqs))
    assert len(taken) + camera.dropped_frames == 50  # every frame read was either taken or counted as dropped
    assert [frame_index(f.image) for f in taken] == [s - 1 for s in seqs]
    # A queue would hand out every frame, each older than the last; the newest-frame slot skips those that
    # came while the consumer was busy (about three per take here), so latency stays about one frame.
    assert camera.dropped_frames > len(taken), (camera.dropped_frames, seqs)


def test_missing_file_is_retried_until_it_appears(tmp_path, running, caplog):
    caplog.set_level(logging.WARNING, logger="edge.camera")
    late = tmp_path / "late.avi"
    camera = running(settings(late, realtime=False))

    wait_until(lambda: camera.reconnects >= 3)
    assert camera.state == "reconnecting"
    assert str(late) in camera.last_error and "file not found" in camera.last_error
    assert camera.next_frame(timeout=0.05) is None
    # one log line for the failure, not one per attempt
    assert sum("file not found" in r.getMessage() for r in caplog.records) == 1

    numbered_clip(tmp_path / "writing.avi", 5)
    os.replace(tmp_path / "writing.avi", late)
    frames = [camera.next_frame(timeout=5) for _ in range(5)]

    assert [frame_index(f.image) for f in frames] == list(range(5))
    assert camera.state in ("streaming", "ended")
    assert camera.reconnects >= 3
    assert camera.last_error is None  # what was wrong is over: status and stats must not still say it


def test_corrupted_file_reconnects_and_streams_again_once_restored(tmp_path, running):
    clip = numbered_clip(tmp_path / "clip.avi", 10)
    good = clip.read_bytes()
    camera = running(settings(clip, realtime=False, loop=True))
    assert frame_index(camera.next_frame(timeout=5).image) == 0

    clip.write_bytes(b"this is not a video\n" * 50)  # replaced by something undecodable
    deadline = time.monotonic() + 5
    while camera.state != "reconnecting":  # take the frames read before the damage
        assert time.monotonic() < deadline, "the camera did not notice the damaged file"
        camera.next_frame(timeout=0.05)
    while camera.next_frame(timeout=0.05) is not None:  # a last frame may still wait in the slot
        pass
    assert "cannot decode" in camera.last_error and str(clip) in camera.last_error
    # the counter rises when a retry starts, after the backoff: wait for retries rather than read it at once
    wait_until(lambda: camera.reconnects >= 2)
    assert camera.state == "reconnecting" and camera.next_frame(timeout=0.05) is None
    reconnects = camera.reconnects

    clip.write_bytes(good)
    frame = camera.next_frame(timeout=5)
    assert frame is not None and frame_index(frame.image) == 0
    assert camera.state == "streaming"
    assert camera.reconnects > reconnects


def test_hung_source_is_abandoned_and_reopened(tmp_path, running):
    """A source whose read blocks (a camera that hangs, not fails): a named pipe that stops delivering."""
    data = numbered_clip(tmp_path / "clip.avi", 30).read_bytes()
    # written now: OpenCV holds a process-wide lock while an FFmpeg open blocks on the stuck pipe
    fixed = numbered_clip(tmp_path / "fixed.avi", 30)
    pipe = tmp_path / "pipe.avi"
    os.mkfifo(pipe)
    release = threading.Event()

    def feed() -> None:
        with open(pipe, "wb") as stream:
            stream.write(data[: len(data) // 2])
            stream.flush()
            release.wait(10)  # keep the pipe open without writing: the reader blocks

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    camera = running(settings(pipe, realtime=False, read_timeout_s=0.5))
    assert frame_index(camera.next_frame(timeout=5).image) == 0

    deadline = time.monotonic() + 5
    while camera.state != "reconnecting":
        assert time.monotonic() < deadline, "the hung read was not noticed"
        camera.next_frame(timeout=0.1)
    assert "no frame for 0.5 s" in camera.last_error and str(pipe) in camera.last_error
    assert camera.reconnects >= 1  # the new grabber may already hang on the same stuck pipe and count again

    # the camera comes back: a working source appears at the path, the stuck writer goes away
    os.replace(fixed, pipe)
    release.set()
    frame = camera.next_frame(timeout=5)
    while frame is not None and frame_index(frame.image) != 0:  # frames read before the hang was noticed
        frame = camera.next_frame(timeout=5)
    assert frame is not None and camera.state in ("streaming", "ended")
    assert frame_index(camera.next_frame(timeout=5).image) == 1
    assert camera.reconnects >= 1


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("/dev/video99", "no such device"),
        ("videotestsrc ! videoconvert ! appsink", "GStreamer"),
        ("picamera2:1", "picamera2"),
        ("__notes__.txt", "cannot decode"),
    ],
)
def test_unopenable_source_reports_why_without_raising(tmp_path, running, source, reason):
    if source.endswith(".txt"):
        (tmp_path / source).write_text("not a video")
        source = str(tmp_path / source)
    if "!" in source and cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        pytest.skip("this OpenCV has GStreamer: the pipeline would open")
    if source.startswith("picamera2") and importlib.util.find_spec("picamera2"):
        pytest.skip("picamera2 is installed here: the failure would be a different one")
    camera = running(settings(source))

    wait_until(lambda: camera.reconnects >= 1)
    assert camera.state == "reconnecting"
    assert str(source) in camera.last_error and reason in camera.last_error
    assert camera.next_frame(timeout=0.05) is None and not camera.ended
    camera.stop()
    assert camera.state == "reconnecting"  # stop() returned: the grabber was not stuck


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("0", "v4l2"),
        ("/dev/video2", "v4l2"),
        ("clip.mp4", "file"),
        ("rtsp://10.0.0.5/stream1", "url"),
        ("http://cam.local/mjpg", "url"),
        ("v4l2src ! videoconvert ! appsink", "gstreamer"),
        ("picamera2", "picamera2"),
        ("picamera2:1", "picamera2"),
    ],
)
def test_source_kind(source, kind):
    assert source_kind(source) == kind


def test_crop_roi_in_fractions_and_pixels_is_a_view():
    image = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)

    by_fraction = crop_roi(image, Roi(x=0.25, y=0.1, width=0.5, height=0.8))
    assert by_fraction.shape == (80, 100, 3)
    assert np.shares_memory(by_fraction, image)
    assert np.array_equal(by_fraction, image[10:90, 50:150])

    by_pixels = crop_roi(image, Roi(x=20, y=30, width=64, height=40, unit="px"))
    assert np.array_equal(by_pixels, image[30:70, 20:84])

    clipped = crop_roi(image, Roi(x=180, y=0, width=100, height=100, unit="px"))
    assert clipped.shape == (100, 20, 3)

    assert crop_roi(image, None) is image
    with pytest.raises(ConfigError, match="no usable area"):
        crop_roi(image, Roi(x=300, y=0, width=50, height=50, unit="px"))


def test_a_v4l2_frame_is_stamped_by_the_driver_and_anything_else_when_read(tmp_path):
    """OpenCV's V4L2 backend reports the buffer's CLOCK_MONOTONIC timestamp as CAP_PROP_POS_MSEC; a file's
    reader reports its position there, which must never pass for a stamp (no V4L2 device here: a reader whose
    driver filled the buffer 40 ms ago stands in for one)."""
    clip = numbered_clip(tmp_path / "clip.avi", frames=5)
    played = cv2.VideoCapture(str(clip))
    assert played.read()[0] and played.read()[0] and 0 < played.get(cv2.CAP_PROP_POS_MSEC) < 1000  # a position
    assert driver_stamp(played, time.monotonic()) is None
    played.release()

    class DriverFilled:  # not a cv2.VideoCapture subclass: OpenCV's binding crashes collecting one
        def __init__(self, stamp_ms: float) -> None:
            self.stamp_ms = stamp_ms

        def get(self, prop: int) -> float:
            return self.stamp_ms if prop == cv2.CAP_PROP_POS_MSEC else 0.0

    now = time.monotonic()
    assert driver_stamp(DriverFilled((now - 0.040) * 1000), now) == pytest.approx(now - 0.040)
    assert driver_stamp(DriverFilled(0.0), now) is None  # before the first frame
    assert driver_stamp(DriverFilled((now - 5) * 1000), now) is None  # a stale or foreign clock
    assert driver_stamp(DriverFilled((now + 1) * 1000), now) is None  # from the future: not this clock
