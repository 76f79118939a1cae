"""Killing a scrape midway (SIGKILL, Ctrl-C) loses nothing, leaves nothing partial, and a rerun finishes it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from scraper.cli import main
from tests.scraper.shop_site import APPAREL, EXPECTED, ShopSite, image_files, outcome, read_rows

REPO = Path(__file__).resolve().parents[2]


def _start_scrape(argv: list[str], log: Path) -> subprocess.Popen:
    """`python -m scraper` in its own process group, so the whole tree (browser too) can be signalled."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "scraper", *argv],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop_group(process: subprocess.Popen, sig: signal.Signals) -> int:
    try:
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


def test_sigkill_midway_then_rerun_finishes_without_refetching(shop: ShopSite, scrape_args, tmp_path):
    out = tmp_path / "out"
    argv = scrape_args(APPAREL, "--per-class", "20")
    shop.hold_path = "/img/j7-near-j5.jpg"  # page 2 of jeans, three images saved by then
    process = _start_scrape(argv, tmp_path / "killed.log")
    try:
        assert shop.held.wait(60), (tmp_path / "killed.log").read_text()
    finally:
        _stop_group(process, signal.SIGKILL)
    shop.release.set()

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


def test_ctrl_c_exits_cleanly_with_the_browser_gone(shop: ShopSite, scrape_args, tmp_path):
    out = tmp_path / "out"
    argv = scrape_args('{"jeans": ["men jeans"]}')
    shop.hold_path = "/img/j5.jpg"
    log = tmp_path / "interrupted.log"
    process = _start_scrape(argv, log)
    try:
        assert shop.held.wait(60), log.read_text()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        shop.release.set()
        assert process.wait(30) == 130
    finally:
        leftovers = _leftover_processes(process.pid, settle_s=10)
        _stop_group(process, signal.SIGKILL)
    assert "interrupted; nothing is half-written" in log.read_text()
    assert leftovers == []
    _assert_complete_jpegs(out)
    assert [row["image_url"].removeprefix(shop.base_url) for row in read_rows(out) if row["status"] == "saved"] == [
        "/img/j1.jpg",
        "/img/j2.jpg",
    ]


def _leftover_processes(group: int, settle_s: float) -> list[str]:
    """Processes still in the scrape's process group (chromedriver, Chromium), given settle_s to exit."""
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(stat.parent.name)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
