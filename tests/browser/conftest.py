"""A real Chromium (Debian's, driven by Playwright) against a live server.

Fixtures here are imported lazily: without Playwright or Chromium the tests are
skipped (or fail under REQUIRE_SERVICES=1) by `tests/conftest.py` before any
fixture runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test.utils import override_settings

from tests.conftest import CHROMIUM

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="package")
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """pytest-django's live server, over plain HTTP, for this package only.

    Production settings redirect HTTP to HTTPS and mark cookies secure. The
    override must be in force before the server starts: SecurityMiddleware reads
    SECURE_SSL_REDIRECT once, when the server's handler is built, so changing it
    in a test (the `settings` fixture) would come too late for a server shared
    with the session. It also stays out of the other packages' tests.
    """
    from pytest_django.live_server_helper import LiveServer

    plain_http = override_settings(
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        SECURE_HSTS_SECONDS=0,
    )
    plain_http.enable()
    server = LiveServer(request.config.getvalue("liveserver") or "localhost")
    yield server
    server.stop()
    plain_http.disable()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so
    # Django would refuse the tests' own ORM calls (SynchronousOnlyOperation).
    # The tests never share a connection with async code; lift the guard only
    # while the browser runs.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def new_page(browser: Any, live_server: Any) -> Iterator[Callable[[], Any]]:
    """Opens a page in a fresh browser context (its own cookies: one person each)."""
    contexts = []

    def make() -> Any:
        context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
