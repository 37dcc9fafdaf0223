"""Shared fixtures: offline data, a loopback HTTP server, and Debian's chromium."""

from __future__ import annotations

import functools
import http.server
import importlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI") == "true"  # .ci/run sets it; so do most CI services
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test locally; fail it under CI (``CI=true``), where nothing may skip.

    For a missing dependency, data file or build output; usable in a test, a
    fixture or at module level. Only tests that need hardware CI does not have (a
    CUDA device) should call `pytest.skip` directly.
    """
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this test; .ci/run installs it)")
    pytest.skip(reason, allow_module_level=True)


def require(condition: bool, reason: str) -> None:
    """`skip_or_fail(reason)` unless `condition` holds."""
    if not condition:
        skip_or_fail(reason)


def import_or_fail(name: str) -> ModuleType:
    """`pytest.importorskip(name)` that fails under CI instead of skipping."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        skip_or_fail(f"cannot import {name}: {err}")


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
    sync_api = import_or_fail("playwright.sync_api")
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
