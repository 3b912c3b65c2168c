"""End-to-end in headless Chromium: sf-serve from upload to evidence pack, and packs opened offline.

Needs Debian's ``chromium`` and ``chromium-driver`` (``bash scripts/install_browser.sh``) and the
``selenium`` package; the tests fail, not skip, without them. Screenshots go to
``$SF_TEST_ARTIFACTS/browser`` (default: ``<tmp>/sf_fairseq-test-artifacts/browser``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import clip_result, full_record
from sf_fairseq.eval.evidence import TrackEvidence, write_evidence_pack
from sf_fairseq.eval.evidence_index import write_index
from sf_fairseq.eval.serve import ServeConfig, create_app
from test_evidence_index import batch_records

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600")
INSTALL_HINT = "run `bash scripts/install_browser.sh` (Debian chromium and chromium-driver)"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("SF_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "sf_fairseq-test-artifacts"))
    folder = folder / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail(f"headless browser tests need chromium and chromedriver on PATH: {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("headless browser tests need selenium (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def images_loaded(driver) -> tuple[int, int]:
    """(images on the page, images that loaded with a size)."""
    return tuple(driver.execute_script(
        "var im = Array.from(document.images);"
        "return [im.length, im.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length];"))


def full_page_screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 800), 6000))
    driver.save_screenshot(os.fspath(path))
    driver.set_window_size(1280, 1600)


@pytest.fixture
def talking_clip(tmp_path) -> Path:
    """A synthetic talking-face video (H.264 + AAC) made with the project's generator."""
    from sf_fairseq.preprocess.synthetic.clips import (
        plan_real,
        render_frames,
        write_mp4,
    )
    from sf_fairseq.preprocess.synthetic.speech import Voice, speak

    size = (224, 224)
    plan = plan_real(np.random.default_rng(3), size, speak("Bob made five pies by the map.", Voice("en-us", rate=170)),
                     ("astronaut",))
    path = tmp_path / "talking face.mp4"
    write_mp4(path, render_frames(plan), plan.audio, size)
    return path


@pytest.fixture
def live_server(tmp_path, shared_dir):
    from werkzeug.serving import make_server

    config = ServeConfig(results_dir=tmp_path / "results",
                         checkpoints={"avhubert_tiny": shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"})
    server = make_server("127.0.0.1", 0, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_upload_to_evidence_pack(browser, live_server, talking_clip, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(live_server + "/")
    assert "Score a video" in browser.page_source
    browser.find_element(By.ID, "video").send_keys(os.fspath(talking_clip))
    Select(browser.find_element(By.ID, "checkpoint")).select_by_visible_text("avhubert_tiny")
    browser.save_screenshot(os.fspath(artifacts / "01_start_page.png"))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/jobs/"))
    browser.save_screenshot(os.fspath(artifacts / "02_job_progress.png"))
    verdict = WebDriverWait(browser, 300).until(
        lambda d: d.find_elements(By.ID, "verdict") or d.find_elements(By.ID, "error"))[0]
    full_page_screenshot(browser, artifacts / "03_job_done.png")
    assert verdict.get_attribute("id") == "verdict", browser.find_element(By.ID, "error").text
    assert verdict.text in ("real", "fake", "inconclusive")
    assert browser.find_element(By.ID, "score").text
    for link_id, kind in (("download-pack", "text/html"), ("download-record", "application/json")):
        href = browser.find_element(By.ID, link_id).get_attribute("href")
        with urllib.request.urlopen(href, timeout=30) as response:
            assert response.headers.get_content_type() == kind
            assert "attachment" in response.headers["Content-Disposition"]
            assert response.read()
    assert not console_errors(browser)

    browser.get(browser.find_element(By.ID, "open-pack").get_attribute("href"))
    assert "Evidence pack: talking face.mp4" in browser.title + browser.page_source
    n, loaded = images_loaded(browser)
    assert n >= 3 and loaded == n  # offset curve, time line, mouth frames
    full_page_screenshot(browser, artifacts / "04_evidence_pack.png")
    assert not console_errors(browser)

    browser.get(live_server + "/")
    assert "talking face.mp4" in browser.find_element(By.ID, "jobs").text  # kept and listed


def test_packs_open_offline(browser, tmp_path, artifacts):
    """A pack and an index written to disk open from file:// with every image and no error;
    the index sorts by a click on a column."""
    from selenium.webdriver.common.by import By

    video, wav = tmp_path / "clip.mp4", tmp_path / "clip.wav"
    from sf_test_media import write_clip

    write_clip(video, wav, 100, np.random.default_rng(0))
    result = clip_result()
    speech = np.zeros(100, dtype=bool)
    speech[10:90] = True
    packs = tmp_path / "packs"
    write_evidence_pack(packs / "item01.html", [TrackEvidence(full_record(result), result, video, wav, speech)],
                        title="clip.mp4", reference=list(np.linspace(0.1, 0.5, 60)), reference_field="score_speech")
    index = write_index(packs / "index.html", batch_records(), packs, n_boot=50)

    browser.get(index.as_uri())
    n, loaded = images_loaded(browser)
    assert n == 4 and loaded == n
    score_column = 4
    browser.find_element(By.CSS_SELECTOR, f'th[data-column="{score_column}"]').click()
    keys = browser.execute_script(
        "return Array.from(document.querySelectorAll('#items tbody tr'))"
        f".map(r => r.cells[{score_column}].dataset.key)")
    numbers = [float(k) for k in keys if k]
    assert numbers == sorted(numbers) and keys[-1] == ""  # ascending, the unscored item last
    full_page_screenshot(browser, artifacts / "05_index.png")
    assert not console_errors(browser)

    browser.find_element(By.LINK_TEXT, "item01").click()
    assert browser.title == "Evidence: clip.mp4"
    n, loaded = images_loaded(browser)
    assert n == 4 and loaded == n
    assert not console_errors(browser)
