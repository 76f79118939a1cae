"""What every request to the page passes before a route sees it, as one ASGI middleware.

- **Host**: only an IP address, ``localhost``, this machine's own names or ``ui.allowed_hosts`` (a page
  reached under any other name is a DNS-rebinding attack: a hostile site pointing its name at the device).
- **Password** (HTTP Basic, any user name) when ``ui.password`` is set; after ``MAX_FAILURES`` wrong
  passwords from one address within ``FAILURE_WINDOW_S`` that address is refused, right password or not,
  until the oldest failure is that old.
- **Same origin** for anything but GET/HEAD (cross-site requests).
- **Body size**: at most ``MAX_BODY_BYTES``, refused before it is read.
- **Headers** on every response: Content-Security-Policy (scripts only from the page's own files), no framing,
  no MIME sniffing, no referrer to other sites.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
import socket
import time
from collections import deque

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FAILURES = 10
FAILURE_WINDOW_S = 300.0
MAX_BODY_BYTES = 256 * 1024  # the largest request the page makes is a list of crop ids to label
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Guard:
    def __init__(self, app: ASGIApp, password: str | None, allowed_hosts: list[str]) -> None:
        self._app, self._password = app, password
        own = {socket.gethostname(), socket.getfqdn()}
        self._hosts = {"localhost", *own, *(f"{name}.local" for name in own), *allowed_hosts}
        self._hosts = {name.lower() for name in self._hosts}
        self._failures: dict[str, deque[float]] = {}  # client address -> times of its recent wrong passwords

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["method"] not in ("GET", "HEAD"):
            body, refusal = await _read_body(headers, receive)
            receive = _replay(body, receive)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        host = _host_name(headers.get("host", ""))
        if not self._known(host):
            return PlainTextResponse(
                f"unknown host name {host[:80]!r}: open the page by the device's address or a name in ui.allowed_hosts",
                status_code=421,
            )
        if self._password is not None:
            client = (scope.get("client") or ("?", 0))[0]
            failures = self._recent_failures(client)
            if len(failures) >= MAX_FAILURES:
                wait = max(1, round(failures[0] + FAILURE_WINDOW_S - time.monotonic()))
                return PlainTextResponse(
                    f"too many wrong passwords from {client}: try again in {wait} s",
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
            given = headers.get("authorization")
            if not self._authorised(given or ""):
                if given is not None:  # a browser's first request carries none: not a wrong password
                    failures.append(time.monotonic())
                return PlainTextResponse(
                    "password required", status_code=401, headers={"WWW-Authenticate": 'Basic realm="sortline"'}
                )
            failures.clear()
        if scope["method"] not in ("GET", "HEAD") and not _same_origin(headers):
            return PlainTextResponse("cross-site request refused", status_code=403)
        return None

    def _known(self, host: str) -> bool:
        try:
            ipaddress.ip_address(host)
            return True  # an address cannot be rebound: only names can
        except ValueError:
            return host in self._hosts

    def _recent_failures(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque(maxlen=MAX_FAILURES))
        while failures and failures[0] < time.monotonic() - FAILURE_WINDOW_S:
            failures.popleft()
        if len(self._failures) > 10_000:  # many addresses (a scan): forget those with no recent failure
            self._failures = {address: times for address, times in self._failures.items() if times}
        return failures

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _user, _, given = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        assert self._password is not None
        return secrets.compare_digest(given.encode(), self._password.encode())


def _host_name(host: str) -> str:
    """The Host header without its port: 'name:8080' -> 'name', '[::1]:8080' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _same_origin(headers: Headers) -> bool:
    origin = headers.get("origin") or headers.get("referer")
    if not origin:
        return False
    host = re.sub(r"^[a-z]+://", "", origin).split("/", 1)[0]
    return host == headers.get("host")


async def _read_body(headers: Headers, receive: Receive) -> tuple[bytes, Response | None]:
    """The whole body, or a 413 refusal as soon as it is known to be too large (nothing more is read)."""
    too_large = PlainTextResponse(f"request body over {MAX_BODY_BYTES} bytes refused", status_code=413)
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return b"", too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the app the body already read, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
