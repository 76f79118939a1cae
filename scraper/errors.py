"""Why a class stops early. Each message says what happened, where, and what to do about it."""

from __future__ import annotations


class ScrapeError(Exception):
    """A problem the user must act on; the run reports it and exits non-zero."""


class ClassStopped(ScrapeError):
    """This class cannot go on (the site refuses or has changed); other classes still run."""

    summary = "page failed"  # a few words for the end-of-run table


class CaptchaDetected(ClassStopped):
    summary = "CAPTCHA"

    def __init__(self, url: str, profile: str) -> None:
        super().__init__(
            f"the site answered {url} with a CAPTCHA / bot check (profile {profile!r}); stopped without retrying. "
            "Wait before trying again, raise politeness.page_delay_s, or ask the site for access."
        )


class LayoutChanged(ClassStopped):
    summary = "layout changed"

    def __init__(self, url: str, profile: str, what: str, selector: str) -> None:
        super().__init__(
            f"{what} {selector!r} of site profile {profile!r} found nothing on {url}: the page layout has "
            "probably changed; update that selector in the profile."
        )
        self.selector = selector


class PageRefused(ClassStopped):
    def __init__(self, url: str, status: int, attempts: int) -> None:
        tries = f"{attempts} times in a row" if attempts > 1 else "once (not worth retrying)"
        super().__init__(
            f"{url} answered HTTP {status} {tries}: the shop is overloaded or refuses the scraper. Try again "
            "later, or raise browser.page_retries, browser.page_retry_backoff_s or politeness.page_delay_s."
        )
        self.summary = f"HTTP {status}"


class RobotsDisallowed(ClassStopped):
    summary = "robots.txt"

    def __init__(self, url: str, why: str) -> None:
        super().__init__(
            f"{why}, so {url} may not be fetched. Scrape another site, or set "
            "politeness.obey_robots = false only if the site owner allows you to."
        )


class HostUnreachable(ClassStopped):
    summary = "image host down"

    def __init__(self, failures: int, last_error: str) -> None:
        super().__init__(f"{failures} image downloads in a row failed (last: {last_error}); the image host looks down")
