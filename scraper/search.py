"""Walking a shop's search results in the browser: page after page of product tiles.

Every wait is an explicit condition (tiles present, CAPTCHA present, a lazy image resolved) with a
time limit; a limit that runs out is reported as what it means, for instance a layout change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

from selenium.common.exceptions import JavascriptException, TimeoutException, WebDriverException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from scraper.config import BrowserSettings, PolitenessSettings
from scraper.errors import CaptchaDetected, ClassStopped, LayoutChanged, RobotsDisallowed, ScrapeError
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

_NEXT_PAGE_JS = "const a = document.querySelector(arguments[0]); return a ? a.href || null : null;"


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
        for page in range(1, max_pages + 1):
            if url is None or url in visited:
                return
            visited.add(url)
            self._load(url)
            if self._wait_for_results(url) == "no-results":
                log.info("%r: no results on page %d", query, page)
                return
            tiles = self._read_tiles(url)
            log.debug("%r page %d: %d tiles (%s)", query, page, len(tiles), url)
            url = self._driver.execute_script(_NEXT_PAGE_JS, self._profile.next_page)
            yield from tiles

    def _load(self, url: str) -> None:
        if self._robots and not self._robots.allowed(url):
            raise RobotsDisallowed(url, self._robots.why_not(url))
        self._throttle.wait("page-loads", self._politeness.page_delay_s)
        self._throttle.wait(host_of(url), self._politeness.host_interval_s)
        try:
            self._driver.get(url)
        except TimeoutException:
            raise ClassStopped(f"{url} did not load within {self._browser.page_load_timeout_s} s") from None
        except WebDriverException as error:
            raise ClassStopped(f"the browser could not load {url}: {error.msg}") from None
        if not self._selectors_checked:
            self._check_selectors()

    def _check_selectors(self) -> None:
        p = self._profile
        invalid = self._driver.execute_script(
            _INVALID_SELECTORS_JS, [p.tile, p.title, p.link, p.image, p.next_page, *p.captcha, p.no_results or "*"]
        )
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
                    product_id=tile["id"].strip(),
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
