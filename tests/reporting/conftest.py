"""A headless Chromium for the HTML report's browser tests: one per test module, skipped with the
reason where Debian's chromium, its chromedriver or selenium is missing (.ci/run installs them)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

WINDOW = (1280, 900)


def _missing() -> str | None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        return "no chromium on PATH (Debian: apt-get install chromium chromium-driver)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e .[test])"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        pytest.skip(f"browser test: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    options.binary_location = str(binary)
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def open_page(browser: Any) -> Callable[[Path], Any]:
    """Load a report in the module's browser, once its script has built the page."""

    def load(path: Path) -> Any:
        browser.get(path.resolve().as_uri())
        ready = browser.execute_script("return document.documentElement.getAttribute('data-ready')")
        assert ready == "1", f"the page's script did not finish: {browser.get_log('browser')}"
        return browser

    return load
