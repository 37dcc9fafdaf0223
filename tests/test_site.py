"""The built website in a real browser: Debian chromium driven by Playwright.

Every request that is not addressed to 127.0.0.1 is aborted, so these checks pass
with no network (MathJax, for example, cannot load and is not needed).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

BACKGROUND = "/chapters/01-background/background.html"


def test_background_page_renders_figure_and_bibliography(site_url, offline_page):
    page, _ = offline_page
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


def test_solution_dropdown_opens(site_url, offline_page):
    page, _ = offline_page
    page.goto(site_url + BACKGROUND)
    solution = page.locator(".solution.dropdown").first
    body = solution.locator("section, p").last
    assert not body.is_visible()
    solution.locator(".toggle-button, .admonition-title").first.click()
    body.wait_for(state="visible", timeout=5000)
    assert "np.log" in solution.inner_text() or "FLOPs" in solution.inner_text()


def test_colab_launch_link_points_at_the_notebook(site_url, offline_page):
    page, _ = offline_page
    page.goto(site_url + BACKGROUND)
    links = page.locator("a[href*='colab.research.google.com']")
    assert links.count() >= 1
    href = links.first.get_attribute("href")
    assert href.endswith("chapters/01-background/background.ipynb"), href
    binder = page.locator("a[href*='mybinder.org']").first.get_attribute("href")
    assert binder and "background.ipynb" in binder


def test_glossary_has_chinese_terms(site_url, offline_page):
    page, _ = offline_page
    page.goto(site_url + "/chapters/appendix/glossary.html")
    text = page.locator("main").inner_text()
    for english, chinese in [("attention", "注意力"), ("perplexity", "困惑度")]:
        assert english in text and chinese in text
    assert "hyperbolic tangent" in text
