"""A character tokenizer: one token per distinct character of a text.

The vocabulary of Karpathy's char-rnn and of nanoGPT's Shakespeare example.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence

import torch

from lmbook.checks import tname
from lmbook.fileio import atomic_write
from lmbook.tokenizers._shared import as_id_list, check_text, read_json


class UnknownCharacterError(ValueError):
    """A character that is not in a `CharTokenizer`'s vocabulary."""

    def __init__(self, char: str, position: int, vocab_size: int):
        self.char, self.position = char, position
        super().__init__(
            f"unknown character {char!r} at position {position}: it is not among the "
            f"{vocab_size} characters of this tokenizer's vocabulary; build the "
            "tokenizer from a text that contains it"
        )


class CharTokenizer:
    """One token per character; ids follow the order of `chars`."""

    def __init__(self, chars: Sequence[str]):
        if not isinstance(chars, Sequence):
            raise TypeError(f"chars must be a list of str, got {tname(chars)}")
        if not chars:
            raise ValueError("chars must hold at least one character, got none")
        for pos, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars[{pos}] must be a single character, got {c!r}")
        if len(set(chars)) != len(chars):
            dup = next(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(f"chars must be unique, got {dup!r} more than once")
        self.itos: list[str] = list(chars)
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted set of characters of `text`."""
        if not check_text(text):
            raise ValueError("text must be non-empty to build a vocabulary, got ''")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """``str`` of length T -> list of T ids."""
        stoi = self.stoi
        try:
            return [stoi[c] for c in check_text(text)]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in stoi)
            raise UnknownCharacterError(text[pos], pos, self.vocab_size) from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """List or 1-D tensor of T ids -> ``str`` of length T."""
        return "".join(self.itos[i] for i in as_id_list(ids, self.vocab_size))

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to a JSON file, atomically."""
        obj = {"format": "lmbook.CharTokenizer", "version": 1, "chars": self.itos}
        atomic_write(path, json.dumps(obj, ensure_ascii=False), name="path")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a file written by `save`; raise ``ValueError`` if it is not one."""
        chars = read_json(path, "lmbook.CharTokenizer").get("chars")
        if not isinstance(chars, list):
            raise ValueError(f"{path}: 'chars' expected a list, got {tname(chars)}")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
