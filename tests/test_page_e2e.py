"""End to end: the real ``citesearch serve`` process on a free loopback port, driven in headless Chromium.

The index holds seeds/ plus a document full of markup (``<script>``, ``<img onerror>``) and emoji, to check that
document text is shown as text and that spans stay exact after characters JavaScript counts twice. Screenshots at
desktop and phone width go to reports/ (gitignored) for the record.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from eval.bench.query import server_command
from eval.server_process import stop_server
from indexer.pipeline import build_index
from tests.conftest import PROJECT_ROOT, SEED_PAGE, SEEDS
from tests.servicekit import start_server_process

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPORTS = PROJECT_ROOT / "reports"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    if os.environ.get("CITESEARCH_REQUIRE_BROWSER"):  # set by scripts/test.sh: missing Chromium is a failure there
        raise RuntimeError("Chromium is missing: run scripts/install.sh --with-browser (apt chromium chromium-driver)")
    pytest.skip("Debian chromium and chromium-driver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.chromium.webdriver import ChromiumDriver as WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ALIYEV = "what conditions did Aliyev set?"
INJECTED_ID = "zz_injected.txt"
SCRIPT_TEXT = "<script>window.__pwned=1</script>"
IMG_TEXT = '<img src=x onerror="window.__pwned=2">'
INJECTED = f"""Zanzibar spice festival notes 🎉🎉

The 🌶️ Zanzibar spice festival opens every August in Stone Town, and visitors taste cloves, nutmeg and cinnamon.
The organisers printed this markup warning on the programme: {SCRIPT_TEXT} and {IMG_TEXT} must appear as plain text.
The festival closes with a night market by the harbour where 🐟 grilled fish is sold.
"""
FESTIVAL_QUESTION = "When does the Zanzibar spice festival open?"


@pytest.fixture(scope="module")
def host_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Another internal site (a different origin, its folder) where a page embeds the search box."""
    root = tmp_path_factory.mktemp("e2e-host")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, real_embedder, host_site: tuple[str, Path]) -> Iterator[str]:
    """``citesearch serve`` as a separate process over seeds/ plus the injected document."""
    corpus = tmp_path_factory.mktemp("e2e-corpus")
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, corpus / path.name)
    (corpus / INJECTED_ID).write_text(INJECTED, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("e2e-index")
    build_index([corpus], index_dir, real_embedder)
    log = tmp_path_factory.mktemp("e2e-log") / "serve.log"
    process, base = start_server_process(
        lambda port: [*server_command(index_dir, port), "--no-access-log"],  # the benchmarks' `citesearch serve`
        log,
        timeout=180,
        env={"CITESEARCH_CORS_ORIGINS": json.dumps([host_site[0]]), "CITESEARCH_RELOAD_INTERVAL_SECONDS": "1"},
    )
    try:
        yield base
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-extensions",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(autouse=True)
def _fresh_console(driver: WebDriver) -> None:
    """Each test checks only its own console errors (reading the log empties it)."""
    driver.get_log("browser")


def _wait(driver: WebDriver, condition: Any, timeout: float = 60, message: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def _search(driver: WebDriver, base: str, question: str) -> None:
    driver.get(f"{base}/")
    box = _wait(driver, lambda d: d.find_element(By.ID, "q"))
    box.clear()
    box.send_keys(question + Keys.ENTER)  # the form submits on Enter, no mouse needed
    _wait(
        driver,
        lambda d: (
            d.find_element(By.ID, "status").text.endswith("ms)") or "failed" in d.find_element(By.ID, "status").text
        ),
        message="search to finish",
    )


def _text(driver: WebDriver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent")


def _mark_in_view(driver: WebDriver) -> bool:
    return driver.execute_script(
        "var m = document.getElementById('cited'); if (!m) return false;"
        "var r = m.getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;"
    )


def _console_errors(driver: WebDriver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _ask(base: str, question: str) -> dict[str, Any]:
    return httpx.post(f"{base}/ask", json={"question": question}, timeout=60).json()


def test_question_answer_passages_and_keyboard_to_the_cited_span(served: str, driver: WebDriver) -> None:
    driver.set_window_size(1280, 900)
    _search(driver, served, ALIYEV)
    answer = _text(driver, "answer-text")
    assert "Constitutional amendments in Armenia" in answer and "Dissolution of the OSCE Minsk Group" in answer
    markers = driver.find_elements(By.CSS_SELECTOR, "#answer-text a.marker")
    assert [m.text for m in markers] == [f"[{n}]" for n in range(1, len(markers) + 1)] and markers
    citations = driver.find_elements(By.CSS_SELECTOR, "#citations li.citation")
    assert len(citations) == len(markers)
    results = driver.find_elements(By.CSS_SELECTOR, "#result-list li.result")
    assert len(results) >= 3
    for result in results:
        assert result.find_elements(By.CSS_SELECTOR, "mark.hl"), "each passage has its best sentence highlighted"
        label = result.find_element(By.CSS_SELECTOR, ".badge").text
        assert label in {"Article", "Author bio"} or label.startswith("Reader comment ")
    # The page asked for at most two passages per document (its per-document cap).
    titles = [r.find_element(By.CSS_SELECTOR, ".result-title").text for r in results]
    assert max(titles.count(t) for t in titles) <= 2
    REPORTS.mkdir(exist_ok=True)
    driver.set_window_size(1280, 1600)  # tall enough to show the answer and the first passages
    driver.save_screenshot(str(REPORTS / "page-desktop.png"))
    driver.set_window_size(1280, 900)

    # Keyboard only: from the search box, Tab to the first citation marker and press Enter.
    expected = _ask(served, ALIYEV)["citations"][0]
    driver.execute_script("document.getElementById('q').focus()")
    for _ in range(8):
        active = driver.switch_to.active_element
        if "marker" in (active.get_attribute("class") or ""):
            break
        active.send_keys(Keys.TAB)
    active = driver.switch_to.active_element
    assert active.text == "[1]", "Tab from the search box reaches the first citation marker"
    active.send_keys(Keys.ENTER)
    _wait(driver, lambda d: d.find_elements(By.ID, "cited"), message="the cited span to be marked")
    assert driver.find_element(By.ID, "doc-view").is_displayed()
    assert not driver.find_element(By.ID, "search-view").is_displayed()
    assert _text(driver, "cited") == expected["quote"]
    assert _wait(driver, _mark_in_view, timeout=5, message="the mark to be scrolled into view")
    assert driver.switch_to.active_element.get_attribute("id") == "cited"  # focus moved to the quote
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#doc-body .part-label")]
    assert labels[0] == "ARTICLE" or labels[0] == "Article"
    assert any(label.lower().startswith("reader comment") for label in labels)
    driver.save_screenshot(str(REPORTS / "page-document.png"))

    # Back returns to the same results.
    driver.back()
    _wait(driver, lambda d: d.find_element(By.ID, "search-view").is_displayed())
    assert "Constitutional amendments in Armenia" in _text(driver, "answer-text")
    assert _console_errors(driver) == []


def test_injected_markup_stays_inert_text(served: str, driver: WebDriver) -> None:
    driver.set_window_size(1280, 900)
    _search(driver, served, "markup warning printed on the Zanzibar festival programme")
    page_text = driver.find_element(By.ID, "result-list").text
    assert SCRIPT_TEXT in page_text and IMG_TEXT in page_text
    assert driver.execute_script("return window.__pwned") is None
    assert driver.find_elements(By.CSS_SELECTOR, "#main img, #main script") == []

    # Follow the answer's citation into the document: the span after emoji is marked exactly, markup still text.
    _search(driver, served, FESTIVAL_QUESTION)
    expected = _ask(served, FESTIVAL_QUESTION)
    assert expected["answer"]
    opens = next(c for c in expected["citations"] if "opens every August" in c["quote"])
    assert opens["doc_id"] == INJECTED_ID
    marker = next(
        m for m in driver.find_elements(By.CSS_SELECTOR, "#answer-text a.marker") if m.text == f"[{opens['number']}]"
    )
    marker.click()
    _wait(driver, lambda d: d.find_elements(By.ID, "cited"), message="the cited span to be marked")
    # Emoji come before the span (JavaScript counts each as two units, the API as one): still exactly the quote.
    assert _text(driver, "cited") == opens["quote"]
    assert "🌶️ Zanzibar spice festival opens every August" in opens["quote"]
    body = _text(driver, "doc-body")
    assert SCRIPT_TEXT in body and IMG_TEXT in body
    assert driver.execute_script("return window.__pwned") is None
    assert driver.find_elements(By.CSS_SELECTOR, "#main img, #main script") == []
    assert _console_errors(driver) == []


def test_document_view_by_link_and_no_external_requests(served: str, driver: WebDriver) -> None:
    driver.set_window_size(1280, 900)
    document = httpx.get(f"{served}/documents/{SEED_PAGE}", timeout=30).json()
    comment = next(p for p in document["parts"] if p["section"] == "comment" and p["comment_no"] == 4)
    driver.get(f"{served}/#/doc/{SEED_PAGE}?start={comment['char_start']}&end={comment['char_end']}")
    _wait(driver, lambda d: d.find_elements(By.ID, "cited"))
    assert _text(driver, "cited") == document["text"][comment["char_start"] : comment["char_end"]]
    assert _wait(driver, _mark_in_view, timeout=5)
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(url.startswith(served + "/") for url in resources), resources
    driver.get(f"{served}/#/doc/no-such-document.txt")
    _wait(driver, lambda d: d.find_element(By.ID, "doc-title").text == "Document not available")


def test_phone_width_is_readable(served: str, driver: WebDriver) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True}
    )
    try:
        _search(driver, served, ALIYEV)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 375  # no sideways scrolling
        box = driver.find_element(By.ID, "q").rect
        button = driver.find_element(By.ID, "search-button").rect
        assert button["y"] >= box["y"] + box["height"] - 1  # stacked under the box at phone width
        assert box["width"] >= 300
        driver.save_screenshot(str(REPORTS / "page-phone.png"))
        driver.find_element(By.CSS_SELECTOR, "#answer-text a.marker").click()
        _wait(driver, lambda d: d.find_elements(By.ID, "cited"))
        assert _wait(driver, _mark_in_view, timeout=5)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
        driver.save_screenshot(str(REPORTS / "page-phone-document.png"))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_embedded_search_box_on_another_origin(served: str, host_site: tuple[str, Path], driver: WebDriver) -> None:
    """The user guide's snippet on another internal site: the box calls the API cross-origin (CORS allows it)."""
    host_page, root = host_site
    (root / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Intranet</title>"
        "<link rel='icon' href='data:,'></head><body><h1>Intranet home</h1>\n"
        f"<div data-citesearch data-placeholder='Search the news archive'></div>\n"
        f"<script src='{served}/static/embed.js' defer></script>\n</body></html>",
        encoding="utf-8",
    )
    driver.set_window_size(1280, 900)
    driver.get(f"{host_page}/index.html")
    box = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "[data-citesearch] input.cs-input"))
    box.send_keys(ALIYEV + Keys.ENTER)
    _wait(
        driver,
        lambda d: (
            "passages" in d.find_element(By.CSS_SELECTOR, ".cs-status").text
            or "failed" in d.find_element(By.CSS_SELECTOR, ".cs-status").text
        ),
    )
    assert "Constitutional amendments in Armenia" in driver.find_element(By.CSS_SELECTOR, ".cs-answer").text
    link = driver.find_element(By.CSS_SELECTOR, ".cs-answer a.cs-link")
    assert link.get_attribute("href").startswith(f"{served}/#/doc/")
    assert driver.find_elements(By.CSS_SELECTOR, ".cs-results li")
    # The box takes its per-document cap from /page-config, as the search page does (not a value of its own).
    cap = httpx.get(f"{served}/page-config", timeout=10).json()["per_doc_cap"]
    requested = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{served}/page-config" in requested
    searches = [parse_qs(urlsplit(url).query) for url in requested if url.startswith(f"{served}/search?")]
    assert searches and all(s.get("per_doc_cap") == ([str(cap)] if cap else None) for s in searches), requested
    assert _console_errors(driver) == []
