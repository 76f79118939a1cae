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
from scraper.engine import scrape
from scraper.errors import ScrapeError

log = logging.getLogger("scraper")


def run(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as error:
        print(f"sortline-scrape: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(settings.log_level)
    # A service manager stops us with SIGTERM: unwind like Ctrl-C so no file is left half-written.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with logging_redirect_tqdm():
            results = scrape(settings)
    except KeyboardInterrupt:
        log.warning("interrupted; nothing is half-written, run the same command again to resume")
        return 130
    except ScrapeError as error:
        log.error("%s", error)
        return 1
    except WebDriverException as error:  # the browser crashed or the Grid dropped the session
        log.error("the browser failed: %s; rerun to resume", error.msg)
        return 1
    for result in results:
        log.info("%-12s %4d / %d  %s", result.label, result.saved, result.target, result.outcome)
    if not settings.dry_run:
        log.info("images and manifest.csv in %s", settings.out)
    return 1 if any(result.stopped for result in results) else 0
