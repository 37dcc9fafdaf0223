"""Attention weights as a static matplotlib heatmap: query rows, key columns.

The weights are the softmax rows of scaled dot-product attention (Vaswani et al.,
2017); the head-by-head grid follows the figures of Clark et al. (2019), "What Does
BERT Look At?". Returns a `Figure` and never writes files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lmbook.viz.attention_view import (
    _as_float_tensor,
    _check_index,
    check_tokens,
    check_weights,
    stack_attentions,
)

# The widest figure the book's column shows at full size, in inches: a wider one
# is scaled down, and its text with it (tests/test_site.py checks the chapters).
# Saving with bbox_inches="tight", as Jupyter does, adds 0.1 in on either side.
MAX_WIDTH = 6.8
_PAD = 0.2


def _select(
    weights: object, layer: int | None, head: int | None, batch_index: int
) -> tuple[torch.Tensor, str]:
    """Reduce any accepted layout to (T, T) or (nh, T, T), plus a title prefix."""
    if isinstance(weights, tuple | list) or (
        isinstance(weights, torch.Tensor | np.ndarray) and weights.ndim == 4
    ):
        stacked = stack_attentions(weights, batch_index)  # (L, nh, T, T)
        if layer is None:
            raise ValueError(
                f"layer is required for per-layer attentions of shape "
                f"{tuple(stacked.shape)} (n_layer, n_head, T, T); got layer=None"
            )
        w = stacked[_check_index(layer, "layer", stacked.shape[0])]
        prefix = f"layer {layer}, "
    else:
        w = _as_float_tensor(weights, "weights")
        if w.dim() not in (2, 3):
            raise ValueError(
                "weights must have shape (T, T), (n_head, T, T), (n_layer, n_head, T, "
                f"T) or be a tuple of (B, n_head, T, T) tensors; got {tuple(w.shape)}"
            )
        if layer is not None:
            raise ValueError(
                f"layer must be None for weights of shape {tuple(w.shape)}, which has "
                f"no layer dimension; got layer={layer!r}"
            )
        check_weights(w, "weights")
        prefix = ""
    if w.dim() == 2:
        if head is not None:
            raise ValueError(
                f"head must be None for a single (T, T) map; got head={head!r}"
            )
        return w, prefix.rstrip(", ")
    if head is None:
        return w, prefix.rstrip(", ")
    w = w[_check_index(head, "head", w.shape[0])]
    return w, f"{prefix}head {head}"


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot figure, closed at once: Jupyter shows the returned Figure once.

    Going through pyplot loads the backend, which registers Jupyter's inline
    display of figures; closing it keeps pyplot from showing it a second time.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _draw(ax: Axes, w: np.ndarray, tokens: list[str], cmap: str, annotate: bool):
    T = w.shape[0]
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    step = max(1, math.ceil(T / 48))  # keep at most ~48 labels per axis
    ticks = list(range(0, T, step))
    labels = [tokens[i].replace("\n", "\\n") for i in ticks]
    size = 9 if T <= 16 else 7
    ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
    ax.set_yticks(ticks, labels, fontsize=size)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate:
        for i in range(T):
            for j in range(T):
                ax.text(
                    j,
                    i,
                    f"{w[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if w[i, j] > 0.6 else "white",
                )
    return im


def attention_heatmap(
    weights: Sequence[torch.Tensor] | torch.Tensor | np.ndarray,
    tokens: Sequence[str],
    layer: int | None = None,
    head: int | None = None,
    *,
    batch_index: int = 0,
    ax: Axes | None = None,
    cmap: str = "viridis",
    annotate: bool = False,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """Draw attention weights as a heatmap (rows: queries, columns: keys).

    weights: (T, T); (n_head, T, T); (n_layer, n_head, T, T); or a tuple of
        (B, n_head, T, T) tensors, one per layer (`batch_index` picks the example).
    layer: required when there is a layer dimension. head: one head, or None for
        a grid of every head, `ncols` maps wide. ax: draw a single head into this
        Axes. A new figure, saved with its padding, is at most `MAX_WIDTH` (6.8)
        inches wide.
    Returns the Figure (a new one unless `ax` is given), which Jupyter displays
    once; save it with ``fig.savefig``. Nothing is written to disk.
    """
    w, label = _select(weights, layer, head, batch_index)
    tokens = check_tokens(tokens, w.shape[-1])
    if not isinstance(cmap, str) or cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an int >= 1, got {ncols!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    w = w.numpy()
    if w.ndim == 2:
        if ax is None:
            side = min(MAX_WIDTH - _PAD - 1.0, 2.0 + 0.28 * w.shape[0])
            fig = _new_figure((side + 1.0, side))
            ax = fig.add_subplot()
        elif not isinstance(ax, Axes):
            raise TypeError(
                f"ax must be a matplotlib Axes or None, got {type(ax).__name__}"
            )
        im = _draw(ax, w, tokens, cmap, annotate)
        ax.set_title(title if title is not None else label)
        ax.figure.colorbar(im, ax=ax, label="attention weight", shrink=0.8)
        return ax.figure
    if ax is not None:
        raise ValueError(
            f"ax draws a single head; got {w.shape[0]} heads: pass head=..."
        )
    n_head = w.shape[0]
    cols = min(ncols, n_head)
    rows = math.ceil(n_head / cols)
    cell = min(3.2, 1.2 + 0.09 * w.shape[-1], (MAX_WIDTH - _PAD - 1.2) / cols)
    fig = _new_figure((cell * cols + 1.2, cell * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for h in range(rows * cols):
        a = axes.flat[h]
        if h >= n_head:
            fig.delaxes(a)
            continue
        im = _draw(a, w[h], tokens, cmap, annotate)
        a.set_title(f"head {h}", fontsize=10)
        if h % cols:  # the tokens and the axis label only on the left column
            a.set_ylabel("")
            a.tick_params(labelleft=False)
        if h < n_head - cols:  # and only under the lowest map of each column
            a.set_xlabel("")
            a.tick_params(labelbottom=False)
    fig.colorbar(im, ax=axes, label="attention weight", shrink=0.6)
    fig.suptitle(title if title is not None else (label or "all heads"))
    return fig
