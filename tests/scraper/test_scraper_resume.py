"""Killing a scrape midway (SIGKILL, Ctrl-C) loses nothing, leaves nothing partial, and a rerun finishes it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from scraper.cli import main
from tests.scraper.shop_site import APPAREL, EXPECTED, ShopSite, image_files, outcome, read_rows

REPO = Path(__file__).resolve().parents[2]
# `python -m scraper` with Ctrl-C's SIGINT raising KeyboardInterrupt, as in a terminal's foreground job. A job
# that a non-interactive shell starts in the background (`make test &`, some CI runners) inherits SIGINT
# ignored, and so would the scraper: Python installs no handler then, and the run would go on to exit 0.
_SCRAPER_AS_IN_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('scraper', run_name='__main__', alter_sys=True)"
)


@pytest.fixture
def scraper_tmp() -> Iterator[Path]:
    """A short TMPDIR of the scraper's own (Chromium's sockets there must fit in 108 bytes), so `_browser_pids`
    finds this run's browser by its profile folder, and `_left_in` sees what this run alone leaves there."""
    path = Path(tempfile.mkdtemp(prefix="sl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start_scrape(argv: list[str], log: Path, tmpdir: Path) -> subprocess.Popen:
    """`python -m scraper` as a terminal starts it: in its own process group, Ctrl-C raising KeyboardInterrupt."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-c", _SCRAPER_AS_IN_A_TERMINAL, *argv],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TMPDIR": str(tmpdir)},
        )


def _browser_pids(profile_root: Path) -> set[int]:
    """Live Chromium processes whose profile lies under profile_root, and chromedriver, their parent."""
    found: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state, parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z" and f"--user-data-dir={profile_root}" in cmdline:
            found.add(int(proc.name))
            with contextlib.suppress(OSError):
                if Path(f"/proc/{parent}/comm").read_text().strip() == "chromedriver":
                    found.add(int(parent))
    return found


def _left_in(folder: Path, settle_s: float) -> list[str]:
    """What is still in folder, dot files too, after up to settle_s (the reaper empties it once all is dead)."""
    deadline = time.monotonic() + settle_s
    while (left := sorted(path.name for path in folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _alive(pids: set[int], settle_s: float) -> set[int]:
    """Those of pids still running (not zombies) after up to settle_s."""
    deadline = time.monotonic() + settle_s
    while True:
        alive = set()
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _stop_group(process: subprocess.Popen, sig: signal.Signals) -> int:
    try:
        with contextlib.suppress(ProcessLookupError):  # the group may have ended already
            os.killpg(process.pid, sig)
        return process.wait(30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group outlived the signal


def _assert_complete_jpegs(out: Path) -> None:
    for path in out.rglob("*"):
        assert not path.name.endswith(".part"), path
        if path.suffix == ".jpg":
            with Image.open(path) as image:
                image.load()


def test_sigkill_midway_then_rerun_finishes_without_refetching(shop: ShopSite, scrape_args, tmp_path, scraper_tmp):
    out = tmp_path / "out"
    argv = scrape_args(APPAREL, "--per-class", "20")
    shop.hold_path = "/img/j7-near-j5.jpg"  # page 2 of jeans, three images saved by then
    process = _start_scrape(argv, tmp_path / "killed.log", scraper_tmp)
    try:
        assert shop.held.wait(60), (tmp_path / "killed.log").read_text()
        browser = _browser_pids(scraper_tmp)
        process.kill()  # the scraper alone, as the OOM killer or `kill -9 PID` does
        process.wait(30)
    finally:
        _stop_group(process, signal.SIGKILL)
    shop.release.set()
    assert len(browser) > 2  # chromedriver and Chromium's processes ran ...
    assert _alive(browser, settle_s=10) == set()  # ... and died with the scraper
    assert _left_in(scraper_tmp, settle_s=10) == []  # no profile, no org.chromium.Chromium.* temp folders

    _assert_complete_jpegs(out)
    first = read_rows(out)
    done_before_the_kill = [
        *("/img/j1.jpg", "/img/j3-broken.jpg", "/img/j4-not-image.jpg", "/img/j2.jpg"),  # page 1
        *("/img/j5.jpg", "/img/j6-same-as-j1.jpg"),  # page 2 up to the held request
    ]
    assert outcome(first, shop.base_url) == {path: EXPECTED[path] for path in done_before_the_kill}
    assert image_files(out) == {row["file"] for row in first if row["status"] == "saved"}

    shop.requests.clear()
    shop.hold_path = None
    assert main(argv) == 1  # the CAPTCHA on saree's page 2, as in an uninterrupted run
    final = read_rows(out)
    assert outcome(final, shop.base_url) == EXPECTED
    assert final[: len(first)] == first  # the manifest was appended to, not rewritten
    recorded_before = {row["image_url"].removeprefix(shop.base_url) for row in first}
    assert not recorded_before & set(shop.paths("/img/"))
    assert image_files(out) == {row["file"] for row in final if row["status"] == "saved"}
    _assert_complete_jpegs(out)


def test_ctrl_c_exits_cleanly_with_the_browser_gone(shop: ShopSite, scrape_args, tmp_path, scraper_tmp):
    out = tmp_path / "out"
    argv = scrape_args('{"jeans": ["men jeans"]}')
    shop.hold_path = "/img/j5.jpg"
    log = tmp_path / "interrupted.log"
    process = _start_scrape(argv, log, scraper_tmp)
    try:
        assert shop.held.wait(60), log.read_text()
        browser = _browser_pids(scraper_tmp)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        shop.release.set()
        assert process.wait(30) == 130
    finally:
        _stop_group(process, signal.SIGKILL)
    assert "interrupted; nothing is half-written" in log.read_text()
    assert browser and _alive(browser, settle_s=10) == set()
    assert _left_in(scraper_tmp, settle_s=10) == []
    _assert_complete_jpegs(out)
    assert [row["image_url"].removeprefix(shop.base_url) for row in read_rows(out) if row["status"] == "saved"] == [
        "/img/j1.jpg",
        "/img/j2.jpg",
    ]
