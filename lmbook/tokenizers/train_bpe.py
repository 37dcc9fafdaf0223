"""Learning byte-pair-encoding merges: the readable loop and a fast equivalent.

`train_bpe_reference` is the loop of Sennrich, Haddow and Birch, "Neural Machine
Translation of Rare Words with Subword Units" (2016), Algorithm 1, as in Karpathy's
minbpe: count every adjacent pair, merge the most frequent one, repeat. It rescans
every word for every merge. `train_bpe_fast` learns exactly the same merges but
updates the pair counts incrementally, visiting only the positions a merge
changes, and finds the next pair with a heap; tests check that the two agree.

Both work on bytes (byte-level BPE, as in GPT-2): token ``i < 256`` is the byte
``i`` and merge ``k`` creates token ``256 + k``. Tie-breaking, which makes the
merges a function of the input alone:
- pairs are counted at every adjacent position, weighted by the word's count;
  overlapping occurrences count too, so ``aaa`` holds ``(a, a)`` twice;
- the most frequent pair is merged; ties go to the smallest pair
  ``(left id, right id)``;
- within a word, occurrences are merged left to right, so ``aaa`` -> ``aa a``.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from lmbook.checks import check_bool, check_int, tname

__all__ = ["train_bpe_reference", "train_bpe_fast"]


def train_bpe_reference(
    words: Mapping[bytes, int], n_merges: int, verbose: bool = False
) -> list[tuple[int, int]]:
    """Learn up to `n_merges` merges by recounting every pair before each merge.

    `words` maps each distinct word (pre-tokenized chunk) of the training text, as
    UTF-8 bytes, to how often it occurs. Returns the merges in order, fewer than
    `n_merges` when no word has two tokens left. `verbose` prints each merge.
    """
    _check_args(words, n_merges, verbose)
    segmented = {tuple(word): n for word, n in words.items()}  # word -> its ids
    merges: list[tuple[int, int]] = []
    for k in _steps(n_merges, verbose):
        counts: Counter[tuple[int, int]] = Counter()
        for ids, n in segmented.items():
            for pair in zip(ids, ids[1:], strict=False):
                counts[pair] += n
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        segmented = {_merge_pair(ids, best, 256 + k): n for ids, n in segmented.items()}
        if verbose:
            _log_merge(merges, counts[best])
    return merges


def _merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> tuple:
    """`ids` with each occurrence of `pair`, left to right, replaced by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


def train_bpe_fast(
    words: Mapping[bytes, int], n_merges: int, verbose: bool = False
) -> list[tuple[int, int]]:
    """The merges of `train_bpe_reference`, with pair counts updated incrementally.

    A merge visits only the positions where its pair occurs (kept in a set per
    pair); a heap with lazy deletion finds the most frequent pair. Same arguments
    and result as `train_bpe_reference`.
    """
    _check_args(words, n_merges, verbose)
    # Each word as a doubly linked list of symbols over flat arrays; weight = how
    # often the word occurs. A merged-away position gets symbol -1.
    sym: list[int] = []
    weight: list[int] = []
    prv: list[int] = []
    nxt: list[int] = []
    for data, count in words.items():
        if not data:
            continue
        start = len(sym)
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
    for k in _steps(n_merges, verbose):
        while heap:  # lazy deletion: skip entries whose count has changed
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) == -neg:
                break
            if counts.get(pair, 0) > 0:
                heapq.heappush(heap, (-counts[pair], pair))
        else:
            break  # no pair left
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
        if verbose:
            _log_merge(merges, count)
    return merges


def _check_args(words: object, n_merges: object, verbose: object) -> None:
    if not isinstance(words, Mapping):
        raise TypeError(
            f"words must be a mapping of bytes to counts, got {tname(words)}"
        )
    for word, n in words.items():
        if not isinstance(word, bytes):
            raise TypeError(f"words must have bytes keys, got {tname(word)} {word!r}")
        check_int(f"words[{word!r}]", n, 1)
    check_int("n_merges", n_merges, 0)
    check_bool("verbose", verbose)


def _steps(n_merges: int, verbose: bool) -> Iterable[int]:
    return tqdm(range(n_merges), desc="BPE merges", disable=not verbose)


def _token_bytes(i: int, merges: list[tuple[int, int]]) -> bytes:
    if i < 256:
        return bytes([i])
    a, b = merges[i - 256]
    return _token_bytes(a, merges) + _token_bytes(b, merges)


def _log_merge(merges: list[tuple[int, int]], count: int) -> None:
    """Print the last merge: number, pair, new id, its bytes, how often it occurs."""
    k = len(merges) - 1
    shown = _token_bytes(256 + k, merges)
    tqdm.write(f"merge {k + 1}: {merges[k]} -> {256 + k} {shown!r} ({count} times)")
