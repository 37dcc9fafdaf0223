"""The built website in a real browser: Debian chromium driven by Playwright.

Every request that is not addressed to 127.0.0.1 is aborted, so these checks pass
with no network: the site serves everything it needs, MathJax included. Layout
is checked at 1280 px, where the column is about 700 px wide.
"""

from __future__ import annotations

import html
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import require

pytestmark = pytest.mark.browser

SITE = Path(__file__).resolve().parents[1] / "_build" / "html"
STUDENT_SITE = SITE.parent / "student" / "html"  # `make student`
BACKGROUND = "/chapters/01-background/background.html"
MATH_PAGE = "/chapters/03-mathematics/attention.html"
GLOSSARY = "/chapters/appendix/glossary.html"
WIDTH = 1280  # the layout the checks below hold for
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
DECLARATION = re.compile(r"\b(?:const|let|class)\s+([A-Za-z_$][\w$]*)")


def site_pages(site: Path = SITE) -> list[str]:
    """Every HTML page of the built site, as paths relative to its root."""
    skip = ("_static", "_sources", "_images")
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith(skip)
    )


def chapter_pages(site: Path = SITE) -> list[str]:
    return [name for name in site_pages(site) if name.startswith("chapters/")]


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


# ---- every chapter, visited once ---------------------------------------------------

# Open every dropdown and hidden cell, so that their contents are checked too.
OPEN_ALL = """() => {
  document.querySelectorAll('.toggle-hidden')
    .forEach(e => e.classList.remove('toggle-hidden'));
  document.querySelectorAll('details').forEach(d => { d.open = true; });
}"""

# Math left as TeX: `.math` elements MathJax did not typeset, TeX errors, and
# delimiters in the text outside code.
UNTYPESET = r"""() => {
  const article = document.querySelector('article.bd-article');
  const bare = Array.from(article.querySelectorAll('.math'))
    .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim());
  const errors = Array.from(article.querySelectorAll('mjx-merror'))
    .map(e => e.closest('mjx-container').textContent);
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container')
    .forEach(e => e.remove());
  const text = clone.textContent;
  const delimiters = ['\\(', '\\)', '\\[', '\\]', '$$', '\\begin{']
    .filter(d => text.includes(d))
    .map(d => d + ' in ...' + text.slice(Math.max(0, text.indexOf(d) - 40),
                                       text.indexOf(d) + 40) + '...');
  return {typeset: article.querySelectorAll('mjx-container').length, bare, errors,
          delimiters};
}"""

# Code and outputs wider than the column: blocks that scroll sideways, or stick
# out of their cell.
OVERFLOW = """() => {
  const out = [];
  const show = e => (e.textContent || e.tagName).trim().slice(0, 60);
  for (const pre of document.querySelectorAll('article.bd-article div.highlight pre')) {
    if (pre.scrollWidth > pre.clientWidth + 1)
      out.push(`code scrolls sideways (${pre.scrollWidth} > ${pre.clientWidth} px): `
               + show(pre));
  }
  for (const cell of document.querySelectorAll('article.bd-article div.cell')) {
    const right = cell.getBoundingClientRect().right;
    for (const e of cell.querySelectorAll(
        'div.cell_output > *, div.cell_output pre, div.cell_output table')) {
      const r = e.getBoundingClientRect();
      if (r.right > right + 1 || e.scrollWidth > e.clientWidth + 1)
        out.push(`output wider than the column (${Math.round(r.width)}, `
                 + `${e.scrollWidth} px): ` + show(e));
    }
  }
  return out;
}"""

FIGURES = """() => {
  const code = document.querySelector('article.bd-article pre');
  return {
    code: code ? parseFloat(getComputedStyle(code).fontSize) : null,
    images: Array.from(document.querySelectorAll('article.bd-article img'))
      .filter(img => img.src.includes('/_images/'))
      .map(img => ({src: img.getAttribute('src'), complete: img.complete,
                    natural: img.naturalWidth,
                    shown: img.getBoundingClientRect().width})),
  };
}"""

SOLUTIONS = """() => {
  const article = document.querySelector('article.bd-article');
  const text = article.textContent.replace(/\\s+/g, ' ');
  const norm = t => t.replace(/\\s+/g, ' ').trim();
  // the longest stretch of plain text (no math: MathJax has replaced its text)
  // in each solution, if the page says it nowhere else
  const longest = solution => {
    const walker = document.createTreeWalker(solution, NodeFilter.SHOW_TEXT);
    let best = '', node;
    while ((node = walker.nextNode())) {
      const t = norm(node.data);
      if (!node.parentElement.closest('mjx-container') && t.length > best.length)
        best = t;
    }
    return best;
  };
  const all = Array.from(article.querySelectorAll('.solution'));
  return {
    exercises: article.querySelectorAll('.exercise').length,
    solutions: all.length,
    sentences: all.map(longest)
      .filter(t => t.length >= 30 && text.split(t).length == 2),
  };
}"""


def typeset(page) -> dict:
    """Wait for MathJax's first typesetting pass, then report what is left as TeX.

    Sphinx loads MathJax only on pages with math, so a page without math is
    checked for stray delimiters alone."""
    if page.locator("article.bd-article .math").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup")
        page.evaluate("() => MathJax.startup.promise")
    page.evaluate(OPEN_ALL)
    return page.evaluate(UNTYPESET)


@pytest.fixture(scope="module")
def chapters(browser, site_url) -> dict[str, dict]:
    """Every chapter page, visited once at 1280 px with the network cut off (as in
    `offline_page`), and what the tests below check on it."""
    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = context.new_page()
    external: list[str] = []

    def route(r) -> None:
        url = r.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlparse(url).hostname == (
            "127.0.0.1"
        ):
            r.continue_()
        else:
            external.append(url)
            r.abort()

    page.route("**/*", route)
    found = {}
    for name in chapter_pages():
        page.goto(f"{site_url}/{name}")
        found[name] = {
            "math": typeset(page),  # opens every dropdown, for the checks below
            "overflow": page.evaluate(OVERFLOW),
            "figures": page.evaluate(FIGURES),
            "solutions": page.evaluate(SOLUTIONS),
            "external": list(external),
        }
        external.clear()
    context.close()
    assert len(found) > 10
    return found


def test_equations_render_offline(site_url, offline_page):
    """MathJax comes from the site itself: with the network cut off, the
    equations are typeset and no TeX is left in the page's text."""
    page, external = offline_page
    page.goto(site_url + MATH_PAGE)
    mathjax = page.evaluate(
        "() => Array.from(document.scripts, s => s.src).filter(s => /mathjax/i.test(s))"
    )
    assert len(mathjax) == 1 and mathjax[0].startswith(site_url), mathjax
    found = typeset(page)
    assert found["typeset"] >= 50, "the attention chapter is full of equations"
    assert found == {**found, "bare": [], "errors": [], "delimiters": []}
    assert external == [], f"the page asked for {external}"


def test_every_chapter_typesets_all_its_math(chapters):
    keys = ("bare", "errors", "delimiters")
    problems = {
        name: {key: found["math"][key] for key in keys if found["math"][key]}
        for name, found in chapters.items()
    }
    assert {name: p for name, p in problems.items() if p} == {}
    asked = {name: found["external"] for name, found in chapters.items()}
    assert {name: a for name, a in asked.items() if a} == {}, "asked for the network"


def test_code_and_outputs_fit_the_column(chapters):
    """At 1280 px no code block (cell input, or code in the prose) and no output
    scrolls sideways or sticks out of the column: long lines wrap
    (_static/lmbook.css)."""
    problems = {name: found["overflow"] for name, found in chapters.items()}
    assert {name: p for name, p in problems.items() if p} == {}


WRAPPED = """() => {
  const pre = document.querySelector('div.cell_input pre');
  const probe = document.createElement('span');
  probe.textContent = '0'.repeat(40);
  pre.appendChild(probe);
  const ch = probe.getBoundingClientRect().width / 40;
  probe.remove();
  return Array.from(document.querySelectorAll('div.cell_input pre span.lmbook-line'))
    .filter(s => s.getClientRects().length > 0 && s.getBoundingClientRect().height
                 > 1.5 * parseFloat(getComputedStyle(s).lineHeight))
    .map(s => ({text: s.textContent,
                indent: s.textContent.length - s.textContent.trimStart().length,
                hang: parseFloat(getComputedStyle(s).paddingLeft) / ch,
                first: parseFloat(getComputedStyle(s).textIndent) / ch}));
}"""


def test_long_code_lines_wrap_with_a_hanging_indent(site_url, page):
    """A wrapped line's continuation hangs 2 characters deeper than the line's own
    indentation (between two levels of Python's); the text of the block, which
    the copy button copies, is the code as written."""
    page.set_viewport_size({"width": WIDTH, "height": 800})
    page.goto(site_url + MATH_PAGE)
    assert page.locator("div.cell_input pre span.lmbook-line").count() > 100
    wrapped = page.evaluate(WRAPPED)
    assert wrapped, "the chapter has lines longer than the column"
    assert any(line["indent"] for line in wrapped), "and some are indented"
    for line in wrapped:
        assert line["hang"] == pytest.approx(line["indent"] + 2, abs=0.05), line
        assert line["first"] == pytest.approx(-line["hang"], abs=0.05), line
    for pre in page.locator("div.cell_input pre").all()[:5]:
        lines = pre.locator("span.lmbook-line").all_text_contents()
        code = pre.evaluate("e => e.textContent").rstrip("\n")
        assert "\n".join(lines) == code
        # what sphinx-copybutton copies: the innerText of a (detached) clone
        assert pre.evaluate("e => e.cloneNode(true).innerText").rstrip("\n") == code


# Matplotlib's default font size (rcParams["font.size"], which tick and axis labels
# use), in points; a figure's dpi turns it into pixels.
FIGURE_FONT_PT = 10
DEFAULT_DPI = 100  # matplotlib's figure.dpi, for a PNG that does not record its own
HALF_PIXEL = 0.5  # 10 pt at 100 dpi is 13.9 px: the 14 px code font, once rounded


def png_dpi(path: Path) -> float | None:
    """The resolution a PNG records (its pHYs chunk), in dots per inch."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG"):
        return None
    at = data.find(b"pHYs")
    if at < 0:
        return None
    x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    return x * 0.0254 if unit == 1 else None


def test_figure_text_is_no_smaller_than_the_code_font(chapters):
    """A figure shrunk to fit the column shrinks its text: at 1280 px, the
    figure's default text (10 pt at the PNG's dpi, times the scale it is shown
    at) must be at least as large as the code font. Equivalently, a matplotlib
    figure with default fonts is at most about 6.9 inches wide."""
    small, checked = [], 0
    for name, found in chapters.items():
        code = found["figures"]["code"]
        for img in found["figures"]["images"]:
            assert img["complete"] and img["natural"] > 0, f"{name}: {img['src']}"
            checked += 1
            file = (SITE / name).parent / img["src"]
            dpi = png_dpi(file) or DEFAULT_DPI
            scale = img["shown"] / img["natural"]
            text_px = FIGURE_FONT_PT * dpi / 72 * scale
            if text_px < code - HALF_PIXEL:
                widest = FIGURE_FONT_PT * img["shown"] / 72 / (code - HALF_PIXEL)
                small.append(
                    f"{name} {file.name}: {img['natural']} px at {dpi:.0f} dpi "
                    f"({img['natural'] / dpi:.1f} in) shown at {img['shown']:.0f} px "
                    f"({scale:.0%}): {FIGURE_FONT_PT} pt text is {text_px:.1f} px, "
                    f"the code font {code:.0f} px; make it at most {widest:.1f} in wide"
                )
    assert checked >= 20, "the chapters have figures"
    assert small == [], "figures whose text is too small:\n" + "\n".join(small)


# ---- fonts and the page's frame ------------------------------------------------------

# Han characters under `root`, drawn in the font of the element that holds them
# and compared, pixel for pixel, with what the same font draws for characters no
# font has (the "tofu" box of .notdef). Two such characters must draw alike, or the
# comparison would prove nothing.
HAN_GLYPHS = r"""(root) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 48;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const draw = (font, ch) => {
    ctx.clearRect(0, 0, 48, 48);
    ctx.font = font;
    ctx.textBaseline = 'top';
    ctx.fillText(ch, 4, 4);
    return Array.from(ctx.getImageData(0, 0, 48, 48).data).join(',');
  };
  const walker = document.createTreeWalker(
    document.querySelector(root), NodeFilter.SHOW_TEXT);
  const seen = new Map();
  const texts = [];
  let node;
  while ((node = walker.nextNode())) {
    const han = node.data.match(/\p{Script=Han}/gu);
    if (!han) continue;
    texts.push(node.data);
    const font = `32px ${getComputedStyle(node.parentElement).fontFamily}`;
    if (!seen.has(font)) seen.set(font, new Set());
    han.forEach(ch => seen.get(font).add(ch));
  }
  const fonts = [];
  for (const [font, chars] of seen) {
    const box = draw(font, '\u{10FFFD}');
    fonts.push({font, control: draw(font, '\u{10FFFC}') === box,
                boxes: Array.from(chars).filter(ch => draw(font, ch) === box)});
  }
  return {texts, fonts};
}"""


def require_chinese_font() -> None:
    """Skip (fail under CI) when fontconfig knows no font for Chinese."""
    if shutil.which("fc-list"):
        found = subprocess.run(
            ["fc-list", ":lang=zh-cn", "family"], capture_output=True, text=True
        )
        require(
            bool(found.stdout.strip()),
            "no Chinese font: apt-get install fonts-noto-cjk (`make chromium` does)",
        )


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (GLOSSARY, ["注意力", "困惑度", "双曲正切"]),
        (MATH_PAGE, ["我", "喜欢", "吃", "水果"]),  # in the prose and in a code cell
    ],
)
def test_chinese_renders_as_glyphs_not_boxes(site_url, page, path, words):
    """Debian's fonts-noto-cjk (`make chromium` installs it) draws the glossary's
    Chinese terms and the bilingual example's tokens, in prose and in code."""
    require_chinese_font()
    page.goto(site_url + path)
    page.evaluate("() => document.fonts.ready.then(() => true)")
    found = page.evaluate(HAN_GLYPHS, "article.bd-article")
    text = "".join(found["texts"])
    assert all(w in text for w in words), f"expected {words} on {path}"
    assert len(found["fonts"]) >= (2 if path == MATH_PAGE else 1)
    assert_no_boxes(found)


def assert_no_boxes(found: dict) -> None:
    """Check what HAN_GLYPHS found: every Han character drawn as a glyph."""
    for font in found["fonts"]:
        assert font["control"], f"{font['font']}: the missing-glyph box is not stable"
        assert font["boxes"] == [], (
            f"{font['font']} draws {font['boxes']} as boxes: install fonts-noto-cjk"
        )


@pytest.mark.parametrize("width", [WIDTH, 800])
def test_one_search_field(site_url, page, width):
    """One search control on the screen: on a wide one, the sidebar's field, with
    no top band repeating it (_config.yml, navbar_persistent); on a narrow one,
    the article header's button."""
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(site_url + BACKGROUND)
    visible = page.locator(".search-button-field:visible, .search-button:visible")
    assert visible.count() == 1
    if width == WIDTH:
        assert page.locator(".bd-sidebar-primary .search-button-field").is_visible()
    box = page.locator("header.bd-header").bounding_box()
    assert box is None or box["height"] == 0, "a top band"
    visible.first.click()
    search = page.locator("#pst-search-dialog input, .search-button__wrapper input")
    search.first.wait_for(state="visible", timeout=5000)


# ---- the student edition -------------------------------------------------------

TAG = re.compile(r"<[^>]+>")
SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1>", re.S)


def page_text(path: Path) -> str:
    """A page's text, as textContent gives it (tags out, entities decoded)."""
    raw = SCRIPT_OR_STYLE.sub(" ", path.read_text("utf-8"))
    return re.sub(r"\s+", " ", html.unescape(TAG.sub("", raw)))


def test_student_edition_keeps_exercises_drops_solutions(chapters):
    """`make student`: the same chapters and exercises, and no solution, neither on
    the pages nor in the notebooks the download button offers (_sources)."""
    require(
        (STUDENT_SITE / "index.html").exists(),
        f"{STUDENT_SITE} is not built: run `make student` first",
    )
    assert chapter_pages(STUDENT_SITE) == chapter_pages()
    sentences = 0
    for name, found in chapters.items():
        solutions = found["solutions"]
        raw = (STUDENT_SITE / name).read_text("utf-8")
        assert len(re.findall(r'class="exercise\b', raw)) == solutions["exercises"]
        assert 'class="solution' not in raw, name
        text = page_text(STUDENT_SITE / name)
        for sentence in solutions["sentences"]:
            assert sentence in page_text(SITE / name), f"{name}: {sentence[:80]}"
            assert sentence not in text, f"{name}: {sentence[:80]}"
            sentences += 1
    assert sentences >= 30, "the chapters' solutions were checked"
    with_solutions = 0
    for source in sorted((SITE / "_sources").rglob("*.*")):
        full = source.read_text("utf-8")
        student = (STUDENT_SITE / source.relative_to(SITE)).read_text("utf-8")
        with_solutions += "{solution}" in full
        assert "{solution}" not in student, source.name
        assert student.count("{exercise}") == full.count("{exercise}"), source.name
    assert with_solutions >= 10
    assert (STUDENT_SITE / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
