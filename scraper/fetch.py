"""Image download and validation: one shared HTTP session, retries with backoff, and a full decode.

Anything that is not a real, decodable, big-enough image is refused with a reason, before a byte
reaches the output folder. Accepted images are re-encoded as RGB JPEG, which also strips metadata.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass

import imagehash
import requests
import urllib3
from PIL import Image, ImageOps, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scraper.config import DownloadSettings


class Rejected(Exception):
    """The URL answered with something that will never be a usable image; recorded, never retried."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class FetchFailed(Exception):
    """A failure that may pass (timeout, 5xx after retries); not recorded, so a rerun tries again."""


@dataclass(frozen=True)
class PreparedImage:
    jpeg: bytes
    sha256: str
    phash: int
    width: int
    height: int


def make_session(settings: DownloadSettings, user_agent: str) -> requests.Session:
    retry = Retry(
        total=settings.retries,
        # urllib3 retries once at once, then sleeps backoff_factor * 2**(n-1) before retry n: backoff_s, 2x, 4x ...
        backoff_factor=settings.backoff_s / 2,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET", "HEAD"),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def download(session: requests.Session, url: str, settings: DownloadSettings) -> bytes:
    """The body of an image response, refused early on a wrong content type or size, and given up on after
    ``deadline_s`` in all: ``timeout_s`` bounds each wait for bytes, so a server trickling a byte at a time
    would otherwise hold one image for as long as it likes."""
    deadline = time.monotonic() + settings.deadline_s
    try:
        with session.get(url, timeout=settings.timeout_s, stream=True) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise FetchFailed(f"HTTP {response.status_code} after {settings.retries} retries")
            if response.status_code >= 400:
                raise Rejected(f"http-{response.status_code}", url)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise Rejected("not-an-image", f"Content-Type {content_type or 'missing'}")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > settings.max_bytes:
                raise Rejected("too-large", f"{declared} bytes > {settings.max_bytes}")
            body = bytearray()
            # read1 returns whatever has arrived (iter_content waits for a whole chunk), so the deadline holds
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                body += chunk
                if len(body) > settings.max_bytes:
                    raise Rejected("too-large", f"more than {settings.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchFailed(f"not complete after download.deadline_s = {settings.deadline_s:g} s")
            return bytes(body)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        raise FetchFailed(str(error)) from error


def prepare(data: bytes, settings: DownloadSettings) -> PreparedImage:
    """Decode fully, after checking the pixel count in the header against ``max_pixels`` (a decompression
    bomb never gets decoded), check the size, re-encode."""
    # Pillow's own guard would refuse at its limit, with its numbers; the header check below uses ours.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > settings.max_pixels:
                raise Rejected(
                    "too-many-pixels", f"{width}x{height} = {width * height} pixels > max_pixels {settings.max_pixels}"
                )
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError as error:
        raise Rejected("undecodable", "not an image format Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for truncated or broken data
        raise Rejected("undecodable", _without_addresses(str(error))) from error
    if min(rgb.size) < settings.min_side:
        raise Rejected("too-small", f"{rgb.width}x{rgb.height} < {settings.min_side} px")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=settings.jpeg_quality, optimize=True)
    jpeg = buffer.getvalue()
    return PreparedImage(
        jpeg=jpeg,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        phash=int(str(imagehash.phash(rgb)), 16),
        width=rgb.width,
        height=rgb.height,
    )


def _without_addresses(message: str) -> str:
    """Pillow names buffers as `<_io.BytesIO object at 0x7f…>`: drop the address, so reruns write equal rows."""
    return re.sub(r" at 0x[0-9a-fA-F]+>", ">", message)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white (a shop's background), not black."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
