"""srcset parsing, the rate limit and robots.txt: the small parts the engine trusts."""

from __future__ import annotations

import re

import requests

from scraper.politeness import RobotsRules, Throttle
from scraper.srcset import image_url, largest_candidate, parse_srcset
from tests.scraper.shop_site import ShopSite

PLACEHOLDER = re.compile(r"^data:|grey-pixel")


def test_srcset_is_split_like_a_browser_does():
    amazon = (
        "https://m.media-amazon.com/images/I/61a._AC_UL320_.jpg 1x, "
        "https://m.media-amazon.com/images/I/61a._AC_UL480_.jpg 1.5x,"
        "https://m.media-amazon.com/images/I/61a._AC_SR480,440_.jpg 2x"
    )
    assert [descriptor for _, descriptor in parse_srcset(amazon)] == ["1x", "1.5x", "2x"]
    assert largest_candidate(amazon) == "https://m.media-amazon.com/images/I/61a._AC_SR480,440_.jpg"
    assert largest_candidate("small.jpg 320w, big.jpg 1280w, mid.jpg 640w") == "big.jpg"
    assert largest_candidate("only.jpg") == "only.jpg"
    assert largest_candidate("  ") is None


def test_the_image_url_skips_placeholders_and_non_http_urls():
    order = ("srcset", "src", "data-src")
    base = "https://shop.test/s?k=x"
    assert image_url(
        {"srcset": "", "src": "data:image/gif;base64,R0l", "data-src": "/i/1.jpg"}, order, PLACEHOLDER, base
    ) == ("https://shop.test/i/1.jpg")
    assert image_url({"src": "https://x/grey-pixel.gif"}, order, PLACEHOLDER, base) is None
    assert image_url({"src": "javascript:alert(1)"}, order, PLACEHOLDER, base) is None


def test_the_throttle_spaces_calls_per_key():
    now, sleeps = [100.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    throttle = Throttle(clock=lambda: now[0], sleep=sleep)
    throttle.wait("a.test", 2.0)
    throttle.wait("b.test", 2.0)  # another host: no wait
    now[0] += 0.5
    throttle.wait("a.test", 2.0)
    now[0] += 5.0
    throttle.wait("a.test", 2.0)  # long enough since
    assert sleeps == [1.5]


def test_robots_txt_rules_and_what_a_missing_file_means(shop_server: ShopSite):
    with requests.Session() as session:
        rules = RobotsRules(session, "sortline-scraper", Throttle(), 0, 5)
        assert rules.allowed(f"{shop_server.base_url}/img/j1.jpg")
        assert not rules.allowed(f"{shop_server.base_url}/private/j12.jpg")
        assert not rules.allowed(f"{shop_server.base_url}/s?k=blocked")
        assert rules.allowed(f"{shop_server.base_url}/s?k=men+jeans")
        assert shop_server.paths("/robots.txt") == ["/robots.txt"]  # read once per host

        shop_server.images.clear()
        unreachable = RobotsRules(session, "sortline-scraper", Throttle(), 0, 1)
        assert not unreachable.allowed("http://127.0.0.1:9/anything")  # cannot be read: disallowed
        assert "could not be read (ConnectionError)" in unreachable.why_not("http://127.0.0.1:9/anything")
        assert "disallows it for sortline-scraper" in rules.why_not(f"{shop_server.base_url}/private/j12.jpg")
