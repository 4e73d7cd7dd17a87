"""Headless Chromium for the dashboard tests: the Debian ``chromium`` and ``chromium-driver``
packages driven by Selenium (``pip install selenium``), never a browser downloaded at run time.

``browser`` (module scope) is a :class:`selenium.webdriver.Chrome` at 1280x900. The binaries are
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (or ``$JEFFREY_CHROMIUM_BIN`` and
``$JEFFREY_CHROMEDRIVER_BIN``); Selenium Manager is never asked for one. When either binary or
the ``selenium`` package is missing the tests are skipped, unless ``JEFFREY_REQUIRE_ALL=1`` (CI),
which turns that into a failure. Screenshots go to ``.artifacts/dashboard/`` (gitignored).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".artifacts" / "dashboard"


def _binary(env: str, default: str) -> str | None:
    path = os.environ.get(env) or default
    return path if os.access(path, os.X_OK) else None


def require_chromium() -> tuple[str, str]:
    """(chromium, chromedriver); skip (locally) or fail (``JEFFREY_REQUIRE_ALL=1``) when missing."""
    chromium = _binary("JEFFREY_CHROMIUM_BIN", "/usr/bin/chromium")
    driver = _binary("JEFFREY_CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
    missing = []
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing or chromium is None or driver is None:
        message = "headless browser tests need " + ", ".join(missing)
        if os.environ.get("JEFFREY_REQUIRE_ALL") == "1":
            pytest.fail(message + " and JEFFREY_REQUIRE_ALL=1")
        pytest.skip(message)
    return chromium, driver


def new_browser(chromium: str, driver: str, *, width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_script_timeout(10)
    return browser


def screenshot(browser: Any, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    return require_chromium()


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str]) -> Iterator[Any]:
    driver = new_browser(*chromium)
    try:
        yield driver
    finally:
        driver.quit()
