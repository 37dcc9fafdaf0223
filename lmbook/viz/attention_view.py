"""An interactive attention view that works anywhere HTML does, with no network.

Python checks the attention maps and serialises them; a small JavaScript library,
shipped as package data and inlined into the HTML, draws them. The line view follows
bertviz's head view (Vig, 2019, "A Multiscale Visualization of Attention in the
Transformer Model"); unlike bertviz, nothing is loaded from a CDN, so the same
fragment works on a static web page, in Colab, JupyterLab, classic Notebook and
VS Code. Attention itself is the softmax of Vaswani et al. (2017).
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import os
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from lmbook.fileio import atomic_write, check_path

ROW_SUM_ATOL = 1e-3  # every attention row must sum to 1 within this tolerance
DEFLATE_ABOVE = 256 * 1024  # compress the weights when they exceed this many bytes
MODES = ("lines", "matrix")
_counter = itertools.count(1)


def _static(name: str) -> str:
    return resources.files("lmbook.viz").joinpath("static", name).read_text("utf-8")


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor | np.ndarray):
        return f"{type(x).__name__} of shape {tuple(x.shape)}"
    return type(x).__name__


def _as_float_tensor(x: object, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must hold floating-point weights, got {x.dtype}")
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array, got {_describe(x)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floating-point weights, got dtype {x.dtype}")
    return x.detach().to("cpu", torch.float32)


def _check_index(value: object, name: str, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in [0, {size}), got {value}")
    return value


def stack_attentions(attentions: object, batch_index: int = 0) -> torch.Tensor:
    """Check attention maps and return them as one float32 CPU tensor (L, nh, T, T).

    `attentions` is either Hugging Face's layout, a tuple or list with one
    (B, nh, T, T) tensor per layer (``output_attentions=True``, or lmbook's
    ``GPT.attention_maps``), from which example `batch_index` is taken; or a single
    4-D tensor read as (n_layer, nh, T, T). Weights must be finite, non-negative,
    and every row must sum to 1 within ``ROW_SUM_ATOL``.
    """
    if isinstance(attentions, tuple | list):
        if not attentions:
            raise ValueError("attentions is empty; expected one tensor per layer")
        layers = [
            _as_float_tensor(a, f"attentions[{i}]") for i, a in enumerate(attentions)
        ]
        for i, a in enumerate(layers):
            if a.dim() != 4:
                raise ValueError(
                    f"attentions[{i}] must have shape (B, n_head, T, T), "
                    f"got {tuple(a.shape)}"
                )
            if a.shape != layers[0].shape:
                raise ValueError(
                    f"every layer must have the same shape (B, n_head, T, T); "
                    f"attentions[0] is {tuple(layers[0].shape)} but attentions[{i}] "
                    f"is {tuple(a.shape)}"
                )
        _check_index(batch_index, "batch_index", layers[0].shape[0])
        weights = torch.stack([a[batch_index] for a in layers])  # (L, nh, T, T)
    elif isinstance(attentions, torch.Tensor | np.ndarray):
        weights = _as_float_tensor(attentions, "attentions")
        if weights.dim() != 4:
            raise ValueError(
                "a single attentions tensor must have shape (n_layer, n_head, T, T), "
                f"got {tuple(weights.shape)}; pass a tuple of (B, n_head, T, T) "
                "tensors for a batch"
            )
        if batch_index != 0:
            raise ValueError(
                "batch_index applies to a tuple of (B, n_head, T, T) tensors; a single "
                f"4-D tensor is read as (n_layer, n_head, T, T), got batch_index="
                f"{batch_index!r}"
            )
    else:
        raise TypeError(
            "attentions must be a tuple or list of (B, n_head, T, T) tensors (one per "
            "layer) or a 4-D tensor (n_layer, n_head, T, T), got "
            f"{type(attentions).__name__}"
        )
    return check_weights(weights, "attentions")


def check_weights(weights: torch.Tensor, name: str) -> torch.Tensor:
    """Check (..., T, T) weights: square, finite, >= 0, rows summing to 1."""
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(
            f"{name} must be square in its last two dimensions (T, T), "
            f"got {tuple(weights.shape)}"
        )
    if weights.shape[-1] == 0:
        raise ValueError(f"{name} has no tokens (T = 0)")
    bad = ~torch.isfinite(weights)
    if bad.any():
        where = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{name} contains NaN or infinite values, first at {where}")
    if (weights < 0).any():
        where = tuple(torch.nonzero(weights < 0)[0].tolist())
        raise ValueError(
            f"{name} must be non-negative; got {weights.min().item():.4g} "
            f"(first negative at {where})"
        )
    err = (weights.sum(-1) - 1).abs()  # (..., T)
    if (err > ROW_SUM_ATOL).any():
        where = tuple(torch.nonzero(err > ROW_SUM_ATOL)[0].tolist())
        total = weights.sum(-1)[where].item()
        raise ValueError(
            f"every row of {name} must sum to 1 (atol {ROW_SUM_ATOL}); the row at "
            f"{where} sums to {total:.4g}"
        )
    return weights


def check_tokens(tokens: object, T: int) -> list[str]:
    """Check that `tokens` is a list (or tuple) of T strings."""
    if not isinstance(tokens, list | tuple):
        raise TypeError(f"tokens must be a list of str, got {type(tokens).__name__}")
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            raise TypeError(f"tokens[{i}] must be a str, got {type(tok).__name__}")
    if len(tokens) != T:
        raise ValueError(
            f"tokens has {len(tokens)} entries but the attention maps have T={T} "
            "queries and keys; pass one token per position"
        )
    return list(tokens)


def _escape_json(obj: object) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' survive literally."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def quantize(weights: torch.Tensor) -> np.ndarray:
    """Weights in [0, 1] -> uint8 levels ``round(255 w)``, same shape."""
    return torch.round(weights.clamp(0, 1) * 255).to(torch.uint8).numpy()


class AttentionView:
    """Interactive view of every layer and head of self-attention maps.

    attentions: tuple/list of (B, nh, T, T) tensors, one per layer (Hugging Face's
        ``output_attentions`` layout and ``GPT.attention_maps``), or one tensor
        (n_layer, nh, T, T). Rows must sum to 1 within ``ROW_SUM_ATOL``.
    tokens: list of T strings (shown as text, never interpreted as HTML).
    batch_index: which example of the batch to show.
    layer, head: initially shown; head may be ``"all"`` (heads overlaid).
    mode: ``"lines"`` (bertviz-style lines) or ``"matrix"`` (a heatmap).
    top_k: how many attended tokens the text alternative lists.
    controls: show the layer/head/view selectors.
    line_threshold: the overview of all lines skips lines lighter than this (they
        are invisible, and a 128-token view would draw 16k lines per head); the
        lines of a hovered or focused token are all drawn.

    Weights are stored as uint8 levels (steps of 1/255); lines whose weight rounds
    to 0 are never drawn. Display it in Jupyter, or `save_html` a standalone page.
    """

    def __init__(
        self,
        attentions: Sequence[torch.Tensor] | torch.Tensor,
        tokens: Sequence[str],
        *,
        batch_index: int = 0,
        title: str | None = None,
        top_k: int = 3,
        layer: int = 0,
        head: int | str = 0,
        mode: str = "lines",
        controls: bool = True,
        line_threshold: float = 0.01,
    ) -> None:
        self.weights = stack_attentions(attentions, batch_index)  # (L, nh, T, T)
        n_layer, n_head, T, _ = self.weights.shape
        self.tokens = check_tokens(tokens, T)
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title must be a str or None, got {type(title).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.layer = _check_index(layer, "layer", n_layer)
        if isinstance(head, str) and head != "all":
            raise ValueError(f"head must be an int or 'all', got {head!r}")
        if head != "all":
            _check_index(head, "head", n_head)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(controls, bool):
            raise TypeError(f"controls must be a bool, got {type(controls).__name__}")
        if isinstance(line_threshold, bool) or not isinstance(
            line_threshold, int | float
        ):
            raise TypeError(
                f"line_threshold must be a float, got {type(line_threshold).__name__}"
            )
        if not 0.0 <= line_threshold < 1.0:
            raise ValueError(f"line_threshold must be in [0, 1), got {line_threshold}")
        self.line_threshold = float(line_threshold)
        self.title, self.top_k, self.head = title, top_k, head
        self.mode, self.controls = mode, controls

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_layer, n_head, T)."""
        return tuple(self.weights.shape[:3])

    def __repr__(self) -> str:
        n_layer, n_head, T = self.shape
        return f"AttentionView(n_layer={n_layer}, n_head={n_head}, T={T})"

    def payload(self) -> dict:
        """The data the JavaScript draws: weights as base64 uint8 levels."""
        n_layer, n_head, T = self.shape
        raw = quantize(self.weights).tobytes()  # layer, head, query, key order
        deflate = len(raw) > DEFLATE_ABOVE
        if deflate:
            raw = zlib.compress(raw, 6)
        return {
            "v": 1,
            "L": n_layer,
            "H": n_head,
            "T": T,
            "tokens": self.tokens,
            "layer": self.layer,
            "head": self.head,
            "mode": self.mode,
            "topK": self.top_k,
            "minLine": self.line_threshold,
            "controls": self.controls,
            "deflate": deflate,
            "data": base64.b64encode(raw).decode("ascii"),
        }

    def _element_id(self) -> str:
        """A new element id: ``lmbook-attn-<n>-<hash>``, unique on the page.

        n counts the views rendered in this process; the hash covers the tokens,
        shape and settings, so outputs left from before a kernel restart do not
        clash. It never covers the weights: their last bits differ between CPUs,
        and the id is part of the stored output that nbval compares.
        """
        key = json.dumps(
            [self.tokens, self.shape, self.layer, self.head, self.mode, self.title],
            ensure_ascii=True,
        )
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        return f"lmbook-attn-{next(_counter)}-{digest}"

    def _repr_html_(self) -> str:
        """One self-contained HTML fragment (inline CSS and JS; no network)."""
        payload = _escape_json(self.payload())
        uid = self._element_id()
        js = _static("attention_view.js")
        if "</script" in js.lower():  # the library must not close its own tag
            raise RuntimeError("attention_view.js contains '</script'")
        n_layer, n_head, T = self.shape
        title = (
            f'<div class="lmbook-attn-title">{html.escape(self.title)}</div>'
            if self.title
            else ""
        )
        head = html.escape(str(self.head))
        return (
            f'<div class="lmbook-attn" id="{uid}" data-layer="{self.layer}" '
            f'data-head="{head}" data-mode="{self.mode}">'
            f"<style>{_static('attention_view.css')}</style>{title}"
            '<p class="lmbook-attn-fallback">Interactive attention view '
            f"({n_layer} layers, {n_head} heads, {T} tokens). It needs JavaScript: "
            "run the cell, or trust the notebook.</p>"
            f'<script type="application/json" class="lmbook-attn-data">{payload}'
            f"</script><script>{js}\n(function () {{\n"
            "  var s = document.currentScript;\n"
            '  var root = (s && s.closest && s.closest(".lmbook-attn")) ||\n'
            f'    document.getElementById("{uid}");\n'
            "  if (root) window.lmbookAttentionView.mount(root);\n"
            "  else window.lmbookAttentionView.mountPending();\n"
            "})();</script></div>"
        )

    def save_html(self, path: str | os.PathLike) -> Path:
        """Write a standalone UTF-8 page with this view (atomically); returns path.

        The file gets the mode ``open()`` would give it (0o666 less the umask).
        """
        path = check_path(path, "path")
        if path.is_dir():
            raise ValueError(f"path {str(path)!r} is a folder; expected a file path")
        if not path.parent.exists():
            raise ValueError(f"path's folder {str(path.parent)!r} does not exist")
        title = html.escape(self.title or "Attention view")
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n</head>\n<body>\n{self._repr_html_()}\n"
            "</body>\n</html>\n"
        )
        return atomic_write(path, page, name="path")
