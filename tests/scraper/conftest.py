"""Fixtures for the scraper: the fixture shop on 127.0.0.1 and the arguments that point a scrape at it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.scraper.shop_site import LOOPBACK_ONLY, ShopSite, serve


@pytest.fixture(scope="session")
def browser_available() -> None:
    for tool in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(tool).exists():
            pytest.skip(f"{tool} is not installed (apt-get install chromium chromium-driver)")


@pytest.fixture
def shop_server() -> Iterator[ShopSite]:
    """The fixture shop, for tests that talk HTTP to it without a browser."""
    site = ShopSite()
    server = serve(site)
    yield site
    site.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def shop(shop_server: ShopSite, browser_available: None) -> ShopSite:
    return shop_server


@pytest.fixture
def scrape_args(shop: ShopSite, tmp_path: Path):
    """argv for a fast scrape of the fixture shop into tmp_path/out; extra arguments are appended."""

    def build(classes: str, *extra: str, out: Path | None = None) -> list[str]:
        return [
            "--classes",
            classes,
            "--out",
            str(out or tmp_path / "out"),
            "--base-url",
            shop.base_url,
            "--browser.extra-args",
            json.dumps(LOOPBACK_ONLY),
            "--browser.render-timeout-s",
            "3",
            "--politeness.page-delay-s",
            "0",
            "--politeness.host-interval-s",
            "0",
            "--download.retries",
            "1",
            "--download.backoff-s",
            "0",
            "--download.max-bytes",
            "300000",
            "--download.max-pixels",
            "4000000",
            *extra,
        ]

    return build


@pytest.fixture
def chromedriver_server(browser_available: None) -> Iterator[str]:
    """chromedriver as a standalone W3C WebDriver server: what a Selenium Grid node speaks. Its browser's temp
    files (org.chromium.Chromium.* folders, left behind by each session) go to a TMPDIR of the node's own, short
    enough for Chromium's sockets, removed with it: as on a Grid, they are the node's, not the scraper's."""
    port = free_port()
    node_tmp = tempfile.mkdtemp(prefix="sl-node-")
    process = subprocess.Popen(
        [shutil.which("chromedriver") or "/usr/bin/chromedriver", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": node_tmp},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_port(port)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(node_tmp, ignore_errors=True)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"chromedriver did not listen on port {port}")
