"""`ganforge serve` in a real headless browser: Generate, Inpaint, and a bad upload.

Starts the server as a subprocess on a free port of 127.0.0.1 with two tiny runs
(a conditional DCGAN and an inpainting run), drives system Chromium through
Selenium and chromedriver, and saves screenshots under the test's tmp directory
(their paths are printed). Skips only when Gradio, Selenium, Chromium or
chromedriver are missing; `scripts/setup.sh dev` installs them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_runs import wait_until_serving


pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[1] / "src"
# Importing Gradio takes ~5 s of CPU; on a loaded 2-core machine start-up can take much longer.
READY_S = 120
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_browser() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    return (browser, driver) if browser and driver else None


def _skip_reason() -> str | None:
    for mod, extra in (("gradio", "ganforge[serve]"), ("selenium", "selenium")):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install {extra}; scripts/setup.sh dev installs it)"
    if _find_browser() is None:
        return "no Chromium/Chrome with chromedriver found (apt-get install chromium chromium-driver)"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def _png(arr, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny conditional DCGAN run and a tiny inpainting run (2 steps each, seconds)."""
    from serve_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(runs):
    """``ganforge serve`` on a free port of 127.0.0.1; always killed afterwards."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    log = open(runs / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "serve", str(runs / "cgan"), str(runs / "inpaint"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(proc, url, log, READY_S)
        yield url, runs / "server.log"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _find_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1300"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(driver_path))
    try:
        yield d
    finally:
        d.quit()


def _wait(d, cond, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout).until(cond)


def _text(d, elem_id):
    from selenium.webdriver.common.by import By

    return d.find_element(By.ID, elem_id).text


def _fetch_image(src: str) -> np.ndarray:
    from io import BytesIO

    with urllib.request.urlopen(src, timeout=10) as r:
        return np.asarray(Image.open(BytesIO(r.read())))


def _open_tab(d, name):
    from selenium.webdriver.common.by import By

    [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name][0].click()


def _upload(d, elem_id, path):
    """Put a file into a gr.File widget, clearing the file it holds first."""
    from selenium.webdriver.common.by import By

    for button in d.find_elements(By.CSS_SELECTOR, f"#{elem_id} button"):
        if (button.get_attribute("aria-label") or button.get_attribute("title") or "").lower() in ("clear", "remove"):
            d.execute_script("arguments[0].click()", button)  # a refused upload's drop zone may overlay it
            break
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, f"#{elem_id} input[type=file]"))
    d.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def test_the_page_generates_inpaints_and_explains_bad_uploads(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, server_log = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    d = browser
    d.get(url)

    # Generate: a grid appears, and it is the image the handlers make for seed 0.
    _wait(d, lambda d: d.find_element(By.ID, "gen-button").is_enabled())
    d.find_element(By.ID, "gen-button").click()
    img = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#gen-output img"))[0]
    grid = _fetch_image(img.get_attribute("src"))
    assert grid.shape[0] >= 4 * 28 and grid.std() > 0
    assert "seed 0" in _text(d, "gen-status")
    d.find_element(By.ID, "interp-button").click()
    strip = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#interp-output img"))[0]
    s = _fetch_image(strip.get_attribute("src"))
    assert s.shape[1] > 4 * s.shape[0]  # one row of 8 images
    d.save_screenshot(str(shots / "generate.png"))

    # Inpaint: upload an image and a mask; the three panels and a download appear.
    rng = np.random.default_rng(3)
    photo = np.clip(np.linspace(40, 200, 28)[None, :] + rng.normal(0, 5, (28, 28)), 0, 255).astype(np.uint8)
    mask = np.zeros((28, 28), np.uint8)
    mask[8:20, 8:20] = 255
    _open_tab(d, "Inpaint")
    _upload(d, "inp-image-file", _png(photo, tmp_path / "photo.png"))
    _wait(d, lambda d: "loaded a 28x28 image" in _text(d, "inp-status"))
    _upload(d, "inp-mask-file", _png(mask, tmp_path / "mask.png"))
    time.sleep(0.5)  # the mask upload settles before the click reads it
    d.find_element(By.ID, "inp-button").click()
    _wait(d, lambda d: "inpainted 144 of 784 pixels" in _text(d, "inp-status"))
    for panel in ("inp-input", "inp-ganforge", "inp-telea"):
        assert d.find_elements(By.CSS_SELECTOR, f"#{panel} img"), panel
    link = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#inp-download a[href]"))[0]
    result = _fetch_image(link.get_attribute("href"))
    known = mask < 128
    assert result.shape == (28, 28) and np.array_equal(result[known], photo[known])
    d.save_screenshot(str(shots / "inpaint.png"))

    # A mask of the wrong size: a message in the page.
    _upload(d, "inp-mask-file", _png(np.full((20, 30), 255, np.uint8), tmp_path / "small_mask.png"))
    time.sleep(0.5)
    d.find_element(By.ID, "inp-button").click()
    _wait(d, lambda d: "the mask is 30x20 but the image is 28x28" in _text(d, "inp-status"))

    # A huge image (a few KB of 1-bit PNG, 9 megapixels): the upload is refused from its header, with a message.
    huge = tmp_path / "huge.png"
    Image.new("1", (3000, 3000)).save(huge)
    _upload(d, "inp-image-file", huge)
    _wait(d, lambda d: "9,000,000 pixels; the limit is" in d.page_source)
    d.save_screenshot(str(shots / "huge-upload.png"))

    # A file that is not an image: a clear message, no traceback, and the server keeps serving.
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    _upload(d, "inp-image-file", bad)
    _wait(d, lambda d: "not an image" in _text(d, "inp-status"))
    msg = _text(d, "inp-status")
    assert "Error" in msg and "Traceback" not in d.page_source
    d.save_screenshot(str(shots / "bad-upload.png"))
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
    log = server_log.read_text()
    assert f"http://127.0.0.1:{url.rsplit(':', 1)[1].strip('/')}" in log and "Traceback" not in log
    print("screenshots:", *sorted(map(str, shots.iterdir())), sep="\n  ")
