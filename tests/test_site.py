"""The built website in a real browser: Debian chromium driven by Playwright.

Every request that is not addressed to 127.0.0.1 is aborted, so these checks pass
with no network (MathJax, for example, cannot load and is not needed).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SITE = Path(__file__).resolve().parents[1] / "_build" / "html"
BACKGROUND = "/chapters/01-background/background.html"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
DECLARATION = re.compile(r"\b(?:const|let|class)\s+([A-Za-z_$][\w$]*)")


def site_pages() -> list[str]:
    """Every HTML page of the built site, as paths relative to its root."""
    skip = ("_static", "_sources", "_images")
    return sorted(
        p.relative_to(SITE).as_posix()
        for p in SITE.rglob("*.html")
        if not p.relative_to(SITE).parts[0].startswith(skip)
    )


@pytest.fixture()
def page(offline_page):
    """An offline page; the test fails on any uncaught error in the page's scripts."""
    page, _ = offline_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    assert errors == [], f"errors in the page's scripts: {errors}"


def test_no_page_declares_a_script_constant_twice(site_url):
    """A `const` or `let` declared by two inline scripts is a SyntaxError in the
    browser (Sphinx 7.4 writes late-added inline scripts twice; see _config.yml)."""
    pages = site_pages()
    assert len(pages) > 10
    for name in pages:
        scripts = INLINE_SCRIPT.findall((SITE / name).read_text("utf-8"))
        names = Counter(n for body in scripts for n in set(DECLARATION.findall(body)))
        twice = sorted(n for n, count in names.items() if count > 1)
        assert twice == [], f"{name} declares {twice} in two inline scripts"


def test_every_page_loads_without_script_errors(site_url, offline_page):
    page, _ = offline_page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    for name in site_pages():
        page.goto(f"{site_url}/{name}")
    assert errors == []


def test_background_page_renders_figure_and_bibliography(site_url, page):
    page.goto(site_url + BACKGROUND)
    assert "Background" in page.locator("h1").first.inner_text()
    figures = page.locator("figure img")
    assert figures.count() >= 2
    for i in range(figures.count()):
        img = figures.nth(i)
        assert img.get_attribute("alt"), "every figure needs alt text"
        # the PNG really loaded and has pixels
        assert img.evaluate("el => el.complete && el.naturalWidth > 100")
    caption = page.locator("figure figcaption").first.inner_text()
    assert "Parameter counts" in caption
    bibliography = page.locator("#references")
    assert "attention is all you need" in bibliography.inner_text().lower()
    # an in-text citation links to its entry in the chapter's bibliography
    cite = page.locator("a.footnote-reference[href='#footcite-vaswani2017attention']")
    assert cite.count() >= 1
    entry = bibliography.locator("[id='footcite-vaswani2017attention']")
    assert "Vaswani" in entry.inner_text()
    # the set-up cell (installing lmbook for Colab) is hidden on the site
    assert "install lmbook if it is missing" not in page.content()


def test_solution_dropdown_opens(site_url, page):
    page.goto(site_url + BACKGROUND)
    solution = page.locator(".solution.dropdown").first
    body = solution.locator("section, p").last
    assert not body.is_visible()
    solution.locator(".toggle-button, .admonition-title").first.click()
    body.wait_for(state="visible", timeout=5000)
    assert "np.log" in solution.inner_text() or "FLOPs" in solution.inner_text()


def test_colab_launch_link_points_at_the_notebook(site_url, page):
    page.goto(site_url + BACKGROUND)
    links = page.locator("a[href*='colab.research.google.com']")
    assert links.count() >= 1
    href = links.first.get_attribute("href")
    assert href.endswith("chapters/01-background/background.ipynb"), href
    binder = page.locator("a[href*='mybinder.org']").first.get_attribute("href")
    assert binder and "background.ipynb" in binder


def test_glossary_has_chinese_terms(site_url, page):
    page.goto(site_url + "/chapters/appendix/glossary.html")
    text = page.locator("main").inner_text()
    for english, chinese in [("attention", "注意力"), ("perplexity", "困惑度")]:
        assert english in text and chinese in text
    assert "hyperbolic tangent" in text
