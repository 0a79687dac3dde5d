"""The live view in a real headless Chromium, fed by the real ``edgecodec serve`` and ``edgecodec edge``.

Proves what a person sees: the page lists the cameras, a tile's picture changes over time, the
figures are filled in, and a camera scrolled out of view is not decoded. Screenshots are saved
(to $EDGECODEC_ARTIFACTS if set, else the test's temporary folder).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
import urllib.request

import cv2
import numpy as np
import pytest

from tests.desktop_processes import free_port, start_edge, start_server, stop, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[dev]')")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
    pytest.mark.timeout(300),
]


@pytest.fixture()
def artifacts(tmp_path):
    folder = pathlib.Path(os.environ.get("EDGECODEC_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def live_server(tmp_path):
    http = free_port()
    server, port = start_server(tmp_path, ("porch", "yard"), "--http", f"127.0.0.1:{http}")
    edges = [start_edge(tmp_path, port, cam, 160, 120, 8) for cam in ("porch", "yard")]
    try:
        yield server, f"http://127.0.0.1:{http}/"
    finally:
        for proc in edges:
            stop(proc)
        stop(server)


@pytest.fixture()
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=520,420"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def api(url: str) -> dict:
    with urllib.request.urlopen(url + "api/cameras", timeout=10) as r:
        return {row["camera"]: row for row in json.load(r)["cameras"]}


def tile_frames(driver, camera: str) -> int:
    return int(driver.execute_script(
        "const t = document.querySelector(`.tile[data-camera='${arguments[0]}']`);"
        "const img = t && t.querySelector('img');"
        "return img && img.complete && img.naturalWidth > 0 ? Number(t.dataset.frames) : 0;", camera))


def picture(driver, camera: str) -> np.ndarray:
    img = driver.find_element("css selector", f".tile[data-camera='{camera}'] img")
    return cv2.imdecode(np.frombuffer(img.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR)


def test_page_shows_live_changing_pictures_and_figures_of_viewed_cameras(live_server, browser, artifacts):
    server, url = live_server
    wait_for(lambda: len(api(url)) == 2, 120, "both cameras to reach the server", server)
    browser.get(url)
    assert browser.title == "edgecodec live view"

    # A small window shows only the first tile: the second camera must not be decoded.
    first = wait_for(lambda: tile_frames(browser, "porch") >= 2, 60, "porch's first pictures", server)
    before = picture(browser, "porch")
    wait_for(lambda: tile_frames(browser, "porch") >= first + 4, 60, "porch's pictures to keep coming", server)
    after = picture(browser, "porch")
    assert before.shape == after.shape and before.std() > 5
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1.0, "the picture did not change"
    rows = api(url)
    # The page counts pictures, the server decodes; a page that re-sends its watch list (the window
    # settling) is offered the current picture again, so the page may count a picture more than once.
    assert rows["porch"]["decoded"] >= 4 and rows["porch"]["viewers"] == 1
    assert rows["yard"]["decoded"] == 0 and rows["yard"]["viewers"] == 0
    assert tile_frames(browser, "yard") == 0
    cv2.imwrite(str(artifacts / "live_view_small_window.png"), cv2.imdecode(
        np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR))

    # Scrolling the second tile into view starts its pictures.
    browser.execute_script("document.querySelector(`.tile[data-camera='yard']`).scrollIntoView()")
    wait_for(lambda: tile_frames(browser, "yard") >= 2, 60, "yard's pictures after scrolling", server)
    browser.set_window_size(1400, 700)
    browser.execute_script("window.scrollTo(0, 0)")
    wait_for(lambda: tile_frames(browser, "porch") >= 2 and tile_frames(browser, "yard") >= 2, 60,
             "both tiles", server)
    time.sleep(1.5)  # one more figures update
    texts = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll(`.tile[data-camera='porch'] dd`)]"
        ".map(d => [d.dataset.field, d.textContent]))")
    assert float(texts["fps"]) > 0 and float(texts["kbps"]) > 0
    assert texts["ratio"].endswith(": 1") and texts["size"] == "160×120" and texts["dropped"].isdigit()
    assert texts["seen"] in ("now", "1 s ago", "2 s ago")
    shot = artifacts / "live_view.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
