"""Reference byte-level BPE, written independently of lmbook, for tests and bench.

The slow, obviously correct algorithm: recount every pair before each merge
(Sennrich et al., 2016, Algorithm 1), with lmbook's tie-break (most frequent pair,
then the smallest pair of ids).
"""

from __future__ import annotations

from collections import Counter


def merge_ids(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_bpe(chunks: list[str], n_merges: int):
    """Recount every pair before each merge (Sennrich et al.'s Algorithm 1)."""
    words = Counter(tuple(c.encode("utf-8")) for c in chunks)
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, n in words.items():
            for pair in zip(w, w[1:], strict=False):
                counts[pair] += n
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, smallest
        merges.append(best)
        new = Counter()
        for w, n in words.items():
            new[tuple(merge_ids(list(w), best, 256 + k))] += n
        words = new
    return merges, set(words)


def naive_encode(data: bytes, merges: list[tuple[int, int]]) -> list[int]:
    """minbpe-style: repeatedly merge the adjacent pair with the lowest rank."""
    ranks = {p: k for k, p in enumerate(merges)}
    ids = list(data)
    while len(ids) > 1:
        pair = min(zip(ids, ids[1:], strict=False), key=lambda p: ranks.get(p, 1e9))
        if pair not in ranks:
            break
        ids = merge_ids(ids, pair, 256 + ranks[pair])
    return ids
