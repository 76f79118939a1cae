"""``python -m scraper.reaper PROFILE_DIR``: ends the browser when the scraper that started it dies.

Chromium outlives a SIGKILLed (or OOM-killed) scraper: a dozen processes and a profile folder stay
behind. The scraper starts this small process first, in a session of its own, with a pipe on its
stdin, and writes the browser's process group id to it once chromedriver runs. However the scraper
ends, the pipe closes; the reaper then kills whatever is left of that group and removes the profile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys


def main(argv: list[str]) -> int:
    profile_dir = argv[0]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # Ctrl-C or a stop of the scraper's group must not end the reaper first
    groups = [int(line) for line in sys.stdin if line.strip().isdigit()]  # returns when the scraper is gone
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    shutil.rmtree(profile_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
