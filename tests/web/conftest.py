"""Browser tests: Debian's Chromium driven by Playwright against a whole live Syncline.

Playwright's own browser download is not used (nor reachable here): the tests launch
/usr/bin/chromium, which scripts/test.sh installs from apt. A failed test leaves a screenshot of
every page it opened in its tmp_path (the paths are printed with the failure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from helpers.live_server import LiveServer, start_live_server, stop_live_server
from web.ui import CHROMIUM, CHROMIUM_ARGS, Pages

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs the chromium package")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def web_server(schema_url: str) -> AsyncIterator[LiveServer]:
    """A live server; registrations are not rate limited (each test makes a few accounts)."""
    server = await start_live_server(schema_url, rate_limit_register_ip="")
    try:
        yield server
    finally:
        await stop_live_server(server)


@pytest.fixture
async def pages(
    browser: Browser, web_server: LiveServer, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Pages]:
    """Opens pages (each in its own browser context, so its own storage: one user each)."""
    opened = Pages(browser, web_server)
    try:
        yield opened
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            for path in await opened.screenshot_all(tmp_path):
                print(f"screenshot of the failed test: {path}")
            print("browser console:", *opened.console, sep="\n  ")
        elif report is not None and report.passed:
            opened.assert_no_page_errors()
    finally:
        await opened.close()
