"""Frame sources: a grabber thread that always holds the newest frame, and reconnects on its own.

The consumer (classification) is slower than the camera, so frames it cannot take are overwritten
rather than queued: latency stays one frame however slow inference gets. A source that fails, ends
or stalls is reopened with exponential backoff; nothing here raises into the daemon, the state and
``last_error`` say what is wrong.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.config import CameraSettings, Roi

log = logging.getLogger(__name__)

# OpenCV warns "backend is generally available but can't be used to capture by name" on every failed open
# of a camera that is away, i.e. on every retry; the camera logs one line per failure streak instead.
# (FFmpeg's own error line, e.g. "Connection refused", still prints: it is the only place that says why.)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)
_PICAMERA = re.compile(r"^picamera2(?::(\d+))?$")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWx3 BGR uint8
    seq: int  # 1, 2, … per frame read from the source, so gaps show frames the consumer never saw
    captured_at: float  # time.monotonic() when read (when due, for a file played at its own rate)
    wall_time: float  # time.time() when read


class SourceError(Exception):
    """A source cannot be opened or read; the message names the source and the reason."""


class _Reader(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def source_kind(source: str) -> str:
    """'picamera2', 'gstreamer', 'v4l2', 'url' or 'file', from the shape of the source string."""
    if _PICAMERA.match(source):
        return "picamera2"
    if "!" in source:
        return "gstreamer"
    if source.isdigit() or source.startswith("/dev/"):
        return "v4l2"
    if _URL.match(source):
        return "url"
    return "file"


def crop_roi(image: np.ndarray, roi: Roi | None) -> np.ndarray:
    """The ROI of a frame as a view (no copy); the whole frame when no ROI is set."""
    if roi is None:
        return image
    height, width = image.shape[:2]
    x0, y0, x1, y1 = roi.to_pixels(width, height)
    return image[y0:y1, x0:x1]


class Camera:
    """One frame source read by a background thread; ``next_frame`` hands out the newest frame.

    With ``realtime=False`` a video file is read only as fast as frames are taken and none is dropped,
    so tests and benchmarks see every frame in order.
    """

    def __init__(self, settings: CameraSettings) -> None:
        self.settings = settings
        self.kind = source_kind(settings.source)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped when a stalled grabber is abandoned; its late results are ignored
        self._latest: Frame | None = None
        self._taken_seq = 0  # seq of the last frame next_frame returned
        self._seq = 0
        self._reading_since: float | None = None  # monotonic time a blocking read started, None when idle
        self._logged_error: str | None = None
        self._state = "connecting"
        self._reconnects = 0
        self._dropped = 0
        self._last_error: str | None = None
        self._frame_size: tuple[int, int] | None = None

    # -- public state ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """'connecting', 'streaming', 'reconnecting' or 'ended'."""
        return self._state

    @property
    def reconnects(self) -> int:
        """Times the source was reopened after a failure or stall."""
        return self._reconnects

    @property
    def dropped_frames(self) -> int:
        """Frames read but overwritten by a newer one before the consumer took them."""
        return self._dropped

    @property
    def ended(self) -> bool:
        return self._state == "ended"

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the last frame read."""
        return self._frame_size

    # -- consumer side -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("camera already started")
        self._spawn_grabber()

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not returned before; None on timeout or when the source has ended.

        Also notices a grabber stuck inside a blocking read for longer than ``read_timeout_s``
        (a camera that hangs rather than fails) and replaces it.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                frame = self._latest
                if frame is not None and frame.seq > self._taken_seq:
                    self._taken_seq = frame.seq
                    self._cond.notify_all()  # a non-realtime grabber waits for this
                    return frame
                if self._state == "ended":
                    return None
                self._replace_stalled_grabber()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.25))

    def stop(self) -> None:
        """Stop the grabber and release the device (waits at most a read timeout for a blocked read)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self.settings.read_timeout_s + 1.0)
            if thread.is_alive():
                log.warning("camera %s: grabber still blocked in a read; leaving it behind", self._name())

    # -- grabber side ------------------------------------------------------------------------

    def _spawn_grabber(self) -> None:
        self._thread = threading.Thread(
            target=self._grab_loop, args=(self._generation,), name="camera-grabber", daemon=True
        )
        self._thread.start()

    def _replace_stalled_grabber(self) -> None:
        """Called with the lock held."""
        since = self._reading_since
        if since is None or self._stop.is_set() or time.monotonic() - since < self.settings.read_timeout_s:
            return
        self._generation += 1
        self._reading_since = None
        self._reconnects += 1
        self._set_failure(
            f"camera source {self.settings.source!r}: no frame for {self.settings.read_timeout_s:g} s (the read hangs)"
        )
        self._spawn_grabber()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _grab_loop(self, generation: int) -> None:
        delay = self.settings.reconnect_initial_s
        failed = False
        while self._current(generation):
            if failed:
                with self._cond:
                    if not self._current(generation):
                        return
                    self._reconnects += 1
            try:
                outcome = self._stream_once(generation)
            except Exception as exc:  # SourceError, or a backend bug: neither may kill the grabber
                if not isinstance(exc, SourceError):
                    log.exception("camera %s: unexpected error in the grabber", self._name())
                    exc = SourceError(f"camera source {self.settings.source!r}: {type(exc).__name__}: {exc}")
                self._set_failure(str(exc), generation)
                failed = True
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.settings.reconnect_max_s)
                continue
            failed = False
            if outcome == "ended":
                with self._cond:
                    if self._current(generation):
                        self._state = "ended"
                        self._cond.notify_all()
                log.info("camera %s: end of stream after frame %d", self._name(), self._seq)
                return
            delay = self.settings.reconnect_initial_s  # "restart" (loop) or stopped

    def _stream_once(self, generation: int) -> str:
        """Open the source and publish frames until it ends; 'restart', 'ended' or 'stopped'.

        Raises SourceError when it cannot be opened or fails before delivering a frame.
        """
        reader, fps = _open(self.settings, self.kind)
        is_file = self.kind == "file"
        pace = 1.0 / fps if (is_file and self.settings.realtime) else 0.0
        frames_this_open = 0
        started = time.monotonic()
        try:
            while self._current(generation):
                self._reading_since = time.monotonic()
                ok, image = reader.read()
                if not self._current(generation):
                    return "stopped"  # abandoned while blocked: _reading_since belongs to the new grabber
                self._reading_since = None
                if not ok or image is None:
                    if frames_this_open == 0:
                        raise SourceError(f"camera source {self.settings.source!r}: opened but delivered no frame")
                    if is_file:
                        return "restart" if self.settings.loop else "ended"
                    raise SourceError(f"camera source {self.settings.source!r}: read failed (stream interrupted)")
                frames_this_open += 1
                # a paced file is stamped when its frame is due, as a camera stamps a frame at its exposure:
                # decoding late on a busy CPU must not move the time an item crossed the reference line
                exposed = started + (frames_this_open - 1) * pace if pace else None
                if isinstance(reader, cv2.VideoCapture) and self.kind == "v4l2":
                    exposed = driver_stamp(reader, time.monotonic())
                if not self._publish(_as_bgr(image), generation, exposed):
                    return "stopped"
                if pace:
                    due = started + frames_this_open * pace
                    wait = due - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return "stopped"
                    if wait < -pace:  # fell behind (slow disk or CPU): don't burst to catch up
                        started = time.monotonic() - frames_this_open * pace
        finally:
            if generation == self._generation:
                self._reading_since = None
            reader.release()
        return "stopped"

    def _publish(self, image: np.ndarray, generation: int, exposed: float | None = None) -> bool:
        now, wall = time.monotonic(), time.time()
        if exposed is not None and exposed <= now:
            now, wall = exposed, wall - (now - exposed)
        with self._cond:
            if self.kind == "file" and not self.settings.realtime:
                # deterministic playback: wait until the consumer took the previous frame
                while self._current(generation) and self._latest is not None and self._latest.seq > self._taken_seq:
                    self._cond.wait(0.25)
            if not self._current(generation):
                return False
            if self._latest is not None and self._latest.seq > self._taken_seq:
                self._dropped += 1
            self._seq += 1
            self._latest = Frame(image=image, seq=self._seq, captured_at=now, wall_time=wall)
            self._frame_size = (image.shape[1], image.shape[0])
            if self._state != "streaming":
                if self._logged_error is not None:
                    log.info(
                        "camera %s: streaming again (%dx%d) after %d reconnects",
                        self._name(),
                        *self._frame_size,
                        self._reconnects,
                    )
                else:
                    log.info("camera %s: streaming %dx%d", self._name(), *self._frame_size)
                self._logged_error = self._last_error = None  # what was wrong is over
                self._state = "streaming"
            self._cond.notify_all()
        return True

    def _set_failure(self, reason: str, generation: int | None = None) -> None:
        """Record a failure; logs only when the reason changes, so a dead camera does not flood the log."""
        with self._cond:
            if generation is not None and not self._current(generation):
                return
            self._state = "reconnecting"
            self._last_error = reason
            if reason != self._logged_error:
                log.warning("%s; reconnecting with backoff up to %g s", reason, self.settings.reconnect_max_s)
                self._logged_error = reason
            self._cond.notify_all()

    def _name(self) -> str:
        return repr(self.settings.source)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class _Properties(Protocol):
    def get(self, prop: int) -> float: ...


def driver_stamp(reader: _Properties, now: float) -> float | None:
    """When the V4L2 driver filled the frame's buffer, on time.monotonic()'s clock (OpenCV's V4L2 backend reports
    the buffer timestamp, CLOCK_MONOTONIC, as CAP_PROP_POS_MSEC): read jitter then stays out of `crossed_at`.
    None when the backend says something else (0 before the first frame, a position, another clock): anything
    not within the last second is not a stamp of this frame, and the frame is stamped when read."""
    try:
        stamp = float(reader.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
    except (cv2.error, TypeError, ValueError):
        return None
    return stamp if now - 1.0 < stamp <= now else None


def _open(settings: CameraSettings, kind: str) -> tuple[_Reader, float]:
    """Open the source; returns the reader and its frame rate (used to pace file playback)."""
    if kind == "picamera2":
        return _Picamera2Reader(settings), settings.fps or 30.0
    source = settings.source
    where = f"camera source {source!r}"
    _explain_unopenable(source, kind, where)
    timeout_ms = int(settings.read_timeout_s * 1000)
    if kind == "v4l2":
        target: int | str = int(source) if source.isdigit() else source
        api = cv2.CAP_V4L2 if cv2.videoio_registry.hasBackend(cv2.CAP_V4L2) else cv2.CAP_ANY
        cap = cv2.VideoCapture(target, api)
    elif kind == "gstreamer":
        cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    elif kind == "url":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(timeout_ms, 5000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    else:
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        why = "OpenCV cannot decode it (not a video, or an unsupported codec)" if kind == "file" else "cannot open it"
        raise SourceError(f"{where}: {why}")
    if kind in ("v4l2", "url", "gstreamer"):
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the grabber drains the source itself; driver queues only add latency
    if kind == "v4l2":
        if settings.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        if settings.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        if settings.fps:
            cap.set(cv2.CAP_PROP_FPS, settings.fps)
    native_fps = cap.get(cv2.CAP_PROP_FPS)
    fps = settings.fps or (native_fps if 0 < native_fps <= 1000 else 30.0)
    return cap, fps


def _explain_unopenable(source: str, kind: str, where: str) -> None:
    """Raise a specific SourceError for the common reasons OpenCV would only report as 'not opened'."""
    if kind == "gstreamer" and not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError(
            f"{where}: this OpenCV build has no GStreamer support "
            "(use the distribution's python3-opencv, or give a device, file or URL)"
        )
    if kind == "gstreamer" and "appsink" not in source:
        raise SourceError(f"{where}: a GStreamer pipeline must end in an appsink for OpenCV to read it")
    if kind == "v4l2" and not source.isdigit():
        if not os.path.exists(source):
            raise SourceError(f"{where}: no such device (is the camera plugged in?)")
        if not os.access(source, os.R_OK | os.W_OK):
            raise SourceError(f"{where}: permission denied (add the service user to the 'video' group)")
    if kind == "file":
        path = Path(source)
        if not path.exists():
            raise SourceError(f"{where}: file not found")
        if path.is_dir():
            raise SourceError(f"{where}: is a directory, not a video file")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{where}: permission denied")


class _Picamera2Reader:
    """Raspberry Pi CSI camera via picamera2 (libcamera), which OpenCV cannot open."""

    def __init__(self, settings: CameraSettings) -> None:
        match = _PICAMERA.match(settings.source)
        index = int(match.group(1) or 0) if match else 0
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                f"camera source {settings.source!r}: the picamera2 package is not importable ({exc}); "
                "on Raspberry Pi OS: apt install python3-picamera2 and create the venv with --system-site-packages"
            ) from None
        try:
            self._camera = Picamera2(camera_num=index)
            size = (settings.width or 1280, settings.height or 720)
            controls = {"FrameRate": settings.fps} if settings.fps else {}
            # picamera2's "RGB888" is laid out B, G, R in memory: OpenCV's BGR.
            config = self._camera.create_video_configuration(
                main={"size": size, "format": "RGB888"}, controls=controls, buffer_count=2
            )
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:
            where = f"camera source {settings.source!r}"
            raise SourceError(f"{where}: picamera2 cannot start camera {index}: {exc}") from None

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, self._camera.capture_array("main")
        except Exception:
            return False, None

    def release(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()
