"""Tokenizers: characters, and byte-level byte-pair encoding trained from scratch.

`CharTokenizer` is the character vocabulary of char-rnn and nanoGPT's Shakespeare
example. `BPETokenizer` is byte-pair encoding as adapted to subwords by Sennrich,
Haddow and Birch, "Neural Machine Translation of Rare Words with Subword Units"
(2016), in the byte-level form of GPT-2 (Radford et al., "Language Models are
Unsupervised Multitask Learners", 2019): the base vocabulary is the 256 byte
values, so every Unicode string can be encoded and ``decode(encode(s)) == s``.

These classes are for reading. In practice use Hugging Face's ``tokenizers``
library (Rust, parallel, with normalizers and special tokens); it trains the same
kind of byte-level BPE on gigabytes in seconds.
"""

from __future__ import annotations

import heapq
import json
import operator
import os
import re
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

try:  # GPT-2's split pattern needs \p{L} and \p{N}, which only `regex` supports
    import regex as _re_engine
except ImportError:  # pragma: no cover - depends on the environment
    _re_engine = re

# GPT-2's pre-tokenizer (encoder.py): contractions, words with an optional leading
# space, numbers, punctuation runs, and whitespace (trailing spaces stay apart).
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
# The same with what stdlib `re` knows: letters are \w minus digits and "_", numbers
# are \d. It differs from GPT-2's only on numeric characters that are not decimal
# digits ("²", "Ⅻ": letters here), on characters newer than Python's Unicode
# tables, and on U+001C..U+001F (whitespace to `re`, punctuation to `regex`).
STDLIB_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)


class UnknownCharacterError(ValueError):
    """A character that is not in a `CharTokenizer`'s vocabulary."""

    def __init__(self, char: str, position: int, vocab_size: int):
        self.char, self.position = char, position
        super().__init__(
            f"unknown character {char!r} at position {position}: it is not among the "
            f"{vocab_size} characters of this tokenizer's vocabulary; build the "
            "tokenizer from a text that contains it"
        )


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_json(path: str | os.PathLike, fmt: str) -> dict:
    """Read a tokenizer file and check its ``format`` and ``version`` fields."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON tokenizer file: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    if obj.get("format") != fmt:
        raise ValueError(f"{path}: format expected {fmt!r}, got {obj.get('format')!r}")
    if obj.get("version") != 1:
        raise ValueError(f"{path}: version expected 1, got {obj.get('version')!r}")
    return obj


def _as_id_list(ids: object, vocab_size: int) -> list[int]:
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
        raise TypeError(
            f"ids must be a list of ints or a 1-D tensor, got {type(ids).__name__}"
        )
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, bool):
            raise TypeError(f"ids[{pos}] must be an int, got bool")
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"ids[{pos}] must be an int, got {type(i).__name__}"
            ) from None
        if not 0 <= i < vocab_size:
            raise ValueError(
                f"unknown token id {i} at position {pos}: valid ids are in "
                f"[0, {vocab_size})"
            )
        out.append(i)
    return out


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text


class CharTokenizer:
    """One token per character; ids follow the order of `chars`."""

    def __init__(self, chars: Sequence[str]):
        if not isinstance(chars, Sequence):
            raise TypeError(f"chars must be a list of str, got {type(chars).__name__}")
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
        if not _check_text(text):
            raise ValueError("text must be non-empty to build a vocabulary, got ''")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """``str`` of length T -> list of T ids."""
        stoi = self.stoi
        try:
            return [stoi[c] for c in _check_text(text)]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in stoi)
            raise UnknownCharacterError(text[pos], pos, self.vocab_size) from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """List or 1-D tensor of T ids -> ``str`` of length T."""
        return "".join(self.itos[i] for i in _as_id_list(ids, self.vocab_size))

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to a JSON file, atomically."""
        obj = {"format": "lmbook.CharTokenizer", "version": 1, "chars": self.itos}
        _atomic_write_text(path, json.dumps(obj, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a file written by `save`; raise ``ValueError`` if it is not one."""
        chars = _read_json(path, "lmbook.CharTokenizer").get("chars")
        if not isinstance(chars, list):
            raise ValueError(
                f"{path}: 'chars' expected a list, got {type(chars).__name__}"
            )
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """Byte-level BPE: 256 byte tokens, then one token per learned merge.

    Training merges the most frequent adjacent pair, counting pairs only inside
    the chunks of the split `pattern`; ties go to the smallest pair ``(left id,
    right id)``. Merge ``k`` creates token ``256 + k``; encoding applies merges in
    that order (leftmost first), which reproduces the training segmentation.

    `pattern` is ``"gpt2"`` (GPT-2's pattern if the `regex` package is installed,
    else `STDLIB_SPLIT_PATTERN`, which differs only on rare characters), a
    regular expression of your own, or ``None`` to treat the text as one chunk.
    Decoding ids that do not form valid UTF-8 (say, half of a multi-byte
    character) shows U+FFFD in their place (``errors="replace"``).
    """

    def __init__(self, pattern: str | None = "gpt2"):
        if pattern == "gpt2":
            gpt2 = _re_engine is not re
            pattern = GPT2_SPLIT_PATTERN if gpt2 else STDLIB_SPLIT_PATTERN
        if pattern is not None:
            if not isinstance(pattern, str):
                raise TypeError(
                    f"pattern must be a str or None, got {type(pattern).__name__}"
                )
            try:
                self._split_re = _re_engine.compile(pattern)
            except Exception as err:  # re.error and regex.error share no base class
                hint = (
                    " (install the `regex` package for \\p{...})"
                    if "\\p" in pattern
                    else ""
                )
                raise ValueError(
                    f"pattern {pattern!r} does not compile: {err}{hint}"
                ) from err
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
        _check_text(text)
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

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges from `text` (replacing any earlier ones).

        Pair counts are updated incrementally: a merge only visits the positions
        where its pair occurs (kept in a set per pair; a heap finds the next pair).
        Stops early, with a warning, when no adjacent pair is left.
        """
        _check_text(text)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(
                f"vocab_size must be an int, got {type(vocab_size).__name__}"
            )
        if vocab_size < 256:
            raise ValueError(
                f"vocab_size must be >= 256 (the byte tokens), got {vocab_size}"
            )
        # Each distinct chunk once, as a doubly linked list of symbols over flat arrays;
        # weight = how often the chunk occurs. A merged-away position gets symbol -1.
        sym: list[int] = []
        weight: list[int] = []
        prv: list[int] = []
        nxt: list[int] = []
        for chunk, count in Counter(self.pre_tokenize(text)).items():
            data, start = self._utf8(chunk, text), len(sym)
            sym.extend(data)
            weight.extend([count] * len(data))
            prv.extend(range(start - 1, start + len(data) - 1))
            nxt.extend(range(start + 1, start + len(data) + 1))
            prv[start], nxt[-1] = -1, -1
        counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for i, j in enumerate(nxt):
            if j != -1:
                counts[sym[i], sym[j]] += weight[i]
                where[sym[i], sym[j]].add(i)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)

        def add(i: int) -> None:  # count the pair that starts at position i
            pair = (sym[i], sym[nxt[i]])
            counts[pair] += weight[i]
            where[pair].add(i)
            heapq.heappush(heap, (-counts[pair], pair))

        def remove(i: int, merging: tuple[int, int]) -> None:
            pair = (sym[i], sym[nxt[i]])
            if pair != merging:
                counts[pair] -= weight[i]
                where[pair].discard(i)

        merges: list[tuple[int, int]] = []
        vocab = {i: bytes([i]) for i in range(256)}
        for k in tqdm(range(vocab_size - 256), desc="BPE merges", disable=not verbose):
            while heap:  # lazy deletion: skip entries whose count has changed
                neg, pair = heapq.heappop(heap)
                if counts.get(pair, 0) == -neg:
                    break
                if counts.get(pair, 0) > 0:
                    heapq.heappush(heap, (-counts[pair], pair))
            else:
                warnings.warn(
                    f"no pairs left to merge after {k} merges; vocab_size is "
                    f"{256 + k} instead of {vocab_size}",
                    stacklevel=2,
                )
                break
            new, (a, b) = 256 + k, pair
            count = counts.pop(pair)
            for p in sorted(where.pop(pair)):  # left to right, as encoding does
                q = nxt[p]
                if sym[p] != a or q == -1 or sym[q] != b:
                    continue  # consumed by an overlapping merge, e.g. "aaa"
                if prv[p] != -1:
                    remove(prv[p], pair)
                if nxt[q] != -1:
                    remove(q, pair)
                sym[p], sym[q], nxt[p] = new, -1, nxt[q]
                if nxt[p] != -1:
                    prv[nxt[p]] = p
                    add(p)
                if prv[p] != -1:
                    add(prv[p])
            merges.append(pair)
            vocab[new] = vocab[a] + vocab[b]
            if verbose:
                tqdm.write(
                    f"merge {k + 1}: {pair} -> {new} {vocab[new]!r} ({count} times)"
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
        data = b"".join(self._vocab[i] for i in _as_id_list(ids, self.vocab_size))
        return data.decode("utf-8", errors="replace")

    def save(self, path: str | os.PathLike) -> None:
        """Write the pattern and merges to a JSON file, atomically."""
        obj = {
            "format": "lmbook.BPETokenizer",
            "version": 1,
            "pattern": self.pattern,
            "merges": [list(pair) for pair in self._merges],
        }
        _atomic_write_text(path, json.dumps(obj, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by `save`; raise ``ValueError`` if it is not one."""
        obj = _read_json(path, "lmbook.BPETokenizer")
        pattern, merges = obj.get("pattern"), obj.get("merges")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(
                f"{path}: 'pattern' expected a str or null, got {pattern!r}"
            )
        if not isinstance(merges, list):
            raise ValueError(
                f"{path}: 'merges' expected a list, got {type(merges).__name__}"
            )
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

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, pattern={self.pattern!r})"
