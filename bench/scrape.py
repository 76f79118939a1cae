"""Scraper benchmark: images per minute and peak memory, against the fixture shop on 127.0.0.1.

    .venv/bin/python bench/scrape.py [--pages 4] [--per-page 24] [--polite-pages 2] [--json OUT]

Two runs of ``python -m scraper`` (a subprocess, so its browser is measured with it), each into a
fresh folder, every tile a distinct product photo:
  * politeness delays set to zero (page delay 0 s, host interval 0 s): the engine's own speed;
  * the default politeness (page delay 3 s, one request per second per host), on fewer pages.
Images/min counts saved images over the whole run, browser start included. Memory is sampled every
0.2 s over the scraper's process tree (scraper, chromedriver, Chromium): peak RSS summed (counts
shared pages once per process, an upper bound) and peak PSS summed (shared pages split fairly).
Not a test: it prints numbers (and writes JSON) for docs/scraping.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scraper.shop_site import LOOPBACK_ONLY, Product, ShopSite, encode, picture, serve  # noqa: E402


def benchmark_shop(pages: int, per_page: int) -> ShopSite:
    """One query, ``pages`` pages of ``per_page`` distinct 300x380 product photos (shop thumbnail size)."""
    site = ShopSite(images={}, catalogue={})
    results: list[list[Product] | str] = []
    for page in range(pages):
        products = []
        for slot in range(per_page):
            number = page * per_page + slot
            path = f"/img/bench-{number}.jpg"
            site.images[path] = ("image/jpeg", encode(picture(1000 + number, (300, 380)), quality=90))
            products.append(Product(f"B0BENCH{number:03d}", path))
        results.append(products)
    site.catalogue["bench"] = results
    return site


def _tree(root: int) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                pids += map(int, children)
                frontier += map(int, children)
        except OSError:
            continue
    return pids


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def run_scrape(site: ShopSite, images: int, polite: bool) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="scrape-bench-"))
    argv = [
        *("--classes", '{"jeans": ["bench"]}', "--per-class", str(images), "--out", str(out)),
        *("--base-url", site.base_url, "--browser.extra-args", json.dumps(LOOPBACK_ONLY)),
    ]
    if not polite:
        argv += ["--politeness.page-delay-s", "0", "--politeness.host-interval-s", "0"]
    peak = {"rss": 0, "pss": 0}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "scraper", *argv], cwd=ROOT, stderr=subprocess.DEVNULL)

    def sample() -> None:
        while process.poll() is None:
            usage = [_memory_kib(pid) for pid in _tree(process.pid)]
            peak["rss"] = max(peak["rss"], sum(rss for rss, _ in usage))
            peak["pss"] = max(peak["pss"], sum(pss for _, pss in usage))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    elapsed = time.perf_counter() - started
    sampler.join()
    saved = len(list((out / "jeans").glob("*.jpg")))
    if code != 0 or saved != images:
        raise RuntimeError(f"scrape exited {code} with {saved}/{images} images in {out}")
    return {
        "images": saved,
        "seconds": round(elapsed, 1),
        "images_per_min": round(saved / elapsed * 60, 1),
        "peak_rss_mib": round(peak["rss"] / 1024),
        "peak_pss_mib": round(peak["pss"] / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=4, help="result pages for the no-delay run")
    parser.add_argument("--per-page", type=int, default=24, help="tiles per page (Amazon shows 16 to 60)")
    parser.add_argument("--polite-pages", type=int, default=2, help="result pages for the default-politeness run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    site = benchmark_shop(args.pages, args.per_page)
    server = serve(site)
    try:
        results = {
            "no_delay": run_scrape(site, args.pages * args.per_page, polite=False),
            "default_politeness": run_scrape(site, args.polite_pages * args.per_page, polite=True),
        }
    finally:
        server.shutdown()
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    for name, figures in results.items():
        print(f"{name:20s} {figures}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
