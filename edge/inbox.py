"""The frame loop's inbox: how other threads change the daemon's state.

The frame loop owns the daemon's state (items, thresholds, pause, the live model, status), as Frigate's
dispatcher owns its cameras': the MQTT command thread, the bundle watch and the reload worker never
write it themselves. They post a function here; the loop runs it between two frames (at least every
0.2 s, frames or not) and the poster gets its result or its exception back. No state needs a lock, and a
change can never land between the loop's check and its write.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")

INBOX_SIZE = 64  # messages waiting for the loop; commands come one at a time, so this is never reached in use


class InboxClosed(Exception):
    """The loop has stopped (or is not answering): the message was not carried out."""


class Inbox:
    def __init__(self, size: int = INBOX_SIZE) -> None:
        self._queue: queue.Queue[tuple[Callable[[], object], Future]] = queue.Queue(maxsize=size)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def post(self, action: Callable[[], T]) -> Future[T]:
        """Have the loop run ``action``; the future holds its result. InboxClosed when the loop has stopped
        or has ``size`` messages waiting (it is stuck; the sender is told rather than queued for ever)."""
        future: Future[T] = Future()
        if self._closed:
            raise InboxClosed("the daemon is stopping")
        try:
            self._queue.put_nowait((action, future))
        except queue.Full:
            raise InboxClosed(
                f"the frame loop has {self._queue.maxsize} messages waiting and is not taking them"
            ) from None
        return future

    def ask(self, action: Callable[[], T], timeout: float) -> T:
        """``post`` and wait for the result; the action's own exception is raised here."""
        future = self.post(action)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()  # not run yet: never run; running: its result goes nowhere
            raise InboxClosed(f"the frame loop did not answer within {timeout:g} s") from None

    def run_pending(self) -> None:
        """On the loop: carry out everything posted so far, in order."""
        while True:
            try:
                action, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(action())
            except Exception as exc:  # the poster decides what the failure means
                future.set_exception(exc)

    def close(self) -> None:
        """The loop is done: refuse new messages and fail those still waiting."""
        self._closed = True
        while True:
            try:
                _action, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(InboxClosed("the daemon is stopping"))
