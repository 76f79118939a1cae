"""Image downloads from the fixture shop: what is refused, why, and what an accepted image becomes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from scraper.config import DownloadSettings
from scraper.fetch import FetchFailed, Rejected, download, make_session, prepare
from tests.scraper.shop_site import ShopSite, encode, picture

SETTINGS = DownloadSettings(retries=2, backoff_s=0.01, max_bytes=300_000, max_pixels=4_000_000, timeout_s=5)


def _fetch(site: ShopSite, path: str, settings: DownloadSettings = SETTINGS):
    with make_session(settings, "test-agent/1") as session:
        return prepare(download(session, site.base_url + path, settings), settings)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/img/j3-broken.jpg", "undecodable"),
        ("/img/j4-not-image.jpg", "not-an-image"),
        ("/img/j8-bomb.png", "too-many-pixels"),
        ("/img/j9-huge.jpg", "too-large"),
        ("/img/j11-tiny.jpg", "too-small"),
        ("/img/missing.jpg", "http-404"),
    ],
)
def test_bad_responses_are_refused_with_a_reason(shop_server: ShopSite, path: str, reason: str):
    with pytest.raises(Rejected) as refused:
        _fetch(shop_server, path)
    assert refused.value.reason == reason


def test_the_bomb_guard_applies_just_above_the_configured_limit_and_cites_it(shop_server: ShopSite):
    # 9 Mpx against a limit of 8 Mpx: Pillow only warns (its error starts at twice the limit); still refused
    settings = SETTINGS.model_copy(update={"max_pixels": 8_999_999})
    with pytest.raises(Rejected) as refused:
        _fetch(shop_server, "/img/j8-bomb.png", settings)
    assert (refused.value.reason, refused.value.detail) == (
        "too-many-pixels",
        "3000x3000 = 9000000 pixels > max_pixels 8999999",
    )
    assert _fetch(shop_server, "/img/j8-bomb.png", settings.model_copy(update={"max_pixels": 9_000_000}))


def test_undecodable_details_are_the_same_on_every_run():
    with pytest.raises(Rejected) as unknown:
        prepare(b"GIF89a but not really" * 10, SETTINGS)
    assert unknown.value.detail == "not an image format Pillow can read"
    with pytest.raises(Rejected) as truncated:
        prepare(encode(picture(3))[:600], SETTINGS)
    assert truncated.value.reason == "undecodable" and " at 0x" not in truncated.value.detail


def test_a_server_trickling_bytes_is_given_up_on_at_the_deadline(shop_server: ShopSite):
    shop_server.trickle_s = 0.05  # each byte well inside timeout_s, the whole image in minutes
    settings = SETTINGS.model_copy(update={"deadline_s": 1.0, "retries": 0})
    with pytest.raises(FetchFailed, match=r"not complete after download\.deadline_s = 1 s"):
        _fetch(shop_server, "/img/trickle.jpg", settings)


def test_a_busy_server_is_retried_with_backoff(shop_server: ShopSite):
    shop_server.flaky_failures = 2
    image = _fetch(shop_server, "/img/flaky.jpg")
    assert shop_server.paths("/img/flaky.jpg") == ["/img/flaky.jpg"] * 3
    assert (image.width, image.height) == (240, 300)
    assert {agent for _, agent in shop_server.requests} == {"test-agent/1"}


def test_a_server_that_stays_busy_is_a_temporary_failure(shop_server: ShopSite):
    shop_server.flaky_failures = 10
    with pytest.raises(FetchFailed, match="503"):
        _fetch(shop_server, "/img/flaky.jpg")
    assert len(shop_server.paths("/img/flaky.jpg")) == 3  # the first try and two retries


def test_an_unreachable_host_is_a_temporary_failure(shop_server: ShopSite):
    settings = SETTINGS.model_copy(update={"retries": 0})
    with make_session(settings, "test-agent/1") as session, pytest.raises(FetchFailed):
        download(session, "http://127.0.0.1:9/img.jpg", settings)  # the discard port: nobody listens


def test_accepted_images_become_rgb_jpeg_with_transparency_on_white(shop_server: ShopSite):
    image = _fetch(shop_server, "/img/s2.jpg")  # an RGBA PNG behind a .jpg name
    with Image.open(io.BytesIO(image.jpeg)) as decoded:
        assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", (200, 330))
    assert len(image.sha256) == 64 and 0 <= image.phash < 2**64


def test_exif_orientation_is_applied():
    rotated = Image.new("RGB", (300, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif)
    image = prepare(buffer.getvalue(), SETTINGS)
    assert (image.width, image.height) == (200, 300)
