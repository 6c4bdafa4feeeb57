"""A real `streamlit run` on 127.0.0.1 and Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers.app_server import CHROMIUM, free_port, launch_chromium, start_streamlit, stop_streamlit, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """Start the app on a free loopback port with its own data dir; stop it by PID afterwards."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (scripts/install_system_deps.sh installs it as root)")
    data_dir = tmp_path_factory.mktemp("e2e-data")
    port = free_port()
    log = open(data_dir / "streamlit.log", "w")
    proc = start_streamlit(data_dir, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        wait_healthy(url, proc)
        yield {
            "url": url,
            "data_dir": data_dir,
            "pid": proc.pid,
            "log": data_dir / "streamlit.log",
            "started_at": started,
            "healthy_at": time.monotonic(),  # for the "first page interactive" measurement
        }
    finally:
        stop_streamlit(proc)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)  # the page fixture looks at it to keep a failure screenshot


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-TW")
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what the browser showed when the test failed
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            p.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
        except Exception as exc:  # the browser may be gone: the test's own error matters more
            print(f"no failure screenshot: {exc}")
    context.close()


# Streamlit scrolls inside its main section, not the document, so a "full page" screenshot of the document
# only shows the first screen. The viewport is stretched to the content's height for the shot instead.
_CONTENT_HEIGHT_JS = """() => {
    const ids = ["stMain", "stMainBlockContainer", "stAppScrollToBottomContainer", "stSidebarContent"];
    const heights = ids.flatMap(id => [...document.querySelectorAll(`[data-testid="${id}"]`)])
        .map(el => el.scrollHeight);
    return Math.max(window.innerHeight, ...heights);
}"""
MAX_SHOT_HEIGHT = 8000


@pytest.fixture
def shoot():
    """``shoot(page, name)``: a screenshot of the whole page content under test-artifacts/screenshots/.

    It also fails the test when Streamlit shows an exception box: a traceback on screen is a broken page.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _shoot(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        exceptions = page.get_by_test_id("stException")
        assert exceptions.count() == 0, f"{name}: the page shows an exception: {exceptions.first.inner_text()[:500]}"
        viewport = page.viewport_size or {"width": 1400, "height": 1000}
        height = min(int(page.evaluate(_CONTENT_HEIGHT_JS)), MAX_SHOT_HEIGHT)
        try:
            if height > viewport["height"]:
                page.set_viewport_size({"width": viewport["width"], "height": height})
                page.wait_for_timeout(300)  # let the layout settle at the new size
            page.screenshot(path=str(path), full_page=True)
        finally:
            if height > viewport["height"]:
                page.set_viewport_size(viewport)
        return path

    return _shoot
