"""``python -m scraper.reaper BROWSER_DIR``: ends the browser when the scraper that started it dies.

Chromium outlives a SIGKILLed (or OOM-killed) scraper: a dozen processes, a profile folder and its
temp folders stay behind. The scraper starts this small process first, in a session of its own, with
a pipe on its stdin, and writes the browser's process group id to it once chromedriver runs. However
the scraper ends, the pipe closes; the reaper then kills whatever is left of that group and removes
BROWSER_DIR, where the browser keeps its profile and its temp files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    browser_dir = argv[0]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # Ctrl-C or a stop of the scraper's group must not end the reaper first
    groups = [int(line) for line in sys.stdin if line.strip().isdigit()]  # returns when the scraper is gone
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: a browser process still dying could write into the folder
    # while it is being removed, so wait until the group is gone (zombies do not count), then remove.
    deadline = time.monotonic() + 10
    while any(_running_in(group) for group in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(5):
        shutil.rmtree(browser_dir, ignore_errors=True)
        if not os.path.exists(browser_dir):
            break
        time.sleep(0.2)
    return 0


def _running_in(group: int) -> bool:
    """Whether a live (not zombie) process of the process group is left."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
