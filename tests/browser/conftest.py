"""Real Chromium for the browser tests (every test in this folder is marked `browser`).

Fixtures:
- `browser` (package: once for this folder): Debian Chromium driven by Playwright's sync API, without
  `playwright install` (the machine is offline; /usr/bin/chromium comes from apt).
- `page`: a page in a fresh context whose base URL is pytest-django's `live_server`, so
  `page.goto("/o/acme/")` works. Console errors and uncaught page errors are collected and the
  test fails at teardown if there were any (a 404 on a stylesheet shows up here too). A test that
  provokes one on purpose removes it from the `console_errors` list, or marks itself
  `@pytest.mark.allow_console_errors`.
- `new_page()`: another page in another fresh context (a second person, cookies not shared).
- `screenshot(page, name)`: a full-page PNG at docs/screenshots/<name>.png.
- `sign_in(page, email, password)`: through the allauth login page, as a person would.

`live_server` makes the tests transactional: the server thread sees committed rows only, so
create data with factories or services before the browser looks at it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_console_errors: a browser test that expects console errors"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Hooks in a conftest see the whole session's items: mark only the ones in this folder.
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


# Package scope, not session: while Playwright's sync API is running, its event loop is the
# running loop of this thread, so every later test in the session that starts an event loop
# (anyio, asyncio.run) would fail, and Django would refuse ORM calls. Chromium starts once for
# this folder and stops before the next package's tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Browser tests drive Debian's Chromium: "
            "`sudo apt-get install -y chromium` (or set CHROMIUM=/path/to/chromium).",
            pytrace=False,
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop in this thread: the sync API can run
    else:
        pytest.fail("Playwright's sync API cannot run inside an asyncio event loop.")
    # Playwright's sync API keeps its event loop in this thread between calls, which makes
    # Django think every ORM call from the test body is made from async code. The test body is
    # plain synchronous code, so tell Django so for the browser tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def console_errors() -> list[str]:
    """Console errors seen so far by this test's pages; a test may drop ones it provoked."""
    return []


@pytest.fixture
def new_page(
    browser: Browser,
    live_server: object,
    console_errors: list[str],
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[], Page]]:
    """Open pages in fresh contexts (separate cookies); console errors fail the test."""
    contexts: list[BrowserContext] = []
    errors = console_errors

    def open_page() -> Page:
        context = browser.new_context(base_url=str(live_server.url), viewport=VIEWPORT)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: _collect_console_error(msg, errors))
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: uncaught: {exc}"))
        return page

    yield open_page
    for context in contexts:
        context.close()
    if errors and request.node.get_closest_marker("allow_console_errors") is None:
        pytest.fail("Console errors in the browser:\n" + "\n".join(errors), pytrace=False)


def _collect_console_error(msg: ConsoleMessage, errors: list[str]) -> None:
    if msg.type != "error":
        return
    source = msg.location.get("url", "")
    # Chromium asks every site for /favicon.ico on its own; a missing icon is not a page error.
    if urlsplit(source).path == "/favicon.ico":
        return
    errors.append(f"console.error: {msg.text} ({source})")


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def save_screenshot(page: Page, name: str) -> Path:
    """Write a full-page PNG to docs/screenshots/<name>.png and return its path."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"screenshot name {name!r}: use lowercase letters, digits and dashes")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    return save_screenshot


def sign_in_through_login_page(page: Page, email: str, password: str) -> None:
    """Sign in on allauth's login page; returns once the browser has left it."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.fixture
def sign_in() -> Callable[[Page, str, str], None]:
    return sign_in_through_login_page
