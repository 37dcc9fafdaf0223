"""A live attention explorer: type a text, see the model's attention redrawn.

Built from ipywidgets that exist in both ipywidgets 7.7 (Colab) and 8. It needs a
kernel only to re-run the model; without one (a static web page) the returned
object shows the static `AttentionView` of its initial text instead of a dead
widget. Works with lmbook's GPT (any model with ``attention_maps(idx)`` and a
tokenizer with ``encode``/``decode``) and with Hugging Face models called with
``output_attentions=True`` (Wolf et al., 2020).
"""

from __future__ import annotations

import html

import torch

from lmbook.viz.attention_view import MODES, AttentionView


def _device(model: object) -> torch.device:
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def run_attention(
    model: object, tokenizer: object, text: str, max_tokens: int = 128
) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Run `model` on `text`; returns (one (1, nh, T, T) tensor per layer, tokens).

    The model is put in eval mode for the call and restored afterwards.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if hasattr(model, "attention_maps"):
        ids = tokenizer.encode(text)
        if not 0 < len(ids) <= max_tokens:
            raise ValueError(
                f"text must give 1 to {max_tokens} tokens (max_tokens), got {len(ids)}"
            )
        tokens = [tokenizer.decode([i]) for i in ids]
        idx = torch.tensor([ids], dtype=torch.long, device=_device(model))  # (1, T)
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            with torch.no_grad():
                maps = model.attention_maps(idx)
        finally:
            model.train(was_training)
        if not isinstance(maps, tuple | list):
            raise TypeError(
                "model.attention_maps(idx) must return a tuple of (B, nh, T, T) "
                f"tensors, got {type(maps).__name__}"
            )
        return tuple(maps), tokens
    from lmbook.pretrained import encoder_attentions

    n = len(tokenizer(text)["input_ids"])
    if n > max_tokens:
        raise ValueError(
            f"text must give at most {max_tokens} tokens (max_tokens), got {n}"
        )
    return encoder_attentions(model, tokenizer, text)


class AttentionExplorer:
    """Text box, layer/head/view selectors and the `AttentionView` they drive.

    Editing `text` re-runs the model; the selectors only redraw. The widgets are
    attributes (`text`, `layer`, `head`, `mode`, `output`, `widget`), and `view`
    is the `AttentionView` on show.
    """

    def __init__(
        self,
        model: object,
        tokenizer: object,
        text: str,
        *,
        layer: int = 0,
        head: int | str = 0,
        mode: str = "lines",
        max_tokens: int = 128,
        top_k: int = 3,
    ) -> None:
        import ipywidgets as widgets

        if not (hasattr(model, "attention_maps") or callable(model)):
            raise TypeError(
                "model must have attention_maps(idx) (lmbook's GPT) or be a callable "
                f"Hugging Face model, got {type(model).__name__}"
            )
        if hasattr(model, "attention_maps"):
            needs = ("encode", "decode")
        else:
            needs = ("__call__", "convert_ids_to_tokens")
        missing = [m for m in needs if not hasattr(tokenizer, m)]
        if missing:
            raise TypeError(
                f"tokenizer must have {' and '.join(needs)} for this model; "
                f"{type(tokenizer).__name__} lacks {', '.join(missing)}"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(
                f"max_tokens must be an int, got {type(max_tokens).__name__}"
            )
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        attentions, tokens = run_attention(model, tokenizer, text, max_tokens)
        self.view = AttentionView(
            attentions, tokens, layer=layer, head=head, mode=mode, top_k=top_k
        )
        self._attentions, self._tokens, self.top_k = attentions, tokens, top_k
        self._shown_text = text  # the text that `view` shows
        self.error: str | None = None
        n_layer, n_head, _ = self.view.shape
        wide = {"description_width": "initial"}
        self.text = widgets.Text(
            value=text,
            description="Text:",
            continuous_update=False,
            layout=widgets.Layout(width="95%"),
        )
        self.layer = widgets.Dropdown(
            options=[(str(i), i) for i in range(n_layer)],
            value=layer,
            description="Layer:",
            style=wide,
            layout=widgets.Layout(width="auto"),
        )
        self.head = widgets.Dropdown(
            options=[(str(i), i) for i in range(n_head)] + [("all heads", "all")],
            value=head,
            description="Head:",
            style=wide,
            layout=widgets.Layout(width="auto"),
        )
        self.mode = widgets.Dropdown(
            options=list(MODES),
            value=mode,
            description="View:",
            style=wide,
            layout=widgets.Layout(width="auto"),
        )
        self.output = widgets.Output()
        self.widget = widgets.VBox(
            [self.text, widgets.HBox([self.layer, self.head, self.mode]), self.output]
        )
        self.text.observe(self._on_text, names="value")
        for w in (self.layer, self.head, self.mode):
            w.observe(self._on_select, names="value")
        self._show()

    def __repr__(self) -> str:
        n_layer, n_head, T = self.view.shape
        return (
            f"AttentionExplorer(text={self.text.value!r}, n_layer={n_layer}, "
            f"n_head={n_head}, T={T})"
        )

    def _show(self) -> None:
        if self.error is None:
            data = {"text/html": self.view._repr_html_(), "text/plain": repr(self.view)}
        else:
            msg = f"Could not run the model on this text: {self.error}"
            data = {"text/html": f"<pre>{html.escape(msg)}</pre>", "text/plain": msg}
        self.output.outputs = (
            {"output_type": "display_data", "data": data, "metadata": {}},
        )

    def _on_text(self, change: dict) -> None:
        try:
            self._attentions, self._tokens = run_attention(
                self.model, self.tokenizer, change["new"], self.max_tokens
            )
            self._shown_text, self.error = change["new"], None
        except Exception as err:  # a UI callback: show the problem, keep running
            self.error = f"{type(err).__name__}: {err}"
        self._on_select(None)

    def _on_select(self, change: dict | None) -> None:
        if self.error is None:
            self.view = AttentionView(
                self._attentions,
                self._tokens,
                layer=self.layer.value,
                head=self.head.value,
                mode=self.mode.value,
                top_k=self.top_k,
            )
        self._show()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The live widget for a kernel, plus the static view for a web page."""
        bundle = {}
        if hasattr(self.widget, "_repr_mimebundle_"):  # ipywidgets 8
            bundle = dict(self.widget._repr_mimebundle_() or {})
        if "application/vnd.jupyter.widget-view+json" not in bundle:  # ipywidgets 7
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.widget.model_id,
            }
        static = AttentionView(
            self._attentions,
            self._tokens,
            layer=self.layer.value,
            head=self.head.value,
            mode=self.mode.value,
            top_k=self.top_k,
            title=f"Attention for: {self._shown_text}",
        )
        bundle["text/html"] = static._repr_html_()
        bundle["text/plain"] = repr(self)
        return bundle


def attention_explorer(
    model: object,
    tokenizer: object,
    text: str = "The cat sat on the mat because it was tired.",
    *,
    layer: int = 0,
    head: int | str = 0,
    mode: str = "lines",
    max_tokens: int = 128,
    top_k: int = 3,
) -> AttentionExplorer:
    """A live explorer of `model`'s attention on `text` (see `AttentionExplorer`).

    model: lmbook's GPT (has ``attention_maps(idx)``; tokenizer has ``encode`` and
        ``decode``) or a Hugging Face model loaded with ``attn_implementation=
        "eager"`` (tokenizer: its Hugging Face tokenizer).
    layer, head, mode: what is shown first; max_tokens: longest text accepted.
    """
    return AttentionExplorer(
        model,
        tokenizer,
        text,
        layer=layer,
        head=head,
        mode=mode,
        max_tokens=max_tokens,
        top_k=top_k,
    )
