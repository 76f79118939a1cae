"""Headless Chromium through Selenium 4, local or on a Selenium Grid."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from scraper.config import BrowserSettings
from scraper.errors import ScrapeError

# Quiet, reproducible headless Chromium that talks to nothing but the pages it is sent to.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
)


def chromium_options(settings: BrowserSettings, user_agent: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    for flag in (*CHROMIUM_FLAGS, f"--user-agent={user_agent}", *settings.extra_args):
        options.add_argument(flag)
    if settings.block_images:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.images": 2})
    # "eager": return once the DOM is parsed; the tiles are then waited for explicitly.
    options.page_load_strategy = "eager"
    return options


@contextlib.contextmanager
def browser_session(settings: BrowserSettings, user_agent: str) -> Iterator[WebDriver]:
    """A started browser, quit on exit. A local one runs in its own process group, with its profile and its
    temp files in one folder of its own, watched by `scraper.reaper`, so even a SIGKILLed scraper leaves no
    browser and no files behind."""
    if settings.remote_url:
        with _start(settings, chromium_options(settings, user_agent)) as driver:
            yield driver
        return
    for what, path in (("browser.binary", settings.binary), ("browser.driver", settings.driver)):
        if not path.is_file():
            raise ScrapeError(f"{what} {path} does not exist: install chromium and chromium-driver, or set {what}")
    browser_dir = Path(tempfile.mkdtemp(prefix="sortline-chromium-"))
    reaper = subprocess.Popen(
        [sys.executable, "-m", "scraper.reaper", str(browser_dir)], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        options = chromium_options(settings, user_agent)
        options.add_argument(f"--user-data-dir={browser_dir / 'profile'}")
        # Chromium also writes to TMPDIR (org.chromium.Chromium.* folders, shared memory files) and clears it
        # only when it quits normally; inside the browser folder, the reaper removes it after a SIGKILL too.
        (browser_dir / "tmp").mkdir()
        with _start(settings, options, {**os.environ, "TMPDIR": str(browser_dir / "tmp")}) as driver:
            assert reaper.stdin is not None
            reaper.stdin.write(f"{driver.service.process.pid}\n".encode())  # chromedriver leads the group
            reaper.stdin.flush()
            yield driver
    finally:
        reaper.communicate()  # closes the pipe: the reaper clears up and exits
        reaper.wait()


def _start(
    settings: BrowserSettings, options: webdriver.ChromeOptions, environment: dict[str, str] | None = None
) -> WebDriver:
    """``environment``: chromedriver's and so the local browser's; by default the scraper's own."""
    try:
        if settings.remote_url:
            driver = webdriver.Remote(command_executor=settings.remote_url, options=options)
        else:
            # With the driver path given, Selenium Manager is not needed; SE_OFFLINE keeps it off the network anyway.
            os.environ.setdefault("SE_OFFLINE", "true")
            options.binary_location = str(settings.binary)
            service = Service(
                executable_path=str(settings.driver), env=environment, popen_kw={"start_new_session": True}
            )
            driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        where = settings.remote_url or f"{settings.driver} with {settings.binary}"
        raise ScrapeError(f"could not start the browser ({where}): {error.msg}") from None
    driver.set_page_load_timeout(settings.page_load_timeout_s)
    return driver
