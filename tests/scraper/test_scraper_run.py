"""Full scrapes of the fixture shop with real headless Chromium: the output folder and manifest, exactly."""

from __future__ import annotations

import hashlib
import re

from PIL import Image

from scraper.cli import main
from tests.scraper.shop_site import (
    APPAREL,
    EXPECTED,
    HOSTILE_ID,
    HOSTILE_IMAGE,
    ShopSite,
    image_files,
    outcome,
    read_rows,
)


def test_full_scrape_saves_checked_unique_images_and_records_every_url(shop: ShopSite, scrape_args, tmp_path, caplog):
    out = tmp_path / "out"

    code = main(scrape_args(APPAREL, "--per-class", "20"))

    assert code == 1  # saree was stopped by the CAPTCHA on its page 2
    assert "CAPTCHA" in caplog.text and "class 'saree' stopped" in caplog.text
    rows = read_rows(out)
    assert outcome(rows, shop.base_url) == EXPECTED
    assert len(rows) == len(EXPECTED)  # every URL once
    saved = [row for row in rows if row["status"] == "saved"]
    assert image_files(out) == {row["file"] for row in saved}
    for row in saved:
        path = out / row["file"]
        assert path.parent == out / row["label"]
        assert path.name == row["sha256"][:16] + ".jpg"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            assert image.size == (int(row["width"]), int(row["height"]))
    by_path = {row["image_url"].removeprefix(shop.base_url): row for row in rows}
    # srcset: the largest candidate, whether described by density (2x) or width (640w)
    assert by_path["/img/j1.jpg"]["width"] == "240"
    assert by_path["/img/t1-640.jpg"]["width"] == "320"
    assert "/img/j1-small.jpg" not in shop.paths() and "/img/t1-320.jpg" not in shop.paths()
    # duplicates point at the file they duplicate, across classes too
    assert by_path["/img/j6-same-as-j1.jpg"]["detail"] == by_path["/img/j1.jpg"]["file"]
    assert by_path["/img/j7-near-j5.jpg"]["detail"] == by_path["/img/j5.jpg"]["file"]
    assert by_path["/img/t3-same-as-j5.jpg"]["detail"] == by_path["/img/j5.jpg"]["file"]
    # the hostile tile: recorded verbatim, stored under a hash name inside its label folder
    hostile = by_path[HOSTILE_IMAGE]
    assert hostile["product_id"] == HOSTILE_ID
    assert hostile["title"] == 'Slim "fit", comma, newline <b>bold</b>'
    assert hostile["file"].startswith("jeans/") and ".." not in hostile["file"]
    assert not (tmp_path / "tmp").exists()
    assert by_path["/img/j1.jpg"]["product_url"] == f"{shop.base_url}/Product-B0JEANS001/dp/B0JEANS001/ref=sr_1"
    assert {row["site"] for row in rows} == {"amazon"}
    # every request came with the honest User-Agent, and robots.txt was read once
    assert {agent for _, agent in shop.requests} == {agent for _, agent in shop.requests if "sortline-scraper" in agent}
    assert shop.paths("/robots.txt") == ["/robots.txt"]
    assert "/private/j12.jpg" not in shop.paths()
    # pagination was followed to the last page of each query
    assert set(shop.paths("/s?")) >= {"/s?k=men+jeans&page=3&ref=sr_pg_2", "/s?k=saree&page=2&ref=sr_pg_1"}

    # A second run changes nothing and downloads nothing.
    before = (out / "manifest.csv").read_bytes()
    shop.requests.clear()
    assert main(scrape_args(APPAREL, "--per-class", "20")) == 1
    assert (out / "manifest.csv").read_bytes() == before
    assert shop.paths("/img/") == [] and shop.paths("/private/") == []


def test_stops_at_the_target_without_loading_more_pages(shop: ShopSite, scrape_args, tmp_path, caplog):
    out = tmp_path / "out"
    assert main(scrape_args('{"jeans": ["men jeans"]}', "--per-class", "2")) == 0
    saved = [row for row in read_rows(out) if row["status"] == "saved"]
    assert [row["image_url"].removeprefix(shop.base_url) for row in saved] == ["/img/j1.jpg", "/img/j2.jpg"]
    assert len(image_files(out)) == 2
    assert not any("page=2" in path for path in shop.paths("/s?"))
    assert "complete" in caplog.text


def test_a_higher_target_later_resumes_and_continues_to_the_next_pages(shop: ShopSite, scrape_args, tmp_path):
    out = tmp_path / "out"
    assert main(scrape_args('{"jeans": ["men jeans"]}', "--per-class", "2")) == 0
    first = shop.paths("/img/")
    shop.requests.clear()
    assert main(scrape_args('{"jeans": ["men jeans"]}', "--per-class", "3")) == 0
    assert not set(first) & set(shop.paths("/img/"))  # nothing fetched twice
    saved = [row["image_url"].removeprefix(shop.base_url) for row in read_rows(out) if row["status"] == "saved"]
    assert saved == ["/img/j1.jpg", "/img/j2.jpg", "/img/j5.jpg"]


def test_dry_run_lists_candidates_and_fetches_and_writes_nothing(shop: ShopSite, scrape_args, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(scrape_args('{"trousers": ["men trousers"]}', "--dry-run")) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(fields[0], fields[2], fields[3].removeprefix(shop.base_url)) for fields in listed] == [
        ("trousers", "B0TROUS001", "/img/t1-640.jpg"),
        ("trousers", "B0TROUS002", "/img/t2.jpg"),
        ("trousers", "B0TROUS003", "/img/t3-same-as-j5.jpg"),
    ]
    assert shop.paths("/img/") == []
    assert not out.exists()


def test_changed_layout_stops_the_class_naming_the_selector(shop: ShopSite, scrape_args, tmp_path, caplog):
    code = main(scrape_args('{"jeans": ["new layout"], "trousers": ["men trousers"]}'))
    assert code == 1
    assert "tile selector \"div[data-component-type='s-search-result'][data-asin]:not([data-asin=''])\"" in caplog.text
    assert "layout has probably changed" in caplog.text
    rows = read_rows(tmp_path / "out")  # the other class still ran
    assert {row["label"] for row in rows} == {"trousers"}


def test_search_results_that_are_empty_end_the_class_quietly(shop: ShopSite, scrape_args, tmp_path, caplog):
    assert main(scrape_args('{"jeans": ["nothing"]}')) == 0
    assert "ran out of search results" in caplog.text
    assert image_files(tmp_path / "out") == set()


def test_an_image_host_that_keeps_failing_stops_the_class_and_nothing_is_recorded(
    shop: ShopSite, scrape_args, tmp_path, caplog
):
    assert main(scrape_args('{"jeans": ["busy"]}')) == 1
    assert "5 image downloads in a row failed" in caplog.text
    assert re.search(r"jeans +0 / 200 +5  stopped: image host down", caplog.text)
    assert len(shop.paths("/img/busy-")) == 10  # five images, one retry each, then no more
    assert read_rows(tmp_path / "out") == []  # temporary failures: a rerun tries them again


def test_failed_downloads_are_counted_in_the_final_table(shop: ShopSite, scrape_args, tmp_path, caplog):
    assert main(scrape_args('{"dresses": ["sold out"]}', "--per-class", "5")) == 0
    assert re.search(r"class +saved +failed  outcome\n", caplog.text)
    assert re.search(r"dresses +1 / 5 +2  ran out of search results\n", caplog.text)  # the 404 and the 503
    assert [row["reason"] for row in read_rows(tmp_path / "out")] == ["", "http-404"]  # a rerun retries the 503


def test_robots_txt_is_obeyed_and_can_be_switched_off(shop: ShopSite, scrape_args, tmp_path, caplog):
    assert main(scrape_args('{"jeans": ["blocked"]}')) == 1
    assert "robots.txt disallows" in caplog.text and "/s?k=blocked" in caplog.text
    assert shop.paths("/s?") == []

    out = tmp_path / "allowed"
    shop.requests.clear()
    assert main(scrape_args('{"jeans": ["men jeans"]}', "--no-politeness.obey-robots", out=out)) == 0
    assert outcome(read_rows(out), shop.base_url)["/private/j12.jpg"] == ("saved", "")
    assert shop.paths("/robots.txt") == []


def test_remote_webdriver_url_drives_a_browser_elsewhere(shop: ShopSite, scrape_args, chromedriver_server, tmp_path):
    argv = scrape_args('{"trousers": ["men trousers"]}', "--browser.remote-url", chromedriver_server)
    assert main(argv) == 0
    assert len(image_files(tmp_path / "out")) == 3


def test_existing_images_in_the_folder_count_for_dedup(shop: ShopSite, scrape_args, tmp_path):
    out = tmp_path / "out"
    (out / "trousers").mkdir(parents=True)
    (out / "trousers" / "from-last-year.jpg").write_bytes(shop.images["/img/t2.jpg"][1])
    assert main(scrape_args('{"trousers": ["men trousers"]}')) == 0
    # the same picture, but the scraper's copy would be re-encoded: found by its perceptual hash
    t2 = next(row for row in read_rows(out) if row["image_url"].endswith("/img/t2.jpg"))
    assert (t2["status"], t2["reason"], t2["detail"]) == ("skipped", "near-duplicate", "trousers/from-last-year.jpg")
    assert (out / "trousers" / "from-last-year.jpg").exists()


def test_a_busy_search_page_is_retried_then_reported_with_its_status(shop: ShopSite, scrape_args, tmp_path, caplog):
    retry_fast = ("--browser.page-retries", "2", "--browser.page-retry-backoff-s", "0")
    shop.busy_searches = {"men trousers": 1}  # one 503, then the page
    assert main(scrape_args('{"trousers": ["men trousers"]}', *retry_fast)) == 0
    assert len(shop.paths("/s?k=men+trousers")) == 2
    assert len(image_files(tmp_path / "out")) == 3
    assert "answered HTTP 503; retry 1 of 2" in caplog.text

    shop.requests.clear()
    shop.busy_searches = {"men trousers": 99}  # overloaded for good
    assert main(scrape_args('{"trousers": ["men trousers"]}', *retry_fast, out=tmp_path / "busy")) == 1
    assert len(shop.paths("/s?k=men+trousers")) == 3  # the first try and two retries
    assert "answered HTTP 503 3 times in a row" in caplog.text and "stopped: HTTP 503" in caplog.text
    assert "layout has probably changed" not in caplog.text


def test_a_renamed_next_link_stops_the_class_instead_of_ending_it_quietly(
    shop: ShopSite, scrape_args, tmp_path, caplog
):
    shop.next_link_class = "s-pager-next"
    code = main(scrape_args('{"jeans": ["men jeans"], "trousers": ["men trousers"]}', "--per-class", "20"))
    assert code == 1
    assert "next-page link (a full page, no last-page marker) 'a.s-pagination-next'" in caplog.text
    assert "class 'jeans' stopped" in caplog.text and "class 'trousers' stopped" not in caplog.text
    assert shop.paths("/s?k=men+jeans&page=2") == []
    saved = {row["image_url"].removeprefix(shop.base_url) for row in read_rows(tmp_path / "out") if row["file"]}
    assert saved == {"/img/j1.jpg", "/img/j2.jpg", "/img/t1-640.jpg", "/img/t2.jpg", "/img/t3-same-as-j5.jpg"}
