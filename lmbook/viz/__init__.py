"""Attention you can see anywhere: a heatmap, an offline HTML view, a live explorer.

`attention_heatmap` returns a matplotlib Figure; `AttentionView` is an interactive
HTML view with its JavaScript and CSS inlined (no CDN, works on a static page);
`attention_explorer` re-runs a model as you type (needs ipywidgets and a kernel).
They take plain tensors and tokens; only the explorer runs a model.
"""

from lmbook.viz.attention_view import ROW_SUM_ATOL, AttentionView
from lmbook.viz.explorer import AttentionExplorer, attention_explorer
from lmbook.viz.heatmap import attention_heatmap

__all__ = [
    "ROW_SUM_ATOL",
    "AttentionExplorer",
    "AttentionView",
    "attention_explorer",
    "attention_heatmap",
]
