"""The scrape run behind ``sortline-scrape``: settings in, images and manifest out, a summary at the end
(exit statuses: see `scraper.cli`)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from selenium.common.exceptions import WebDriverException
from tqdm.contrib.logging import logging_redirect_tqdm

from scraper.config import SettingsError, load_settings
from scraper.engine import ClassResult, scrape
from scraper.errors import ScrapeError
from scraper.profile import load_profile

log = logging.getLogger("scraper")


def run(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
        profile = load_profile(settings.site)
    except SettingsError as error:
        print(f"sortline-scrape: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(settings.log_level)
    # A service manager stops us with SIGTERM: unwind like Ctrl-C so no file is left half-written.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with logging_redirect_tqdm():
            results = scrape(settings, profile)
    except KeyboardInterrupt:
        log.warning("interrupted; nothing is half-written, run the same command again to resume")
        return 130
    except ScrapeError as error:
        log.error("%s", error)
        return 1
    except WebDriverException as error:  # the browser crashed or the Grid dropped the session
        log.error("the browser failed: %s; rerun to resume", error.msg)
        return 1
    _log_summary(results)
    if not settings.dry_run:
        log.info("images and manifest.csv in %s", settings.out)
    return 1 if any(result.stopped for result in results) else 0


def _log_summary(results: list[ClassResult]) -> None:
    """One row per class; failed downloads get a column of their own, as the warnings about them have
    long scrolled away when the run ends."""
    row = "%-12s %11s  %6s  %s"
    log.info(row, "class", "saved", "failed", "outcome")
    for result in results:
        saved = f"{result.saved} / {result.target}"
        log.info(row, result.label, saved, result.failed_downloads, result.outcome)
