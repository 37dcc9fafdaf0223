"""Demos that show a static rendering when there is no kernel."""

from __future__ import annotations

import base64

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lmbook.widgets import WIDGET_VIEW, WidgetWithFallback, interactive_figure  # noqa: E402


def _draw(scale: float = 1.0):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, scale])
    return fig


def test_bundle_has_widget_view_and_static_png():
    slider = widgets.FloatSlider(value=2.0, min=0, max=5)
    demo = interactive_figure(_draw, {"scale": slider}, alt="a line")
    bundle, metadata = demo._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == demo.widget.model_id
    assert bundle[WIDGET_VIEW]["version_major"] == 2
    png = base64.b64decode(bundle["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert metadata["image/png"]["alt"] == "a line"
    assert bundle["text/plain"] == "a line"


def test_control_change_redraws_into_the_output():
    slider = widgets.FloatSlider(value=1.0, min=0, max=5)
    calls = []

    def draw(scale):
        calls.append(scale)
        return _draw(scale)

    demo = interactive_figure(draw, {"scale": slider})
    slider.value = 3.0
    assert calls == [1.0, 3.0]
    assert isinstance(demo.widget.children[-1], widgets.Output)


def test_html_fallback():
    demo = WidgetWithFallback(widgets.IntSlider(), "<b>static</b>")
    bundle, _ = demo._repr_mimebundle_()
    assert bundle["text/html"] == "<b>static</b>"


def test_rejects_non_widget():
    with pytest.raises(TypeError, match="widget must be an ipywidgets widget"):
        WidgetWithFallback(object(), "<b>x</b>")


def test_rejects_unknown_fallback():
    with pytest.raises(TypeError, match="fallback must be a matplotlib Figure"):
        WidgetWithFallback(widgets.IntSlider(), 42)


def test_rejects_empty_controls():
    with pytest.raises(ValueError, match="controls must name at least one"):
        interactive_figure(_draw, {})
