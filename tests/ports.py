"""Free TCP ports on 127.0.0.1 that nothing else will take before the test's server binds them.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range every outgoing
connection's source port comes from: between the probe and the server's own bind, a client elsewhere in the
run (fifty OPC UA clients, a browser, the next test's MQTT link) may take it, and the server dies with
"address already in use". So ports come from below the ephemeral range, each pytest-xdist worker from its own
stripe, never the same one twice in a process.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

_FIRST, _LAST = 20000, 32000  # below Linux's ephemeral range (32768-60999)
_STRIPE = 1000


def _stripe() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    first = _FIRST + (index * _STRIPE) % (_LAST - _FIRST)
    return range(first, first + _STRIPE)


def _candidates() -> itertools.cycle:
    ports = list(_stripe())
    random.Random(os.getpid()).shuffle(ports)
    return itertools.cycle(ports)


_NEXT = _candidates()


def free_port() -> int:
    """A port in this worker's stripe that binds now and was not handed out before in this process."""
    for _ in range(_STRIPE):
        port = next(_NEXT)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_stripe()}")
