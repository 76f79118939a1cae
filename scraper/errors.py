"""Why a class stops early. Each message says what happened, where, and what to do about it."""

from __future__ import annotations


class ScrapeError(Exception):
    """A problem the user must act on; the run reports it and exits non-zero."""


class ClassStopped(ScrapeError):
    """This class cannot go on (the site refuses or has changed); other classes still run."""


class CaptchaDetected(ClassStopped):
    def __init__(self, url: str, profile: str) -> None:
        super().__init__(
            f"the site answered {url} with a CAPTCHA / bot check (profile {profile!r}); stopped without retrying. "
            "Wait before trying again, raise politeness.page_delay_s, or ask the site for access."
        )


class LayoutChanged(ClassStopped):
    def __init__(self, url: str, profile: str, what: str, selector: str) -> None:
        super().__init__(
            f"{what} {selector!r} of site profile {profile!r} found nothing on {url}: the page layout has "
            "probably changed; update that selector in the profile."
        )
        self.selector = selector


class RobotsDisallowed(ClassStopped):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"robots.txt disallows {url} for this scraper. Scrape another site, or set "
            "politeness.obey_robots = false only if the site owner allows you to."
        )


class HostUnreachable(ClassStopped):
    def __init__(self, failures: int, last_error: str) -> None:
        super().__init__(f"{failures} image downloads in a row failed (last: {last_error}); the image host looks down")
