"""Being a good guest: a per-host rate limit and robots.txt (RFC 9309, via Protego)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from protego import Protego

log = logging.getLogger(__name__)


class Throttle:
    """Spaces calls per key (a host, or "page loads") by at least a given interval."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock, self._sleep = clock, sleep
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str, interval_s: float) -> None:
        with self._lock:
            now = self._clock()
            ready_at = self._last.get(key, float("-inf")) + interval_s
            if ready_at > now:
                self._sleep(ready_at - now)
                now = ready_at
            self._last[key] = now


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RobotsRules:
    """robots.txt per host, fetched once with the scraper's own session and User-Agent.

    As RFC 9309 says: a missing robots.txt (4xx) allows everything; one that cannot be fetched
    (5xx, network error) disallows everything until it can be read.
    """

    def __init__(
        self, session: requests.Session, agent: str, throttle: Throttle, host_interval_s: float, timeout_s: float
    ) -> None:
        self._session, self._agent = session, agent
        self._throttle, self._interval, self._timeout = throttle, host_interval_s, timeout_s
        self._rules: dict[str, Protego | None] = {}
        self._unreadable: dict[str, str] = {}  # host -> why its robots.txt could not be read

    def allowed(self, url: str) -> bool:
        host = host_of(url)
        if host not in self._rules and host not in self._unreadable:
            self._fetch(host)
        if host in self._unreadable:
            return False
        rules = self._rules[host]
        return rules is None or rules.can_fetch(url, self._agent)

    def unreadable(self, url: str) -> bool:
        """True when a "no" came from a robots.txt that could not be read: worth trying again later."""
        return host_of(url) in self._unreadable

    def why_not(self, url: str) -> str:
        """Why ``allowed(url)`` said no, for the error message."""
        host = host_of(url)
        if host in self._unreadable:
            return f"{host}/robots.txt could not be read ({self._unreadable[host]}), which counts as disallow-all"
        return f"{host}/robots.txt disallows it for {self._agent}"

    def _fetch(self, host: str) -> None:
        self._throttle.wait(host, self._interval)
        try:
            response = self._session.get(f"{host}/robots.txt", timeout=self._timeout)
        except requests.RequestException as error:
            self._unreadable[host] = type(error).__name__
            log.debug("cannot read %s/robots.txt: %s", host, error)
            return
        if response.status_code >= 500:
            self._unreadable[host] = f"HTTP {response.status_code}"
        elif response.status_code >= 400:
            self._rules[host] = None
        else:
            self._rules[host] = Protego.parse(response.text)
