"""Headless Chromium through Selenium 4, local or on a Selenium Grid."""

from __future__ import annotations

import os

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


def start_browser(settings: BrowserSettings, user_agent: str) -> WebDriver:
    options = chromium_options(settings, user_agent)
    if not settings.remote_url:
        for what, path in (("browser.binary", settings.binary), ("browser.driver", settings.driver)):
            if not path.is_file():
                raise ScrapeError(f"{what} {path} does not exist: install chromium and chromium-driver, or set {what}")
    try:
        if settings.remote_url:
            driver = webdriver.Remote(command_executor=settings.remote_url, options=options)
        else:
            # With the driver path given, Selenium Manager is not needed; SE_OFFLINE keeps it off the network anyway.
            os.environ.setdefault("SE_OFFLINE", "true")
            options.binary_location = str(settings.binary)
            driver = webdriver.Chrome(service=Service(executable_path=str(settings.driver)), options=options)
    except WebDriverException as error:
        where = settings.remote_url or f"{settings.driver} with {settings.binary}"
        raise ScrapeError(f"could not start the browser ({where}): {error.msg}") from None
    driver.set_page_load_timeout(settings.page_load_timeout_s)
    return driver
