"""AttentionView in a real browser: Debian chromium driven by Playwright.

`check_view` holds the checks and runs on any page that shows a view: standalone
pages written by `save_html` here, and the built chapter page of the website. It
compares what is drawn (``data-weight`` attributes in the DOM) with the weights in
the view's own payload, and the payload with the tensors when they are known.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from lmbook.viz import AttentionView
from lmbook.viz import attention_view as av
from tests.test_site import HAN_GLYPHS, assert_no_boxes, require_chinese_font

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_PAGES = ["chapters/02-core-concepts/attention-in-a-real-model.html"]
HOSTILE = "</script><img src=x onerror=alert(1)>"
STEP = 1 / 255  # one uint8 level
DRAWN = (
    "(r, sel) => Array.from(r.querySelectorAll(sel)).map(e => [+e.dataset.q, "
    "+e.dataset.k, +(e.dataset.head || 0), +e.dataset.weight])"
)
TOKEN_WEIGHTS = (
    "(r, sel) => Array.from(r.querySelectorAll(sel)).map("
    "e => e.hasAttribute('data-weight') ? +e.dataset.weight : null)"
)


def random_attentions(n_layer, n_head, T, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.softmax(scale * torch.randn(1, n_head, T, T, generator=g), dim=-1)
        for _ in range(n_layer)
    )


def shown(token: str) -> str:
    """How the view prints a token (whitespace made visible)."""
    if token == "":
        return "\u2205"
    return token.replace(" ", "\u2423").replace("\n", "\u23ce").replace("\t", "\u21e5")


# ---- reusable checks ---------------------------------------------------------------


def read_payload(root) -> tuple[dict, np.ndarray]:
    """The view's payload and its weights as uint8 levels (L, nh, T, T)."""
    payload = json.loads(root.locator("script.lmbook-attn-data").text_content())
    raw = base64.b64decode(payload["data"])
    if payload["deflate"]:
        raw = zlib.decompress(raw)
    L, H, T = payload["L"], payload["H"], payload["T"]
    return payload, np.frombuffer(raw, np.uint8).reshape(L, H, T, T).astype(np.int64)


def _tokens(root, side: str):
    return root.locator(f".lmbook-attn-{side} .lmbook-attn-tok")


def _choose(root, layer, head, mode="lines") -> None:
    root.locator("select.lmbook-attn-layer").select_option(str(layer))
    root.locator("select.lmbook-attn-head").select_option(str(head))
    root.locator("select.lmbook-attn-mode").select_option(mode)
    assert root.get_attribute("data-layer") == str(layer)
    assert root.get_attribute("data-head") == str(head)
    assert root.get_attribute("data-mode") == mode


def _heads(levels, layer, head) -> list[int]:
    return list(range(levels.shape[1])) if head == "all" else [head]


def _mean(levels, layer, head) -> np.ndarray:
    """What the view shows for (query, key): the level / 255, mean over heads."""
    hs = _heads(levels, layer, head)
    return levels[layer, hs].sum(0) / len(hs) / 255  # (T, T)


def check_lines(root, levels, layer, head, min_line) -> None:
    """Every line at or above the threshold is drawn, with its data-weight."""
    drawn = root.evaluate(DRAWN, ".lmbook-attn-all line")
    expected = {
        (i, j, h): levels[layer, h, i, j] / 255
        for h in _heads(levels, layer, head)
        for i, j in zip(*np.nonzero(levels[layer, h]), strict=True)
        if levels[layer, h, i, j] / 255 >= min_line
    }
    got = {(q, k, h): w for q, k, h, w in drawn}
    assert len(got) == len(drawn), "a line is drawn twice"
    assert got.keys() == expected.keys()
    for key, w in got.items():
        assert abs(w - expected[key]) <= 6e-5, (key, w, expected[key])


def check_matrix(root, levels, layer, head) -> None:
    cells = root.evaluate(DRAWN, ".lmbook-attn-all rect")
    T = levels.shape[-1]
    assert len(cells) == T * T
    got = np.zeros((T, T))
    for q, k, _, w in cells:
        got[q, k] = w
    np.testing.assert_allclose(got, _mean(levels, layer, head), atol=6e-5, rtol=0)


def check_hover(page, root, levels, layer, head, side: str, index: int) -> None:
    """Hovering a token shows its lines only and shades the other column."""
    _tokens(root, "left" if side == "q" else "right").nth(index).hover()
    assert root.get_attribute("data-active") == f"{side}{index}"
    lines = root.evaluate(DRAWN, ".lmbook-attn-focus line")
    mean = _mean(levels, layer, head)
    vector = mean[index] if side == "q" else mean[:, index]  # over the other side
    for q, k, h, w in lines:
        assert (q if side == "q" else k) == index
        assert abs(w - levels[layer, h, q, k] / 255) <= 6e-5
    n_expected = sum(
        int(
            np.count_nonzero(
                levels[layer, h, index] if side == "q" else levels[layer, h, :, index]
            )
        )
        for h in _heads(levels, layer, head)
    )
    assert len(lines) == n_expected
    other = "right" if side == "q" else "left"
    shade = root.evaluate(TOKEN_WEIGHTS, f".lmbook-attn-{other} .lmbook-attn-tok")
    np.testing.assert_allclose(np.array(shade, dtype=float), vector, atol=6e-5)
    best = int(np.argmax(shade))
    assert vector[best] >= vector.max() - 1e-9  # the strongest target is the argmax
    hits = root.evaluate(
        "(r, s) => Array.from(r.querySelectorAll(s)).map(e => +e.dataset.index)",
        f".lmbook-attn-{other} .lmbook-attn-hit",
    )
    assert hits == [int(n) for n in np.nonzero(vector > 0)[0]]
    page.mouse.move(0, 0)


def expected_announcement(tokens, vector, top_k) -> list[str]:
    order = sorted((-v, n) for n, v in enumerate(vector) if v > 0)[:top_k]
    return [f"\u201c{shown(tokens[n])}\u201d {-v:.2f}" for v, n in order]


def _assert_in_order(text: str, parts: list[str]) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, (part, text)
        at = found + len(part)


def check_keyboard(page, root, levels, tokens, layer, head, top_k) -> None:
    """Tab reaches the tokens, arrows move, Enter selects, the live region reads."""
    T = levels.shape[-1]
    page.mouse.move(0, 0)
    root.locator("select.lmbook-attn-mode").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.dataset.side, "
        "+document.activeElement.dataset.index]"
    )
    assert focused[0] == "q", "Tab after the controls must reach the query tokens"
    live = root.locator(".lmbook-attn-live")
    assert live.get_attribute("aria-live") == "polite"
    mean = _mean(levels, layer, head)
    start = focused[1]
    for _ in range(min(2, T - 1 - start)):
        page.keyboard.press("ArrowDown")
        start += 1
    if T > 1 and start == focused[1]:
        page.keyboard.press("ArrowUp")
        start -= 1
    assert root.get_attribute("data-active") == f"q{start}"
    text = live.text_content()
    assert "attends most to" in text
    _assert_in_order(text, expected_announcement(tokens, mean[start], top_k))
    page.keyboard.press("ArrowRight")
    assert root.get_attribute("data-active") == f"k{start}"
    text = live.text_content()
    assert "is attended to most by" in text
    _assert_in_order(text, expected_announcement(tokens, mean[:, start], top_k))
    page.keyboard.press("Enter")
    token = _tokens(root, "right").nth(start)
    assert token.get_attribute("aria-pressed") == "true"
    page.keyboard.press("Tab")  # focus leaves the view: the selection stays
    assert root.get_attribute("data-active") == f"k{start}"
    token.focus()
    page.keyboard.press("Enter")  # toggles it off again
    assert token.get_attribute("aria-pressed") == "false"
    page.keyboard.press("ArrowLeft")
    assert root.get_attribute("data-active") == f"q{start}"
    root.locator("select.lmbook-attn-mode").focus()
    assert root.get_attribute("data-active") == ""


def check_view(page, root, weights=None, tokens=None, picks=None) -> None:
    """Run every check on one view. `weights` (L, nh, T, T) and `tokens`, if given,
    are compared with the view's payload; `picks` are (layer, head) to visit."""
    root.wait_for(state="attached")
    page.wait_for_function(
        "r => r.hasAttribute('data-ready')", arg=root.element_handle()
    )
    assert root.get_attribute("data-error") is None
    payload, levels = read_payload(root)
    L, H, T = payload["L"], payload["H"], payload["T"]
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
        torch.testing.assert_close(
            torch.from_numpy(levels / 255), w, atol=0.5 * STEP + 1e-6, rtol=0
        )
    if tokens is not None:
        assert payload["tokens"] == list(tokens)
    tokens = payload["tokens"]
    assert root.locator(".lmbook-attn-fallback").count() == 0
    for side in ("left", "right"):
        assert _tokens(root, side).count() == T
        titles = root.evaluate(
            "(r, s) => Array.from(r.querySelectorAll(s)).map(e => e.title)",
            f".lmbook-attn-{side} .lmbook-attn-tok",
        )
        assert titles == tokens
    picks = picks or [(0, 0), (L - 1, H - 1)]
    for layer, head in picks:
        _choose(root, layer, head)
        check_lines(root, levels, layer, head, payload["minLine"])
        check_hover(page, root, levels, layer, head, "q", T // 2)
        check_hover(page, root, levels, layer, head, "k", T - 1)
        check_keyboard(page, root, levels, tokens, layer, head, payload["topK"])
    layer = picks[-1][0]
    _choose(root, layer, "all")
    assert root.locator(".lmbook-attn-legend").is_visible()
    check_lines(root, levels, layer, "all", payload["minLine"])
    check_hover(page, root, levels, layer, "all", "q", 0)
    if H > 1:  # switching a head off removes its lines
        root.locator(".lmbook-attn-headbtn").nth(0).click()
        drawn = root.evaluate(DRAWN, ".lmbook-attn-all line")
        assert drawn and {h for _, _, h, _ in drawn} <= set(range(1, H))
        root.locator(".lmbook-attn-headbtn").nth(0).click()
    _choose(root, layer, "all", "matrix")
    check_matrix(root, levels, layer, "all")
    _choose(root, 0, 0, "matrix")
    check_matrix(root, levels, 0, 0)
    _tokens(root, "left").nth(0).hover()
    assert root.get_attribute("data-active") == "q0"
    page.mouse.move(0, 0)
    _choose(root, 0, 0, "lines")


# ---- standalone pages ----------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def served(tmp_path):
    """`tmp_path` served over HTTP on 127.0.0.1 (a free port)."""
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def page(offline_page):
    """A page that records every request and every dialog."""
    page, external = offline_page
    page.requests, page.dialogs = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    assert external == [], f"requests left 127.0.0.1: {external}"
    assert page.errors == []
    assert all(u.startswith("http://127.0.0.1:") for u in page.requests), page.requests


def write_page(folder: Path, name: str, *views: AttentionView) -> str:
    body = "\n".join(v._repr_html_() for v in views)
    text = f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}'
    (folder / name).write_text(text + "</body></html>", "utf-8")
    return name


def test_standalone_page_draws_the_right_weights(served, page):
    folder, url = served
    att = random_attentions(n_layer=3, n_head=4, T=7, seed=1)
    tokens = ["[CLS]", "the", "cat", " ", "sat", "\n", "[SEP]"]
    AttentionView(att, tokens, title="Cats").save_html(folder / "view.html")
    page.goto(f"{url}/view.html")
    assert page.title() == "Cats"
    root = page.locator(".lmbook-attn")
    check_view(page, root, torch.cat(att), tokens, picks=[(0, 0), (1, 3), (2, 1)])


def test_hostile_tokens_stay_inert(served, page):
    folder, url = served
    tokens = ["a", HOSTILE, "<b>bold</b>", "&amp;"]
    view = AttentionView(random_attentions(1, 2, 4, seed=2), tokens, title=HOSTILE)
    view.save_html(folder / "hostile.html")
    page.goto(f"{url}/hostile.html")
    root = page.locator(".lmbook-attn")
    check_view(page, root, tokens=tokens)
    _tokens(root, "left").nth(1).hover()
    page.keyboard.press("Tab")
    assert page.dialogs == []
    assert page.evaluate("() => document.querySelectorAll('img, b').length") == 0
    assert root.locator(".lmbook-attn-title").text_content() == HOSTILE
    assert _tokens(root, "left").nth(2).text_content() == "<b>bold</b>"
    assert page.title() == HOSTILE


def test_two_views_on_one_page_do_not_interfere(served, page):
    folder, url = served
    first = random_attentions(2, 3, 5, seed=3)
    second = random_attentions(3, 2, 6, seed=4)
    name = write_page(
        folder,
        "two.html",
        AttentionView(first, list("abcde")),
        AttentionView(second, list("uvwxyz"), head=1, mode="matrix"),
    )
    page.goto(f"{url}/{name}")
    roots = page.locator(".lmbook-attn")
    assert roots.count() == 2
    a, b = roots.nth(0), roots.nth(1)
    page.wait_for_function(
        "() => document.querySelectorAll('.lmbook-attn[data-ready]').length == 2"
    )
    assert (b.get_attribute("data-head"), b.get_attribute("data-mode")) == (
        "1",
        "matrix",
    )
    b_cells = b.evaluate(DRAWN, ".lmbook-attn-all rect")
    _choose(a, 1, 2)
    _tokens(a, "left").nth(3).hover()
    assert a.get_attribute("data-active") == "q3"
    assert b.get_attribute("data-layer") == "0" and b.get_attribute("data-active") == ""
    assert b.evaluate(DRAWN, ".lmbook-attn-all rect") == b_cells
    assert (
        len(
            page.evaluate(
                "() => Array.from(document.querySelectorAll("
                "'.lmbook-attn')).map(e => e.id)"
            )
        )
        == 2
    )
    check_view(page, a, torch.cat(first))
    check_view(page, b, torch.cat(second))


def test_compressed_payload_is_decoded_in_the_browser(served, page, monkeypatch):
    folder, url = served
    monkeypatch.setattr(av, "DEFLATE_ABOVE", 0)
    att = random_attentions(2, 2, 6, seed=5)
    view = AttentionView(att, list("qwerty"))
    assert view.payload()["deflate"]
    view.save_html(folder / "deflate.html")
    page.goto(f"{url}/deflate.html")
    check_view(page, page.locator(".lmbook-attn"), torch.cat(att), picks=[(1, 1)])


def test_chinese_tokens_render_as_glyphs(served, page):
    """A bilingual view (the attention chapter's example): its Chinese tokens are
    drawn with a font that has them, not as boxes."""
    require_chinese_font()
    folder, url = served
    tokens = ["我", "喜欢", "吃", "水果", "I", "like", "eating", "fruit"]
    att = random_attentions(1, 2, len(tokens), seed=6)
    AttentionView(att, tokens, title="我 喜欢 吃 水果").save_html(folder / "zh.html")
    page.goto(f"{url}/zh.html")
    root = page.locator(".lmbook-attn")
    check_view(page, root, torch.cat(att), tokens, picks=[(0, 1)])
    found = page.evaluate(HAN_GLYPHS, ".lmbook-attn")
    assert "".join(found["texts"]).count("水果") >= 2  # a token in each column
    assert_no_boxes(found)


# ---- the built website ---------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTER_PAGES)
def test_chapter_views_work_on_the_built_site(site_url, offline_page, chapter):
    if not (ROOT / "_build" / "html" / chapter).exists():
        pytest.skip(f"_build/html/{chapter} is not built (is it in _toc.yml?)")
    page, _ = offline_page
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{site_url}/{chapter}")
    roots = page.locator(".lmbook-attn")
    assert roots.count() >= 2, "the chapter shows attention views"
    for i in range(roots.count()):
        root = roots.nth(i)
        root.scroll_into_view_if_needed()
        check_view(page, root, picks=[(0, 0)] if i else None)
    # the explorer shows its static view on the site, not a dead widget
    assert page.locator(".jupyter-widgets, .widget-text").count() == 0
    # no script on the page failed: the views', the theme's or an extension's
    assert errors == []
