"""One scrape: for each class, its queries' result tiles -> checked, deduplicated images on disk."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from scraper.browser import browser_session
from scraper.config import ROBOTS_AGENT, ScrapeSettings
from scraper.errors import ClassStopped, HostUnreachable, ScrapeError
from scraper.fetch import FetchFailed, PreparedImage, Rejected, download, make_session, prepare
from scraper.manifest import ManifestRow
from scraper.politeness import RobotsRules, Throttle, host_of
from scraper.profile import SiteProfile
from scraper.search import SearchPages, Tile
from scraper.store import OutputFolder, file_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassResult:
    label: str
    saved: int
    target: int
    stopped: str | None  # why the class stopped early, None when it ran normally
    failed_downloads: int  # images the server answered with an error, or not at all (after the retries)

    @property
    def outcome(self) -> str:
        if self.stopped:
            return f"stopped: {self.stopped} (see the error above)"
        return "complete" if self.saved >= self.target else "ran out of search results"


def scrape(settings: ScrapeSettings, profile: SiteProfile, emit: Callable[[str], None] = print) -> list[ClassResult]:
    """Runs every class; ``emit`` receives the dry-run listing."""
    _check_connectable(settings.base_url or profile.base_url, settings.download.timeout_s)
    throttle = Throttle()
    with (
        closing(OutputFolder(settings.out, settings.download.near_duplicate_distance, settings.dry_run)) as folder,
        make_session(settings.download, settings.politeness.user_agent) as session,
        browser_session(settings.browser, settings.politeness.user_agent) as driver,  # quits on exit
    ):
        robots = None
        if settings.politeness.obey_robots:
            interval, timeout = settings.politeness.host_interval_s, settings.download.timeout_s
            robots = RobotsRules(session, ROBOTS_AGENT, throttle, interval, timeout)
        pages = SearchPages(driver, profile, settings.browser, settings.politeness, throttle, robots)
        run = _Run(settings, profile, folder, pages, session, throttle, robots, emit)
        return [run.scrape_class(label, queries) for label, queries in settings.classes.items()]


def _check_connectable(base_url: str, timeout_s: float) -> None:
    """Raises ScrapeError when the shop's host takes no connection. A wrong port or a host that is down would
    otherwise read as an unreadable robots.txt, or as a changed layout once the browser shows its error page.
    Behind a proxy only the proxy connects to the shop, so there is nothing to check here."""
    if requests.utils.get_environ_proxies(base_url):
        return
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2]
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)  # ValueError: a profile's port is no number
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except (OSError, ValueError) as error:
        why = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ScrapeError(
            f"cannot connect to {host} ({why}): check base_url (or the site profile's) and that the shop is up"
        ) from None


@dataclass
class _Run:
    settings: ScrapeSettings
    profile: SiteProfile
    folder: OutputFolder
    pages: SearchPages
    session: requests.Session
    throttle: Throttle
    robots: RobotsRules | None
    emit: Callable[[str], None]
    failures_in_a_row: int = 0
    failed_downloads: int = 0  # in the current class
    listed: set[str] = field(default_factory=set)  # dry run: image URLs listed so far

    def scrape_class(self, label: str, queries: list[str]) -> ClassResult:
        target = self.settings.per_class
        progress = tqdm(total=target, initial=min(self.folder.saved(label), target), desc=label, unit="img")
        self.listed.clear()
        self.failures_in_a_row = 0
        self.failed_downloads = 0
        stopped = None
        try:
            for query in queries:
                if self._reached(label, target):
                    break
                for tile in self.pages.tiles(query, self.settings.base_url, self.settings.max_pages):
                    if tile.image_url is None or self.folder.seen(tile.image_url) or tile.image_url in self.listed:
                        continue
                    if self.settings.dry_run:
                        if self.robots and not self.robots.allowed(tile.image_url):
                            continue
                        self.emit(f"{label}\t{query}\t{tile.product_id}\t{tile.image_url}\t{tile.title}")
                        self.listed.add(tile.image_url)
                        progress.update()
                    elif self._fetch(label, query, tile):
                        progress.update()
                    if self._reached(label, target):
                        break  # before the next tile: the next page is not loaded
        except ClassStopped as error:
            log.error("class %r stopped: %s", label, error)
            stopped = error.summary
        finally:
            progress.close()
        return ClassResult(label, self.folder.saved(label) + len(self.listed), target, stopped, self.failed_downloads)

    def _reached(self, label: str, target: int) -> bool:
        return self.folder.saved(label) + len(self.listed) >= target

    def _fetch(self, label: str, query: str, tile: Tile) -> bool:
        """True when a new image was saved."""
        url = tile.image_url
        assert url
        try:
            if self.robots and not self.robots.allowed(url):
                if self.robots.unreadable(url):
                    raise FetchFailed(self.robots.why_not(url))
                self._skip(label, query, tile, "robots", self.robots.why_not(url))
                return False
            self.throttle.wait(host_of(url), self.settings.politeness.host_interval_s)
            image = prepare(download(self.session, url, self.settings.download), self.settings.download)
        except Rejected as rejected:
            if rejected.reason.startswith("http-"):  # an error answer (404, 410 ...), not a refused image
                self.failed_downloads += 1
            log.info("skipped %s: %s", url, rejected)
            self._skip(label, query, tile, rejected.reason, rejected.detail)
            return False
        except FetchFailed as error:
            self.failures_in_a_row += 1
            self.failed_downloads += 1
            log.warning("could not fetch %s (%s); a rerun will try again", url, error)
            if self.failures_in_a_row >= self.settings.download.max_consecutive_failures:
                raise HostUnreachable(self.failures_in_a_row, str(error)) from None
            return False
        self.failures_in_a_row = 0
        duplicate = self.folder.duplicate_of(image)
        if duplicate:
            reason, existing = duplicate
            self._skip(label, query, tile, reason, existing, image)
            return False
        self.folder.save(image, self._row(label, query, tile, image, "saved"))
        return True

    def _skip(self, label: str, query: str, tile: Tile, reason: str, detail: str, image: PreparedImage | None = None):
        self.folder.record_skip(self._row(label, query, tile, image, "skipped", reason, detail))

    def _row(
        self, label: str, query: str, tile: Tile, image: PreparedImage | None, status: str, reason="", detail=""
    ) -> ManifestRow:
        return ManifestRow(
            file=f"{label}/{file_name(image)}" if image and status == "saved" else "",
            label=label,
            query=query,
            product_id=tile.product_id,
            title=tile.title,
            product_url=tile.product_url,
            image_url=tile.image_url or "",
            sha256=image.sha256 if image else "",
            phash=f"{image.phash:016x}" if image else "",
            width=str(image.width) if image else "",
            height=str(image.height) if image else "",
            fetched_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            site=self.profile.name,
            status=status,
            reason=reason,
            detail=detail,
        )
