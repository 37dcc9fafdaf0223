"""Checks shared by the tokenizers: text, token ids, and reading a tokenizer file."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Sequence

import torch

from lmbook.checks import tname
from lmbook.fileio import check_path


def check_text(text: object) -> str:
    """`text` itself, or a TypeError when it is not a str."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {tname(text)}")
    return text


def as_id_list(ids: object, vocab_size: int) -> list[int]:
    """Check that `ids` is a 1-D sequence or tensor of ids in [0, vocab_size)."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(
                f"ids must be 1-D, got a tensor of shape {tuple(ids.shape)}"
            )
        if (
            ids.dtype.is_floating_point
            or ids.dtype.is_complex
            or ids.dtype == torch.bool
        ):
            raise TypeError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        ids = ids.tolist()
    elif isinstance(ids, str | bytes) or not isinstance(ids, Sequence | range):
        raise TypeError(f"ids must be a list of ints or a 1-D tensor, got {tname(ids)}")
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, bool):
            raise TypeError(f"ids[{pos}] must be an int, got bool")
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"ids[{pos}] must be an int, got {tname(i)}") from None
        if not 0 <= i < vocab_size:
            raise ValueError(
                f"unknown token id {i} at position {pos}: valid ids are in "
                f"[0, {vocab_size})"
            )
        out.append(i)
    return out


def read_json(path: str | os.PathLike, fmt: str) -> dict:
    """Read a tokenizer file and check its ``format`` and ``version`` fields."""
    path = check_path(path, "path")
    if path.is_dir():
        raise ValueError(
            f"path {str(path)!r} is a folder; expected a {fmt} file written by save"
        )
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"path {str(path)!r} does not exist; expected a {fmt} file written by save"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON tokenizer file: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {tname(obj)}")
    if obj.get("format") != fmt:
        raise ValueError(f"{path}: format expected {fmt!r}, got {obj.get('format')!r}")
    if obj.get("version") != 1:
        raise ValueError(f"{path}: version expected 1, got {obj.get('version')!r}")
    return obj
