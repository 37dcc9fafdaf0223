"""Byte-level byte-pair encoding: a tokenizer that learns merges of frequent pairs.

Sennrich, Haddow and Birch, "Neural Machine Translation of Rare Words with Subword
Units" (2016), in the byte-level form of GPT-2 (Radford et al., "Language Models
are Unsupervised Multitask Learners", 2019), with GPT-2's pre-tokenizer. The
merges are learned in `lmbook.tokenizers.train_bpe`.
"""

from __future__ import annotations

import heapq
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence

import torch

from lmbook.checks import check_bool, check_choice, check_int, tname
from lmbook.fileio import atomic_write
from lmbook.tokenizers import hf as _hf
from lmbook.tokenizers._shared import as_id_list, check_text, read_json
from lmbook.tokenizers.train_bpe import train_bpe_fast, train_bpe_reference

# GPT-2's pre-tokenizer (encoder.py): contractions, words with an optional leading
# space, numbers, punctuation runs, and whitespace (trailing spaces stay apart).
# \p{L} and \p{N} need the `regex` package; the standard library's `re` lacks them.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
# The same in the syntax of stdlib `re`, for reading (lmbook never uses it in place
# of GPT-2's): letters are \w minus digits and "_", numbers are \d. It differs from
# GPT-2's only on numeric characters that are not decimal digits ("²", "Ⅻ": letters
# here), on characters newer than Python's Unicode tables, and on U+001C..U+001F
# (whitespace to `re`, punctuation to `regex`).
STDLIB_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)

_TRAINERS = {"fast": train_bpe_fast, "reference": train_bpe_reference}


def _compile(pattern: str, given: str):
    """`pattern` compiled by the `regex` package; `given` is what the user passed."""
    try:
        import regex
    except ImportError:
        why = (
            "GPT-2's split pattern uses \\p{L} and \\p{N}, which the standard "
            "library's re does not support"
            if given == "gpt2"
            else "lmbook compiles every split pattern with it"
        )
        raise ImportError(
            f"BPETokenizer(pattern={given!r}) needs the 'regex' package, which is "
            f"not installed ({why}): pip install 'regex>=2023.0', or pass "
            "pattern=None to split no text"
        ) from None
    try:
        return regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"pattern {pattern!r} does not compile: {err}") from err


class BPETokenizer:
    """Byte-level BPE: 256 byte tokens, then one token per learned merge.

    Training merges the most frequent adjacent pair, counting pairs only inside
    the chunks of the split `pattern`; ties go to the smallest pair ``(left id,
    right id)``. Merge ``k`` creates token ``256 + k``; encoding applies merges in
    that order (leftmost first), which reproduces the training segmentation.

    `pattern` is ``"gpt2"`` (`GPT2_SPLIT_PATTERN`, which needs the `regex`
    package), a regular expression of your own (compiled by `regex`), or ``None``
    to treat the text as one chunk. Decoding ids that do not form valid UTF-8
    (say, half of a multi-byte character) shows U+FFFD in their place
    (``errors="replace"``).
    """

    def __init__(self, pattern: str | None = "gpt2"):
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a str or None, got {tname(pattern)}")
        given = pattern
        if pattern == "gpt2":
            pattern = GPT2_SPLIT_PATTERN
        if pattern is not None:
            self._split_re = _compile(pattern, given)
        self.pattern = pattern
        self._set_merges([])

    def _set_merges(self, merges: list[tuple[int, int]]) -> None:
        self._merges = list(merges)
        self._ranks = {pair: k for k, pair in enumerate(self._merges)}
        self._vocab = {i: bytes([i]) for i in range(256)}
        for k, (a, b) in enumerate(self._merges):
            self._vocab[256 + k] = self._vocab[a] + self._vocab[b]
        self._cache: dict[str, list[int]] = {}

    @property
    def merges(self) -> list[tuple[int, int]]:
        """Learned merges in order; merge ``k`` makes token ``256 + k``."""
        return list(self._merges)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Token id -> the bytes it stands for."""
        return dict(self._vocab)

    @property
    def vocab_size(self) -> int:
        return 256 + len(self._merges)

    def pre_tokenize(self, text: str) -> list[str]:
        """The chunks of `text` that BPE works within (matches of `pattern`)."""
        check_text(text)
        if self.pattern is None:
            return [text] if text else []
        chunks = [c for c in self._split_re.findall(text) if c]
        if sum(map(len, chunks)) != len(text):
            raise ValueError(
                f"pattern {self.pattern!r} must match every character exactly once "
                "(and have no capturing groups), but it skipped some of the text"
            )
        return chunks

    @staticmethod
    def _utf8(chunk: str, text: str) -> bytes:
        try:
            return chunk.encode("utf-8")
        except UnicodeEncodeError:
            pos = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
            raise ValueError(
                f"text has a lone surrogate {text[pos]!r} at position {pos}, which "
                "has no UTF-8 encoding; expected a valid Unicode string"
            ) from None

    def train(
        self,
        text: str,
        vocab_size: int,
        verbose: bool = False,
        method: str = "fast",
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges from `text` (replacing any earlier ones).

        `method` is ``"fast"`` (`train_bpe_fast`) or ``"reference"``
        (`train_bpe_reference`, the readable loop); both learn the same merges.
        Stops early, with a warning, when no adjacent pair is left.
        """
        check_text(text)
        check_int("vocab_size", vocab_size, 256)
        check_bool("verbose", verbose)
        check_choice("method", method, tuple(_TRAINERS))
        chunks = Counter(self.pre_tokenize(text))
        words = {self._utf8(chunk, text): n for chunk, n in chunks.items()}
        merges = _TRAINERS[method](words, vocab_size - 256, verbose=verbose)
        if len(merges) < vocab_size - 256:
            warnings.warn(
                f"no pairs left to merge after {len(merges)} merges; vocab_size is "
                f"{256 + len(merges)} instead of {vocab_size}",
                stacklevel=2,
            )
        self._set_merges(merges)
        return self

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Apply merges by rank, leftmost first, over a linked list of symbols."""
        ranks, sym = self._ranks, list(data)
        nxt = [*range(1, len(sym)), -1]
        prv = list(range(-1, len(sym) - 1))
        heap = [
            (ranks[p], i)
            for i, p in enumerate(zip(sym, sym[1:], strict=False))
            if p in ranks
        ]
        heapq.heapify(heap)
        while heap:
            r, i = heapq.heappop(heap)
            j = nxt[i]
            if sym[i] == -1 or j == -1 or ranks.get((sym[i], sym[j])) != r:
                continue  # stale: this pair was changed by an earlier merge
            sym[i], sym[j], nxt[i] = 256 + r, -1, nxt[j]
            if nxt[i] != -1:
                prv[nxt[i]] = i
            for left in (prv[i], i):
                if left != -1 and nxt[left] != -1:
                    pair = (sym[left], sym[nxt[left]])
                    if pair in ranks:
                        heapq.heappush(heap, (ranks[pair], left))
        return [s for s in sym if s != -1]

    def encode(self, text: str) -> list[int]:
        """``str`` -> list of token ids."""
        ids: list[int] = []
        for chunk in self.pre_tokenize(text):
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(self._utf8(chunk, text))
                if len(self._cache) >= 1 << 16:
                    self._cache.clear()
                self._cache[chunk] = cached
            ids.extend(cached)
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """List or 1-D tensor of ids -> ``str`` (invalid UTF-8 becomes U+FFFD)."""
        data = b"".join(self._vocab[i] for i in as_id_list(ids, self.vocab_size))
        return data.decode("utf-8", errors="replace")

    def save(self, path: str | os.PathLike) -> None:
        """Write the pattern and merges to a JSON file, atomically."""
        obj = {
            "format": "lmbook.BPETokenizer",
            "version": 1,
            "pattern": self.pattern,
            "merges": [list(pair) for pair in self._merges],
        }
        atomic_write(path, json.dumps(obj, ensure_ascii=False), name="path")

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by `save`; raise ``ValueError`` if it is not one."""
        obj = read_json(path, "lmbook.BPETokenizer")
        pattern, merges = obj.get("pattern"), obj.get("merges")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(
                f"{path}: 'pattern' expected a str or null, got {pattern!r}"
            )
        if not isinstance(merges, list):
            raise ValueError(f"{path}: 'merges' expected a list, got {tname(merges)}")
        pairs: list[tuple[int, int]] = []
        seen: set[tuple[int, int]] = set()
        for k, m in enumerate(merges):
            ok = isinstance(m, list) and len(m) == 2
            ok = ok and all(type(i) is int and 0 <= i < 256 + k for i in m)
            if not ok or tuple(m) in seen:
                raise ValueError(
                    f"{path}: merges[{k}] expected a new pair of ids in "
                    f"[0, {256 + k}), got {m!r}"
                )
            pairs.append(tuple(m))
            seen.add(pairs[-1])
        tok = cls(pattern)
        tok._set_merges(pairs)
        return tok

    def to_hf(self):
        """This tokenizer as a ``transformers.PreTrainedTokenizerFast``.

        A BPE model with the same merges and ids (tokens written in GPT-2's
        byte-to-unicode alphabet), a ``Split`` pre-tokenizer with `pattern`, and
        byte-level pre-tokenizer and decoder: it encodes every string to the same
        ids. A custom `pattern` is compiled by the Rust library (Oniguruma), which
        must read it as `regex` does. Needs ``pip install 'lmbook[hf]'``.
        """
        return _hf.to_hf(self)

    @classmethod
    def from_hf(cls, hf_tokenizer) -> BPETokenizer:
        """The lmbook tokenizer of a Hugging Face byte-level BPE tokenizer.

        `hf_tokenizer` is a ``PreTrainedTokenizerFast`` (e.g. from `to_hf` or
        ``AutoTokenizer.from_pretrained``) or a ``tokenizers.Tokenizer``. It must
        be laid out as lmbook's: token ``i < 256`` is byte ``i`` and merge ``k``
        makes token ``256 + k``, with no normalizer or added tokens; otherwise a
        ValueError says what differs. Anything else is a TypeError.
        """
        return _hf.from_hf(hf_tokenizer, cls)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write Hugging Face's tokenizer files into folder `path`, atomically.

        ``AutoTokenizer.from_pretrained(path)`` then loads `to_hf`'s tokenizer.
        Other files in the folder (a model saved there) are kept.
        """
        _hf.save_pretrained(self, path)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read the tokenizer.json in folder `path` (see `from_hf`)."""
        return _hf.from_pretrained(path, cls)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, pattern={self.pattern!r})"
