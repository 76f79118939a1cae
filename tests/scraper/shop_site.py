"""A small shop on 127.0.0.1 whose search pages look like Amazon's, with every trap the scraper must survive.

Images are drawn with Pillow when the site starts. ``EXPECTED`` is what a full scrape of the three
apparel classes must leave in the manifest, keyed by image path.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from PIL import Image, ImageDraw

PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\nDisallow: /s?k=blocked\n"
HOSTILE_ID = "../../../tmp/evil"
HOSTILE_TITLE = 'Slim "fit", comma,\n  newline <b>bold</b>'
HOSTILE_IMAGE = "/img/..%2F..%2Fevil%00.jpg?name=../../x.jpg"

# Chromium must reach nothing but this machine: every host name fails to resolve except 127.0.0.1.
LOOPBACK_ONLY = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-pings",
    "--disable-domain-reliability",
]


@dataclass(frozen=True)
class Product:
    asin: str
    image: str  # path of the image the scraper should pick
    srcset: str = ""  # empty: the image is in src (or set lazily)
    lazy: bool = False


# What a full run must record for each image path: (status, reason).
EXPECTED: dict[str, tuple[str, str]] = {
    "/img/j1.jpg": ("saved", ""),
    "/img/j2.jpg": ("saved", ""),
    "/img/j3-broken.jpg": ("skipped", "undecodable"),
    "/img/j4-not-image.jpg": ("skipped", "not-an-image"),
    "/img/j5.jpg": ("saved", ""),
    "/img/j6-same-as-j1.jpg": ("skipped", "duplicate"),
    "/img/j7-near-j5.jpg": ("skipped", "near-duplicate"),
    "/img/j8-bomb.png": ("skipped", "too-many-pixels"),
    "/img/j9-huge.jpg": ("skipped", "too-large"),
    HOSTILE_IMAGE: ("saved", ""),
    "/img/j11-tiny.jpg": ("skipped", "too-small"),
    "/private/j12.jpg": ("skipped", "robots"),
    "/img/t1-640.jpg": ("saved", ""),
    "/img/t2.jpg": ("saved", ""),
    "/img/t3-same-as-j5.jpg": ("skipped", "duplicate"),
    "/img/s1.jpg": ("saved", ""),
    "/img/s2.jpg": ("saved", ""),
}

# query -> pages of products; a string page is served as is (CAPTCHA, changed layout, no results).
_J1_SRCSET = "/img/j1-small.jpg 1x, /img/j1.jpg 2x"
_T1_SRCSET = "/img/t1-640.jpg 640w, /img/t1-320.jpg 320w"
CATALOGUE: dict[str, list[list[Product] | str]] = {
    "men jeans": [
        [
            Product("B0JEANS001", "/img/j1.jpg", srcset=_J1_SRCSET),
            Product("B0JEANS003", "/img/j3-broken.jpg"),
            Product("B0JEANS004", "/img/j4-not-image.jpg"),
            Product("B0JEANS002", "/img/j2.jpg", lazy=True),  # last, below the fold
        ],
        [
            Product("B0JEANS005", "/img/j5.jpg"),
            Product("B0JEANS006", "/img/j6-same-as-j1.jpg"),
            Product("B0JEANS007", "/img/j7-near-j5.jpg"),
            Product("B0JEANS008", "/img/j8-bomb.png"),
            Product("B0JEANS009", "/img/j9-huge.jpg"),
        ],
        [
            Product(HOSTILE_ID, HOSTILE_IMAGE),
            Product("B0JEANS011", "/img/j11-tiny.jpg"),
            Product("B0JEANS012", "/private/j12.jpg"),
        ],
    ],
    "men trousers": [
        [
            Product("B0TROUS001", "/img/t1-640.jpg", srcset=_T1_SRCSET),
            Product("B0TROUS002", "/img/t2.jpg"),
            Product("B0TROUS003", "/img/t3-same-as-j5.jpg"),
        ]
    ],
    "saree": [[Product("B0SAREE001", "/img/s1.jpg"), Product("B0SAREE002", "/img/s2.jpg")], "captcha"],
    "new layout": ["changed-layout"],
    "busy": [[Product(f"B0BUSY{n:04d}", f"/img/busy-{n}.jpg") for n in range(6)]],  # the image host answers 503
    # one image there, one the shop no longer has (404), one whose host stays busy (503 after the retries)
    "sold out": [
        [
            Product("B0GONE0001", "/img/t2.jpg"),
            Product("B0GONE0002", "/img/gone.jpg"),
            Product("B0GONE0003", "/img/busy-9.jpg"),
        ]
    ],
    "nothing": ["no-results"],
}


def picture(seed: int, size: tuple[int, int] = (240, 300)) -> Image.Image:
    """A garment-ish picture of random shapes; different seeds are far apart in perceptual hash."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(150, 256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(30, size[0]), y0 + rng.randrange(30, size[1])
        colour = tuple(rng.randrange(0, 200) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)((x0, y0, x1, y1), fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _images() -> dict[str, tuple[str, bytes]]:
    """image path -> (content type, body)."""
    jpeg = "image/jpeg"
    j1, j5 = encode(picture(1)), encode(picture(5))
    images = {
        "/img/j1.jpg": (jpeg, j1),
        "/img/j1-small.jpg": (jpeg, encode(picture(1).resize((120, 150)))),
        "/img/j2.jpg": (jpeg, encode(picture(2))),
        "/img/j3-broken.jpg": (jpeg, encode(picture(3))[:600]),
        "/img/j4-not-image.jpg": ("text/html; charset=utf-8", b"<html><body>Sorry, not found</body></html>"),
        "/img/j5.jpg": (jpeg, j5),
        "/img/j6-same-as-j1.jpg": (jpeg, j1),
        "/img/j7-near-j5.jpg": (jpeg, encode(picture(5).resize((200, 250)), quality=70)),
        "/img/j8-bomb.png": ("image/png", encode(Image.new("RGB", (3000, 3000), (20, 40, 90)), "PNG")),
        "/img/j9-huge.jpg": (jpeg, random.Random(9).randbytes(400_000)),
        HOSTILE_IMAGE.split("?")[0]: (jpeg, encode(picture(10))),
        "/img/j11-tiny.jpg": (jpeg, encode(picture(11, (60, 80)))),
        "/private/j12.jpg": (jpeg, encode(picture(12))),
        "/img/t1-640.jpg": (jpeg, encode(picture(21, (320, 400)))),
        "/img/t1-320.jpg": (jpeg, encode(picture(21, (160, 200)))),
        "/img/t2.jpg": (jpeg, encode(picture(22))),
        "/img/t3-same-as-j5.jpg": (jpeg, j5),
        "/img/s1.jpg": (jpeg, encode(picture(31, (200, 330)))),
        "/img/s2.jpg": ("image/png", encode(picture(32, (200, 330)).convert("RGBA"), "PNG")),
        "/img/flaky.jpg": (jpeg, encode(picture(40))),
        "/img/trickle.jpg": (jpeg, encode(picture(41))),
    }
    return images


def _tile(product: Product) -> str:
    asin = html.escape(product.asin, quote=True)
    title = html.escape(HOSTILE_TITLE if product.asin == HOSTILE_ID else f"Product {product.asin}")
    if product.lazy:
        img = f'<img class="s-image" src="{PLACEHOLDER}" data-lazy="{product.image}" width="240" height="300" alt="">'
    elif product.srcset:
        small = product.srcset.split()[0]
        img = f'<img class="s-image" src="{small}" srcset="{product.srcset}" width="240" height="300" alt="">'
    else:
        img = f'<img class="s-image" src="{html.escape(product.image, quote=True)}" width="240" height="300" alt="">'
    slug = quote(product.asin, safe="")
    return f"""
<div data-asin="{asin}" data-index="1" data-component-type="s-search-result" class="s-result-item s-asin">
  <div class="s-product-image-container">
    <a class="a-link-normal s-no-outline" href="/Product-{slug}/dp/{slug}/ref=sr_1">{img}</a>
  </div>
  <h2 class="a-size-mini a-spacing-none"><a class="a-link-normal" href="/dp/x"><span>{title}</span></a></h2>
  <span class="a-price"><span class="a-offscreen">₹999</span></span>
</div>"""


# The real loader keeps the URL in script, not in an attribute: only scrolling the tile into view reveals it.
_LAZY_LOADER = """<script>
const lazyUrls = new Map();
document.querySelectorAll('img[data-lazy]').forEach(img => {
  lazyUrls.set(img, img.dataset.lazy);
  img.removeAttribute('data-lazy');
});
const seen = new IntersectionObserver(entries => entries.forEach(entry => {
  if (entry.isIntersecting) { entry.target.srcset = lazyUrls.get(entry.target) + ' 1x'; seen.unobserve(entry.target); }
}));
lazyUrls.forEach((url, img) => seen.observe(img));
</script>"""


def _results_page(query: str, page: int, products: list[Product], last: bool, next_class: str) -> str:
    tiles = "".join(_tile(product) for product in products)
    if any(product.lazy for product in products):
        tiles = '<div style="height: 2500px">sponsored banner</div>' + tiles
    q = quote(query).replace("%20", "+")
    next_href = f"/s?k={q}&amp;page={page + 1}&amp;ref=sr_pg_{page}"
    pagination = (
        '<span class="s-pagination-item s-pagination-next s-pagination-disabled">Next</span>'
        if last
        else f'<a class="s-pagination-item {next_class}" href="{next_href}">Next</a>'
    )
    return f"""<!doctype html><html><head><title>Amazon.in : {html.escape(query)}</title></head><body>
<div class="s-main-slot s-result-list s-search-results">
  <div data-asin="" data-component-type="s-messaging-widget" class="s-result-item">Results</div>
  {tiles}
</div>
<div class="s-pagination-container">{pagination}</div>
{_LAZY_LOADER}
</body></html>"""


_SPECIAL_PAGES = {
    "captcha": """<!doctype html><html><body><h4>Enter the characters you see below</h4>
<p>Sorry, we just need to make sure you're not a robot.</p>
<form method="get" action="/errors/validateCaptcha"><input id="captchacharacters" name="field-keywords"></form>
</body></html>""",
    "changed-layout": """<!doctype html><html><body><main class="results-grid">
<article class="product-card" data-product-id="B0NEW00001"><img src="/img/t2.jpg"><h3>New look</h3></article>
</main></body></html>""",
    "no-results": """<!doctype html><html><body><div class="s-main-slot">
<div class="s-no-results-result">No results for your search query.</div></div></body></html>""",
}


@dataclass
class ShopSite:
    """The running server; ``requests`` logs (path with query, User-Agent) of every request."""

    base_url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    hold_path: str | None = None  # a request for it blocks until ``release`` is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    flaky_failures: int = 0  # /img/flaky.jpg answers 503 this many times first
    busy_searches: dict[str, int] = field(default_factory=dict)  # query -> 503 answers before its page 1
    next_link_class: str = "s-pagination-next"  # another name: a shop that renamed its "next" link
    trickle_s: float = 0.0  # /img/trickle.jpg sends its body one byte per this many seconds
    images: dict[str, tuple[str, bytes]] = field(default_factory=_images)
    catalogue: dict[str, list[list[Product] | str]] = field(default_factory=lambda: CATALOGUE)

    def paths(self, prefix: str = "") -> list[str]:
        return [path for path, _ in self.requests if path.startswith(prefix)]

    def page(self, target: str) -> tuple[int, str, bytes]:
        parts = urlsplit(target)
        if parts.path == "/robots.txt":
            return 200, "text/plain", ROBOTS_TXT.encode()
        if parts.path == "/s":
            args = parse_qs(parts.query)
            pages = self.catalogue.get(args.get("k", [""])[0])
            number = int(args.get("page", ["1"])[0])
            if pages is None or not 1 <= number <= len(pages):
                return 404, "text/html", b"<html><body>no such page</body></html>"
            content = pages[number - 1]
            if self.busy_searches.get(args["k"][0], 0) > 0 and number == 1:
                self.busy_searches[args["k"][0]] -= 1
                return 503, "text/html", b"<html><body>Service Unavailable. Please try again later.</body></html>"
            if isinstance(content, str):
                return 200, "text/html; charset=utf-8", _SPECIAL_PAGES[content].encode()
            body = _results_page(args["k"][0], number, content, number == len(pages), self.next_link_class)
            return 200, "text/html; charset=utf-8", body.encode()
        if parts.path.startswith("/img/busy-"):
            return 503, "text/plain", b"busy"
        if parts.path == "/img/flaky.jpg" and self.flaky_failures > 0:
            self.flaky_failures -= 1
            return 503, "text/plain", b"busy"
        if parts.path in self.images:
            content_type, body = self.images[parts.path]
            return 200, content_type, body
        return 404, "text/plain", b"not found"


def serve(site: ShopSite) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            site.requests.append((self.path, self.headers.get("User-Agent", "")))
            if site.hold_path and self.path == site.hold_path:
                site.held.set()
                site.release.wait(60)
            status, content_type, body = site.page(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            if self.path == "/img/trickle.jpg" and site.trickle_s:
                with contextlib.suppress(ConnectionError):  # until the client gives up and hangs up
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(site.trickle_s)
            else:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up early is normal here
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


APPAREL = '{"jeans": ["men jeans"], "trousers": ["men trousers"], "saree": ["saree"]}'


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def outcome(rows: list[dict[str, str]], base_url: str) -> dict[str, tuple[str, str]]:
    """image path -> (status, reason), the shape of shop_site.EXPECTED."""
    return {row["image_url"].removeprefix(base_url): (row["status"], row["reason"]) for row in rows}


def image_files(out: Path) -> set[str]:
    return {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()} - {"manifest.csv", ".lock"}
