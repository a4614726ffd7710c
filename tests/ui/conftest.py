"""The web file browser in headless Chromium: Debian's ``chromium``, driven by Playwright.

One ``callfs dev`` (two API keys) and one browser serve every test here; each test has
its own browser context (a fresh tab session) and its own directory. A failing test
leaves a screenshot in ``.callfs-test-artifacts/ui/``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.support.dev import TwoUsers, two_user_dev

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".callfs-test-artifacts" / "ui"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, for the page fixture to see a failure."""
    report: pytest.TestReport = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoUsers]:
    """One ``callfs dev`` with two API keys (api-user-1, api-user-2) for every test here."""
    with two_user_dev(tmp_path_factory.mktemp("callfs-dev") / "data") as running:
        yield running


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver (bundled with the package; it downloads no browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless."""
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new tab in its own context; a screenshot when the test fails; no script errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A refused request logs "Failed to load resource": the page tells those itself.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    yield tab
    reports = request.node.stash.get(REPORTS, {})
    if any(report.failed for report in reports.values()):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.nodeid)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()
    assert problems == [], f"the page logged errors: {problems}"


@pytest.fixture
def home(server: TwoUsers, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's own directory, created by api-user-1 and removed after."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:60]
    path = f"/{name}-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, headers=auth(server.key)) as client:
        client.post(f"/v1/files{path}/").raise_for_status()
        yield path
        client.delete(f"/v1/files{path}", params={"recursive": "true"})


def auth(key: str) -> dict[str, str]:
    """The API's header for ``key``."""
    return {"Authorization": f"Bearer {key}"}
