"""Interactive demos that still show something useful on a static page.

A live kernel (Jupyter, Colab, VS Code) renders the ipywidgets view. The static
website has no kernel, so each demo also carries a static rendering of its initial
state (a PNG of a figure, or HTML), and the book's ``_config.yml`` ranks the widget
view below it for the HTML builder. Works with ipywidgets 7.7 and 8, which share
version 2 of the widget-view protocol.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _static_bundle(fallback: Any) -> dict[str, Any]:
    if hasattr(fallback, "savefig"):  # a matplotlib Figure
        buf = io.BytesIO()
        fallback.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return {"image/png": base64.b64encode(buf.getvalue()).decode("ascii")}
    if hasattr(fallback, "_repr_html_"):
        return {"text/html": fallback._repr_html_()}
    if isinstance(fallback, str):
        return {"text/html": fallback}
    raise TypeError(
        "fallback must be a matplotlib Figure, an object with _repr_html_, or an "
        f"HTML str; got {type(fallback).__name__}"
    )


class WidgetWithFallback:
    """Display `widget` in a kernel and `fallback` on a static page.

    `fallback` is a matplotlib ``Figure``, an object with ``_repr_html_`` or an HTML
    string showing the demo's initial state; `alt` describes it in words.
    """

    def __init__(self, widget: Any, fallback: Any, alt: str = "") -> None:
        if not hasattr(widget, "model_id"):
            raise TypeError(
                f"widget must be an ipywidgets widget, got {type(widget).__name__}"
            )
        self.widget = widget
        self.static = _static_bundle(fallback)
        self.alt = alt

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        view = {
            "version_major": 2,
            "version_minor": 0,
            "model_id": self.widget.model_id,
        }
        bundle = {WIDGET_VIEW: view, "text/plain": self.alt or "interactive demo"}
        bundle.update(self.static)
        metadata = (
            {"image/png": {"alt": self.alt}} if "image/png" in self.static else {}
        )
        return bundle, metadata


def interactive_figure(
    draw: Callable[..., Any], controls: dict[str, Any], alt: str = ""
) -> WidgetWithFallback:
    """A figure redrawn by `draw(**values)` whenever a control in `controls` changes.

    `draw` returns a matplotlib Figure; `controls` maps keyword names to ipywidgets
    controls (sliders, dropdowns). The initial figure is the static fallback.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not controls:
        raise ValueError("controls must name at least one ipywidgets control, got {}")
    out = widgets.Output()

    def show(fig: Any) -> None:
        # Set the Output widget's state directly rather than capturing with
        # `with out:`, which would also print the figure into the cell's own
        # outputs while a notebook is executed headless (nbclient, nbval).
        out.outputs = ()
        out.append_display_data(fig)
        plt.close(fig)

    def redraw(_change: Any = None) -> None:
        show(draw(**{name: c.value for name, c in controls.items()}))

    for control in controls.values():
        control.observe(redraw, names="value")
    first = draw(**{name: c.value for name, c in controls.items()})
    demo = WidgetWithFallback(widgets.VBox([*controls.values(), out]), first, alt=alt)
    show(first)
    return demo
