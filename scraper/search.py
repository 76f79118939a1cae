"""Walking a shop's search results in the browser: page after page of product tiles.

Every wait is an explicit condition (tiles present, CAPTCHA present, a lazy image resolved) with a
time limit; a limit that runs out is reported as what it means, for instance a layout change.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

from selenium.common.exceptions import JavascriptException, TimeoutException, WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from scraper.config import BrowserSettings, PolitenessSettings
from scraper.errors import CaptchaDetected, ClassStopped, LayoutChanged, PageRefused, RobotsDisallowed, ScrapeError
from scraper.politeness import RobotsRules, Throttle, host_of
from scraper.profile import SiteProfile
from scraper.srcset import image_url

log = logging.getLogger(__name__)

_PAGE_STATE_JS = """
const p = arguments[0];
const text = document.body ? document.body.innerText : "";
if (p.captcha.some(s => document.querySelector(s)) || p.captcha_phrases.some(t => text.includes(t))) return "captcha";
if (document.querySelector(p.tile)) return "tiles";
if (p.no_results && document.querySelector(p.no_results)) return "no-results";
return null;
"""

_READ_TILES_JS = """
const [p, only] = arguments;
const read = tile => {
  const img = tile.querySelector(p.image), link = tile.querySelector(p.link), title = tile.querySelector(p.title);
  const urls = {};
  if (img) for (const name of p.image_url_attributes) urls[name] = img.getAttribute(name) || "";
  return {id: tile.getAttribute(p.product_id_attribute) || "", title: title ? title.textContent : "",
          href: link ? link.getAttribute("href") || "" : "", has_image: !!img, urls: urls};
};
const tiles = Array.from(document.querySelectorAll(p.tile));
return {base: document.baseURI, tiles: only === null ? tiles.map(read) : [read(tiles[only])]};
"""

_SCROLL_TO_TILE_JS = "document.querySelectorAll(arguments[0])[arguments[1]].scrollIntoView({block: 'center'});"

_INVALID_SELECTORS_JS = """
return arguments[0].filter(s => { try { document.querySelector(s); return false; } catch (e) { return true; } });
"""

_NEXT_PAGE_JS = """
const [next, last] = arguments, a = document.querySelector(next);
return {next: a ? a.href || null : null, last: !!(last && document.querySelector(last))};
"""

# The status of the page's own HTTP response; page scripts cannot see it otherwise. null where unknown.
_NAVIGATION_STATUS_JS = (
    "const n = performance.getEntriesByType('navigation')[0]; return n && n.responseStatus ? n.responseStatus : null;"
)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Tile:
    product_id: str
    title: str
    product_url: str
    image_url: str | None  # None: the tile shows no real image


class SearchPages:
    """Search result tiles for one query, loaded politely; raises ClassStopped when it cannot go on."""

    def __init__(
        self,
        driver: WebDriver,
        profile: SiteProfile,
        browser: BrowserSettings,
        politeness: PolitenessSettings,
        throttle: Throttle,
        robots: RobotsRules | None,
    ) -> None:
        self._driver, self._profile = driver, profile
        self._browser, self._politeness = browser, politeness
        self._throttle, self._robots = throttle, robots
        self._placeholder = re.compile(profile.placeholder_pattern)
        self._selectors_checked = False

    def tiles(self, query: str, base_url: str | None, max_pages: int) -> Iterator[Tile]:
        url: str | None = self._profile.search_url(query, base_url)
        visited: set[str] = set()
        first_page_tiles = 0
        for page in range(1, max_pages + 1):
            if url is None or url in visited:
                return
            visited.add(url)
            self._load(url)
            if self._wait_for_results(url) == "no-results":
                log.info("%r: no results on page %d", query, page)
                return
            tiles = self._read_tiles(url)
            first_page_tiles = first_page_tiles or len(tiles)
            log.debug("%r page %d: %d tiles (%s)", query, page, len(tiles), url)
            pagination = self._driver.execute_script(_NEXT_PAGE_JS, self._profile.next_page, self._profile.last_page)
            url = pagination["next"]
            yield from tiles
            if url is None and not pagination["last"] and len(tiles) >= first_page_tiles:
                self._no_next_link(query, page, self._driver.current_url)

    def _no_next_link(self, query: str, page: int, url: str) -> None:
        """A full page without a next link: the last page, or a renamed link that would silently end the query."""
        p = self._profile
        if p.last_page:
            raise LayoutChanged(url, p.name, "next-page link (a full page, no last-page marker)", p.next_page)
        log.warning(
            "%r ends at page %d, which is full but has no next-page link %r: if the shop has more pages, that "
            "selector has changed. Set last_page in profile %r so a layout change can be told from the last page.",
            query,
            page,
            p.next_page,
            p.name,
        )

    def _load(self, url: str) -> None:
        """Load a search page, retrying one the shop answers with 429 or 5xx after a growing pause."""
        if self._robots and not self._robots.allowed(url):
            raise RobotsDisallowed(url, self._robots.why_not(url))
        for attempt in range(1, self._browser.page_retries + 2):
            status = self._get(url)
            if status is None or status < 400:
                break
            if self._driver.execute_script(_PAGE_STATE_JS, self._profile.model_dump()) == "captcha":
                raise CaptchaDetected(url, self._profile.name)  # bot checks often come as 503: never retried
            if status not in _RETRY_STATUSES:
                raise PageRefused(url, status, attempts=1)
            if attempt > self._browser.page_retries:
                raise PageRefused(url, status, attempts=attempt)
            pause = self._browser.page_retry_backoff_s * 2 ** (attempt - 1)
            retries = self._browser.page_retries
            log.warning("%s answered HTTP %d; retry %d of %d in %g s", url, status, attempt, retries, pause)
            time.sleep(pause)
        if not self._selectors_checked:
            self._check_selectors()

    def _get(self, url: str) -> int | None:
        """Navigate politely; the HTTP status of the page, None where the browser does not tell."""
        self._throttle.wait("page-loads", self._politeness.page_delay_s)
        self._throttle.wait(host_of(url), self._politeness.host_interval_s)
        try:
            self._driver.get(url)
            return self._driver.execute_script(_NAVIGATION_STATUS_JS)
        except TimeoutException:
            raise ClassStopped(f"{url} did not load within {self._browser.page_load_timeout_s} s") from None
        except WebDriverException as error:
            raise ClassStopped(f"the browser could not load {url}: {error.msg}") from None

    def _check_selectors(self) -> None:
        p = self._profile
        selectors = [p.tile, p.title, p.link, p.image, p.next_page, *p.captcha]
        selectors += [optional for optional in (p.last_page, p.no_results) if optional]
        invalid = self._driver.execute_script(_INVALID_SELECTORS_JS, selectors)
        if invalid:
            raise ScrapeError(f"site profile {p.name!r} has selectors that are not valid CSS: {invalid}")
        self._selectors_checked = True

    def _wait_for_results(self, url: str) -> str:
        p = self._profile.model_dump()
        try:
            state = WebDriverWait(self._driver, self._browser.render_timeout_s, poll_frequency=0.1).until(
                lambda driver: driver.execute_script(_PAGE_STATE_JS, p)
            )
        except TimeoutException:
            raise LayoutChanged(url, self._profile.name, "tile selector", self._profile.tile) from None
        if state == "captcha":
            raise CaptchaDetected(url, self._profile.name)
        return state

    def _read_tiles(self, url: str) -> list[Tile]:
        p = self._profile
        raw = self._driver.execute_script(_READ_TILES_JS, p.model_dump(), None)
        base, found = raw["base"], raw["tiles"]
        if not any(tile["has_image"] for tile in found):
            raise LayoutChanged(url, p.name, "image selector", p.image)
        if not any(tile["id"] for tile in found):
            raise LayoutChanged(url, p.name, "product id attribute", p.product_id_attribute)
        tiles = []
        for index, tile in enumerate(found):
            if not tile["id"]:
                continue
            src = self._image_url(tile, base)
            if src is None and tile["has_image"]:
                tile, src = self._wait_for_lazy_image(index, base, tile)
            tiles.append(
                Tile(
                    product_id=" ".join(tile["id"].split()),  # one line, as the title: the manifest is CSV
                    title=" ".join(tile["title"].split()),
                    product_url=_join(base, tile["href"]),
                    image_url=src,
                )
            )
        return tiles

    def _image_url(self, tile: dict, base: str) -> str | None:
        return image_url(tile["urls"], self._profile.image_url_attributes, self._placeholder, base)

    def _wait_for_lazy_image(self, index: int, base: str, tile: dict) -> tuple[dict, str | None]:
        """Scrolls the tile into view, so the page's lazy loader fills in the real URL, and waits for it."""
        p = self._profile.model_dump()
        self._driver.execute_script(_SCROLL_TO_TILE_JS, self._profile.tile, index)

        def resolved(driver: WebDriver) -> tuple[dict, str] | None:
            current = driver.execute_script(_READ_TILES_JS, p, index)["tiles"][0]
            src = self._image_url(current, base)
            return (current, src) if src else None

        try:
            return WebDriverWait(self._driver, self._browser.render_timeout_s, poll_frequency=0.05).until(resolved)
        except (TimeoutException, JavascriptException):
            log.warning("tile %s: its lazy image never got a URL; skipped", tile["id"])
            return tile, None


def _join(base: str, href: str) -> str:
    return urljoin(base, href) if href else ""
