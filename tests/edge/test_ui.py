"""The commissioning page, served by the real daemon and looked at in real headless Chromium."""

from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import os
import re
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from demo.conveyor import write_conveyor_clip
from demo.line import Line, write_line_clip
from tests.edge.daemon_helpers import garments, scrape, start_daemon, static_clip, terminate, write_config
from tests.edge.test_config_cli import run_cli
from tests.ports import free_port

pytest.importorskip("starlette", reason="the page needs the ui extra")
pytest.importorskip("selenium.webdriver", reason="the page is tested in Chromium through Selenium")


ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def page_daemon(tmp_path: Path, mosquitto, color_bundle: Path, wait_until):
    """The daemon on a looping belt clip of coloured garments, its page on a free port; yields the base URL."""
    config, base = page_config(tmp_path, mosquitto, color_bundle)
    daemon = start_daemon(config, {"STATE_DIRECTORY": str(tmp_path / "state")})
    wait_until(lambda: page_status(base, None), timeout=30, what="the page")
    yield base
    terminate(daemon)


def page_config(
    tmp_path: Path, mosquitto, color_bundle: Path, clip: Path | None = None, **sections: dict
) -> tuple[Path, str]:
    """A presence-mode config on a looping 320x240 belt clip (`clip`, else a clean one of three garments), every
    crop kept as unsure unless `sections` say otherwise; (config, the page's URL)."""
    if clip is None:
        order = ["red", "green", "blue"]
        photos = garments(tmp_path)
        images = [photos[label] for label in order]
        clip = tmp_path / "belt.avi"
        write_conveyor_clip(clip, images, order, fps=15, size=(320, 240), gap_frames=5, crossing_s=1.0, lead_frames=15)
    port = free_port()
    tables = {
        "camera": {"realtime": True, "loop": True, "roi": {"x": 0, "y": 0, "width": 1, "height": 1}},
        "ui": {"enabled": True, "port": port},
        "crops": {"directory": str(tmp_path / "crops"), "below_confidence": 1.0},  # every crop is "unsure"
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    config = write_config(tmp_path, mosquitto, color_bundle, clip, **tables)
    return config, f"http://127.0.0.1:{port}"


def get(url: str, password: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"plc:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_live_page_shows_the_belt_the_boxes_and_each_decision_with_its_crop(page_daemon: str, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_daemon + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    live = wait.until(lambda d: d.find_element("id", "live"))
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", live) == 320)
    first = live.get_attribute("src")
    wait.until(lambda d: live.get_attribute("src") != first)  # the frame refreshes by itself
    wait.until(lambda d: d.find_element("id", "camera").text == "camera streaming")
    # the table is redrawn every second: read it in one script, never through element handles that go stale
    loaded_crops = "return [...document.querySelectorAll('#decisions img')].filter(i => i.naturalWidth > 0).length"
    wait.until(lambda d: d.execute_script(loaded_crops) > 0)
    labels = browser.execute_script(
        "return [...document.querySelectorAll('#decisions tr')].map(r => r.cells[2].textContent)"
    )
    alts = browser.execute_script("return [...document.querySelectorAll('#decisions img')].map(i => i.alt)")
    assert labels and set(labels) <= {"red", "green", "blue"}
    assert set(alts) == {"the crop the model saw"}
    # the status (with the last decision) is fetched on its own second: it may trail the table by one refresh
    wait.until(lambda d: d.find_element("id", "last").text.startswith("Last: "))
    states = {"Now: empty belt.", "Now: 1 item in view.", "Now: 2 items in view."}  # learnt the belt by now
    wait.until(lambda d: d.find_element("id", "belt").text in states)
    if os.environ.get("SORTLINE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "ui-live.png"))
    assert_nothing_blocked(browser)


def assert_nothing_blocked(browser) -> None:
    """The page works under its own Content-Security-Policy: the console shows nothing it refused."""
    blocked = [
        entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]
    ]
    assert blocked == []


def test_the_stats_plot_the_last_hour_and_the_decisions_filter_by_label(page_daemon: str, browser) -> None:
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_daemon + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    per_label = "return [...document.querySelectorAll('#per-label tr')].map(r => r.dataset.label)"
    wait.until(lambda d: set(d.execute_script(per_label) or []) >= {"red", "green"})
    plotted = "return [...document.querySelectorAll('#plots .uplot')].map(p => p.querySelector('.u-title').textContent)"
    assert browser.execute_script(plotted) == ["frames per second", "classification (ms)", "decision latency (ms)"]
    assert browser.find_element("id", "stats-state").text.startswith("camera streaming; broker connected")
    points = json.loads(get(page_daemon + "/api/stats")[1])
    assert len(points) >= 2 and points[-1]["fps"] > 0
    # presence mode classifies only while an item is in view: an interval of empty belt has no classification time
    assert any(point["inference_ms"]["p50"] is not None for point in points)

    Select(browser.find_element("id", "filter")).select_by_value("green")
    shown = "return [...document.querySelectorAll('#decisions tr')].map(r => r.cells[2].textContent)"
    rows = wait.until(lambda d: (rows := d.execute_script(shown)) and set(rows) == {"green"} and rows)
    assert rows
    if os.environ.get("SORTLINE_SCREENSHOTS"):
        browser.execute_script("document.getElementById('stats-section').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOTS / "ui-stats.png"))
    assert_nothing_blocked(browser)  # the plots draw under the page's Content-Security-Policy


def test_the_page_fits_a_phone_screen(page_daemon: str, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    desktop = browser.get_window_size()
    browser.set_window_size(390, 844)  # a phone held upright
    try:
        browser.get(page_daemon + "/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#decisions tr').length") > 0)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#plots .uplot').length") == 3)
        sideways = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert sideways <= 0, f"the page is {sideways} px wider than the screen"
        live = browser.find_element("id", "live")
        assert 300 <= live.size["width"] <= 390
        if os.environ.get("SORTLINE_SCREENSHOTS"):
            browser.save_screenshot(str(SCREENSHOTS / "ui-phone.png"))
    finally:
        browser.set_window_size(desktop["width"], desktop["height"])


def test_unsure_crops_are_labelled_in_bulk_on_the_page_and_exported(page_daemon: str, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_daemon + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    tiles = "return [...document.querySelectorAll('#review figure')].map(f => f.dataset.crop)"
    chosen = wait.until(lambda d: (found := d.execute_script(tiles)) and len(found) >= 2 and found[:2])
    for crop_id in chosen:  # found afresh at each click: the grid is redrawn every few seconds
        browser.execute_script("document.querySelector(`#review figure[data-crop='${arguments[0]}']`).click()", crop_id)
    if os.environ.get("SORTLINE_SCREENSHOTS"):
        browser.execute_script("document.getElementById('review-section').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOTS / "ui-review.png"))
    browser.find_element("css selector", "#label-buttons button[data-label='green']").click()
    wait.until(lambda d: not set(chosen) & set(d.execute_script(tiles)))  # labelled: gone from the review

    status, archive = get(page_daemon + "/api/labelled.tar.gz")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        manifest = list(csv.DictReader(io.StringIO(tar.extractfile("labelled/manifest.csv").read().decode())))
    assert {f"labelled/green/{crop.split('/')[1]}" for crop in chosen} <= set(names)
    assert [row["label"] for row in manifest] == ["green", "green"]
    assert {row["model_said"] for row in manifest} <= {"red", "green", "blue"}
    assert all(row["model"].startswith("color-test:1:") for row in manifest)


def test_a_confident_decision_is_sent_to_review_from_the_decisions_table(
    tmp_path: Path, mosquitto, color_bundle: Path, browser, wait_until
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    config, base = page_config(tmp_path, mosquitto, color_bundle, crops={"below_confidence": 0.0})  # none unsure
    daemon = start_daemon(config)
    try:
        wait_until(lambda: page_status(base, None), timeout=30, what="the page")
        browser.get(base + "/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        first = "return document.querySelector('#decisions tr button') && document.querySelector('#decisions tr')"
        wait.until(lambda d: d.execute_script(first))
        assert json.loads(get(base + "/api/crops")[1])["crops"] == []
        item = browser.execute_script(  # one script: the table is redrawn every second
            "const row = document.querySelector('#decisions tr'); row.querySelector('button').click();"
            " return row.dataset.item"
        )
        tile = wait.until(lambda d: d.execute_script("return document.querySelector('#review figure')"))
        crops = json.loads(get(base + "/api/crops")[1])["crops"]
        assert [crop["item_id"] for crop in crops] == [item] and tile.get_attribute("data-crop") == crops[0]["id"]
        saved = cv2.imread(str(tmp_path / "crops" / crops[0]["id"]))
        assert saved is not None and max(saved.shape[:2]) <= 256 and crops[0]["confidence"] > 0.5
        assert get(base + "/api/crops/nobody-1")[0] == 405  # a GET changes nothing
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        connection.request("POST", "/api/crops/nobody-1", headers={"Origin": base})
        assert connection.getresponse().status == 404
        connection.close()
    finally:
        terminate(daemon)


def test_the_threshold_what_if_follows_the_slider(page_daemon: str, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_daemon + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    counts = "return [...document.querySelectorAll('#what-if tr')].map(r => [...r.cells].map(c => c.textContent))"
    wait.until(lambda d: d.execute_script(counts))  # decisions made and decided again at the live threshold
    browser.execute_script(
        "const s = document.getElementById('threshold'); s.value = 1; s.dispatchEvent(new Event('input'));"
    )
    # at 1.0 every decision would be a reject: nothing unchanged that was not a reject already
    rows = wait.until(lambda d: (rows := d.execute_script(counts)) and all(r[1] == "0" for r in rows) and rows)
    assert {row[0] for row in rows} <= {"red", "green", "blue"} and sum(int(row[2]) for row in rows) > 0
    assert browser.find_element("id", "threshold-value").text == "1.00"
    assert get(page_daemon + "/api/what-if?threshold=2")[0] == 400


def test_a_roi_drawn_on_the_live_frame_is_used_kept_across_restarts_and_shown_by_check_config(
    tmp_path: Path, mosquitto, color_bundle: Path, browser, wait_until
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    config, base = page_config(tmp_path, mosquitto, color_bundle)
    state = {"STATE_DIRECTORY": str(tmp_path / "state")}
    daemon = start_daemon(config, state)
    try:
        wait_until(lambda: page_status(base, None), timeout=30, what="the page")
        browser.get(base + "/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        live = wait.until(lambda d: d.find_element("id", "live"))
        wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", live) == 320)
        wait.until(lambda d: "from the config" in d.find_element("id", "roi-state").text)
        width, height = live.size["width"], live.size["height"]
        # drag from 10 %, 20 % of the frame to 90 %, 80 % (offsets count from the image's centre)
        step = (round(0.4 * width), round(0.3 * height))
        drag = ActionChains(browser).move_to_element_with_offset(live, -step[0], -step[1]).click_and_hold()
        drag.move_by_offset(*step).move_by_offset(*step).release().perform()
        browser.find_element("id", "roi-save").click()
        wait.until(lambda d: "drawn on this page, kept in" in d.find_element("id", "roi-state").text)
        # taken by the frame loop once the belt was empty: the daemon now looks at the drawn region
        roi = wait_until(lambda: (box := json.loads(page_status(base, None))["roi"]) != [0, 0, 320, 240] and box, 30)
        assert roi == pytest.approx([32, 48, 288, 192], abs=4)
        kept = json.loads((tmp_path / "state" / "roi.json").read_text())["roi"]
        assert kept["unit"] == "fraction" and kept["x"] == pytest.approx(0.1, abs=0.012)
        if os.environ.get("SORTLINE_SCREENSHOTS"):
            browser.save_screenshot(str(SCREENSHOTS / "ui-roi.png"))
    finally:
        terminate(daemon)

    checked = run_cli("--config", str(config), "check-config", env=state)
    assert checked.returncode == 0, checked.stderr
    assert f"(from the page, kept in {tmp_path / 'state' / 'roi.json'})" in checked.stderr

    daemon = start_daemon(config, state)  # restarted: the drawn region is used from the first frame
    try:
        wait_until(lambda: (status := page_status(base, None)) and json.loads(status)["roi"] == roi, timeout=30)
        browser.get(base + "/")
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        wait.until(lambda d: d.find_element("id", "roi-reset").is_displayed())
        browser.find_element("id", "roi-reset").click()
        wait_until(lambda: json.loads(page_status(base, None))["roi"] == [0, 0, 320, 240], timeout=30)
        assert not (tmp_path / "state" / "roi.json").exists()
    finally:
        terminate(daemon)


def test_a_roi_that_leaves_no_room_or_the_frame_is_refused(page_daemon: str, wait_until) -> None:
    host = page_daemon.removeprefix("http://")
    wait_until(lambda: json.loads(page_status(page_daemon, None))["frame"]["width"], timeout=30, what="a frame")
    for body, reason in (
        ({"x": 0.5, "y": 0, "width": 0.01, "height": 1}, "leaves no usable area in a 320x240 frame"),
        ({"x": 0.5, "y": 0, "width": 0.9, "height": 1}, "x + width <= 1"),
        ({"x": 0.1, "y": 0, "width": 0.5, "height": 1, "unit": "px"}, "no unit"),
        ([1, 2], "expected"),
    ):
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("POST", "/api/roi", body=json.dumps(body), headers={"Origin": page_daemon})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 400 and reason in answer["error"], answer
        connection.close()
    assert json.loads(get(page_daemon + "/api/roi")[1])["source"] == "config"


def test_labelling_refuses_crops_and_labels_that_are_not_there(page_daemon: str) -> None:
    host = page_daemon.removeprefix("http://")
    for body, reason in (
        ({"crops": ["../../etc/passwd"], "label": "green"}, "no unsure crop '../../etc/passwd'"),
        ({"crops": [], "label": "purple"}, "unknown label 'purple'"),
        ({"crop": "x"}, "expected"),
    ):
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("POST", "/api/labels", body=json.dumps(body), headers={"Origin": page_daemon})
        response = connection.getresponse()
        assert response.status == 400 and reason in json.loads(response.read())["error"]
        connection.close()


def test_crop_ids_are_looked_up_never_used_as_paths(page_daemon: str) -> None:
    host = page_daemon.removeprefix("http://")
    paths = (
        "/crops/../../etc/passwd.jpg",
        "/crops/..%2F..%2Fetc%2Fpasswd.jpg",
        "/crops/%00.jpg",
        "/review/../../etc/passwd",
    )
    for path in paths:
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("GET", path)  # sent as is, not normalised by the client
        response = connection.getresponse()
        assert response.status == 404, path
        assert b"root:" not in response.read()
        connection.close()


def test_beyond_loopback_the_page_needs_a_password_and_refuses_cross_site_posts(
    tmp_path: Path, mosquitto, color_bundle: Path, wait_until
) -> None:
    clip = static_clip(tmp_path / "belt.avi", (70, 70, 70))
    port = free_port()
    config = write_config(
        tmp_path, mosquitto, color_bundle, clip, camera={"realtime": True, "loop": True},
        ui={"enabled": True, "host": "0.0.0.0", "port": port},
    )  # fmt: skip
    refused = run_cli("--config", str(config), "check-config")
    assert refused.returncode == 2
    assert "ui: Value error, the page is served on 0.0.0.0, beyond this device: set a password" in refused.stderr
    (tmp_path / "env").mkdir()  # the host from the environment instead: the error must say so
    loopback = write_config(tmp_path / "env", mosquitto, color_bundle, clip, ui={"enabled": True, "port": port})
    refused = run_cli("--config", str(loopback), "check-config", env={"SORTLINE_UI__HOST": "0.0.0.0"})
    assert "set a password" in refused.stderr and "[from environment SORTLINE_UI__HOST" in refused.stderr

    password = "line-7-secret"
    daemon = start_daemon(config, {"SORTLINE_UI__PASSWORD": password})
    try:
        base = f"http://127.0.0.1:{port}"
        status = wait_until(lambda: page_status(base, password), timeout=30, what="the page")
        assert get(base + "/")[0] == 401  # no password, no page
        assert get(base + "/", "wrong")[0] == 401
        page = get(base + "/", password)
        assert page[0] == 200 and password.encode() not in page[1] + status
        assert json.loads(status)["device"] == "line-1"
        connection = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=10)
        auth = "Basic " + base64.b64encode(f"plc:{password}".encode()).decode()
        connection.request(
            "POST", "/api/status", body=b"{}", headers={"Authorization": auth, "Origin": "http://evil.test"}
        )
        assert connection.getresponse().status == 403  # authorised, but sent from another site's page
        connection.close()
        assert_the_guard_holds(port, auth)
    finally:
        terminate(daemon)


def assert_the_guard_holds(port: int, auth: str) -> None:
    """Security headers on every answer; no other site's name (DNS rebinding), no huge body, and no guessing."""

    def ask(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=10)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    for answer in (ask("GET", "/", {"Authorization": auth}), ask("GET", "/", {})):
        assert answer.status in (200, 401)
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert (answer.headers["X-Frame-Options"], answer.headers["X-Content-Type-Options"]) == ("DENY", "nosniff")

    rebound = {"Host": "evil.example", "Origin": "http://evil.example", "Authorization": auth}
    assert ask("POST", "/api/roi", rebound, b'{"x": 0, "y": 0, "width": 0.5, "height": 0.5}').status == 421
    assert ask("GET", "/api/status", {**rebound, "Host": f"localhost:{port}"}).status == 200

    huge = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=10)
    huge.putrequest("POST", "/api/roi")
    for name, value in {
        "Authorization": auth,
        "Origin": f"http://127.0.0.1:{port}",
        "Content-Length": "52428800",
    }.items():
        huge.putheader(name, value)
    huge.endheaders(b"{" * 65536)  # 64 KB of the 50 MB said: the answer comes without the rest
    assert huge.getresponse().status == 413
    huge.close()

    wrong = "Basic " + base64.b64encode(b"plc:guess").decode()
    assert [ask("GET", "/api/status", {"Authorization": wrong}).status for _ in range(10)] == [401] * 10
    locked = ask("GET", "/api/status", {"Authorization": auth})  # the right password, too late
    assert locked.status == 429 and 250 <= int(locked.headers["Retry-After"]) <= 300


def page_status(base: str, password: str | None) -> bytes | None:
    """/api/status, or None while the page is not up yet."""
    try:
        code, body = get(base + "/api/status", password)
    except OSError:
        return None
    return body if code == 200 else None


def test_the_reference_line_and_the_scale_are_marked_on_the_live_frame_and_used(
    page_daemon: str, browser, tmp_path: Path, wait_until
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    # the travel is learned from the first items; the reference line is placed along it
    wait_until(lambda: json.loads(page_status(page_daemon, None))["direction"] == [0, 1], timeout=60, what="travel")
    browser.get(page_daemon + "/")
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    live = wait.until(lambda d: d.find_element("id", "live"))
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", live) == 320)
    wait.until(
        lambda d: "0.50 of the region along the travel (from the config)" in d.find_element("id", "belt-state").text
    )
    width = live.size["width"]

    def click_at(share_x: float) -> None:  # offsets count from the image's centre
        ActionChains(browser).move_to_element_with_offset(live, round((share_x - 0.5) * width), 0).click().perform()

    browser.find_element("id", "reference-place").click()
    click_at(0.25)
    wait.until(
        lambda d: "0.25 of the region along the travel (set on this page)" in d.find_element("id", "belt-state").text
    )
    browser.find_element("id", "scale-mm").send_keys("500")
    browser.find_element("id", "scale-measure").click()
    click_at(0.1)
    click_at(0.6)  # 500 mm over half of 320 pixels
    wait.until(lambda d: "3.1" in d.find_element("id", "belt-state").text)

    kept = json.loads((tmp_path / "state" / "belt.json").read_text())
    assert kept["reference_line"] == pytest.approx(0.25, abs=0.02)
    assert kept["mm_per_px"] == pytest.approx(500 / 160, rel=0.03)
    # decisions of items crossing from now on carry the belt's speed in mm/s
    decided = wait_until(
        lambda: [d for d in json.loads(get(page_daemon + "/api/decisions")[1]) if d["belt_speed_mm_s"]], timeout=60
    )
    assert decided[0]["belt_speed_mm_s"] == pytest.approx(decided[0]["belt_speed_px_s"] * kept["mm_per_px"], rel=0.01)
    if os.environ.get("SORTLINE_SCREENSHOTS"):
        browser.save_screenshot(str(SCREENSHOTS / "ui-belt.png"))

    wait.until(lambda d: d.find_element("id", "belt-reset").is_displayed())
    browser.find_element("id", "belt-reset").click()
    wait.until(lambda d: "(from the config)" in d.find_element("id", "belt-state").text)
    assert not (tmp_path / "state" / "belt.json").exists()


def test_the_page_says_when_the_exposure_smears_the_items_and_how_short_it_should_be(
    tmp_path: Path, mosquitto, color_bundle: Path, browser, wait_until
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    # a long exposure: the belt moves 9 px while a frame is exposed (edge/motion_blur.py)
    line = Line(belt="green-pvc", size=(320, 240), speed_px_s=180.0, blur_px=9, noise=6.0)
    order = ["red", "green", "blue"]
    photos = garments(tmp_path)
    clip = tmp_path / "smeared.avi"
    write_line_clip(clip, [photos[label] for label in order], order, line, seed=1)
    metrics_port = free_port()
    config, base = page_config(tmp_path, mosquitto, color_bundle, clip, metrics={"enabled": True, "port": metrics_port})
    daemon = start_daemon(config, {"STATE_DIRECTORY": str(tmp_path / "state")})
    try:
        wait_until(lambda: page_status(base, None), timeout=30, what="the page")
        browser.get(base + "/")
        said = WebDriverWait(browser, 90, poll_frequency=0.2).until(
            lambda d: d.find_element("id", "motion-blur").text or None
        )
        smear = float(re.search(r"moves about ([0-9.]+) px", said).group(1))
        assert abs(smear - 9) <= 1.0, said
        assert re.search(r"Set the camera's exposure to 1/\d+ s or shorter", said), said
        assert browser.find_element("id", "motion-blur").get_attribute("class") == "warning"
        assert abs(scrape(metrics_port)["sortline_motion_blur_px"] - 9) <= 1.0  # and /metrics has it
        if os.environ.get("SORTLINE_SCREENSHOTS"):
            warning = browser.find_element("id", "motion-blur")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", warning)
            browser.save_screenshot(str(SCREENSHOTS / "ui-motion-blur.png"))
    finally:
        terminate(daemon)


def test_a_belt_calibration_that_makes_no_sense_is_refused(page_daemon: str, wait_until) -> None:
    host = page_daemon.removeprefix("http://")
    wait_until(lambda: json.loads(page_status(page_daemon, None))["frame"]["width"], timeout=30, what="a frame")
    for body, reason in (
        ({"scale": {"from": {"x": 0.1, "y": 0.5}, "to": {"x": 0.6, "y": 0.5}, "mm": -5}}, "scale.mm"),
        ({"scale": {"from": {"x": 0.1, "y": 0.5}, "to": {"x": 0.1, "y": 0.5}, "mm": 500}}, "10 pixels apart"),
        ({"reference": {"x": 1.5, "y": 0.5}}, "fractions of the frame"),
        ({"mm_per_px": 0}, "mm_per_px must be above 0"),
        ({"reference_line": 1.0}, "inside the region"),
        ([1, 2], "expected"),
    ):
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("POST", "/api/belt", body=json.dumps(body), headers={"Origin": page_daemon})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 400 and reason in answer["error"], (body, answer)
        connection.close()
    assert json.loads(get(page_daemon + "/api/belt")[1])["from_page"] == []
