"""Fixtures of the browser tests: a real ``latchkey serve``, headless Chromium, another origin.

The server is started with the helpers of the end-to-end tests (tests/e2e/conftest.py): a
subprocess on a free port with its own data directory and cheap Argon2 settings, here with a
2-second access-token lifetime so that tokens really expire during a test. The page is opened
at ``http://localhost:PORT/account``, the issuer's origin.

Chromium is the system's (/usr/bin/chromium; Playwright's own download is not used). Without
it the tests are skipped, except under CI (the environment variable CI set), where they fail.
Each test leaves a full-page screenshot of every page it opened in artifacts/browser/.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser_support import ACTION_TIMEOUT_MS, ARTIFACTS, CHROMIUM, NewContext, OtherOrigin, Site
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from e2e.conftest import Processes

USERS = ("alice", "bob")  # bob is for the password change, which ends alice's other sessions


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One ``latchkey serve`` per module (access tokens live 2 s), with alice and bob."""
    workdir = tmp_path_factory.mktemp("browser")
    processes = Processes(workdir)
    data_dir = workdir / "data"
    try:
        processes.migrate(data_dir)
        for username in USERS:
            processes.add_user(data_dir, username, "read write")
        server = processes.start_latchkey(
            data_dir, issuer_host="localhost", LATCHKEY_ACCESS_TTL="2"
        )
        yield Site(server, f"http://localhost:{server.port}")
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for one module (Playwright stops with it)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewContext]:
    """``new_context()``: a fresh browser context (its own cookie jar: another device).

    When the test ends, every page of every context is saved as a screenshot, and the test
    fails if a page had an uncaught script error or a Content-Security-Policy violation."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )

    def make() -> BrowserContext:
        context = browser.new_context()
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.on("page", watch)
        contexts.append(context)
        return context

    yield make

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = [page for context in contexts for page in context.pages]
    for number, page in enumerate(pages, start=1):
        suffix = "" if number == 1 else f"-{number}"
        page.screenshot(path=ARTIFACTS / f"{request.node.name}{suffix}.png", full_page=True)
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def context(new_context: NewContext) -> BrowserContext:
    """One browser context: its tabs share the refresh cookie, hence one session."""
    return new_context()


@pytest.fixture
def other_origin(site: Site) -> Iterator[OtherOrigin]:
    """A tiny HTTP server (a thread) whose page holds forms posting to the service."""
    page = f"""<!doctype html><meta charset=utf-8><title>Another origin</title>
<form id=refresh method=post action="{site.origin}/auth/refresh" target=sink>
  <button>refresh</button></form>
<form id=logout method=post action="{site.origin}/auth/logout" target=sink>
  <input type=hidden name=refresh_token value=x><button>logout</button></form>
<iframe name=sink title=sink></iframe>""".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OtherOrigin(f"http://localhost:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
