"""Shared fixtures: offline data, a loopback HTTP server, and Debian's chromium."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = bool(os.environ.get("CI"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(condition: bool, reason: str) -> None:
    """Skip when `condition` fails locally; fail under CI, where it must hold."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test; .ci/run installs it)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `directory` on 127.0.0.1 on a free port; returns (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian chromium driven by Playwright; skipped locally if absent."""
    require(CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """Base URL of the built website (``_build/html``) served on 127.0.0.1."""
    require(
        (SITE / "index.html").exists(),
        f"{SITE} is not built: run `jupyter-book build . -W -n --keep-going` first",
    )
    server, url = serve(SITE)
    yield url
    server.shutdown()


@pytest.fixture()
def offline_page(browser: object) -> Iterator[tuple[object, list[str]]]:
    """A fresh page that aborts every request not addressed to 127.0.0.1.

    Yields ``(page, external)``, where `external` collects the aborted URLs.
    """
    context = browser.new_context()
    page = context.new_page()
    external: list[str] = []

    def route(r: object) -> None:
        url = r.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlparse(url).hostname == (
            "127.0.0.1"
        ):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    yield page, external
    context.close()
