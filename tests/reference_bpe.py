"""Helpers for the BPE tests and bench, written independently of lmbook.

`naive_encode`: minbpe's encoder, which repeatedly merges the adjacent pair of
lowest rank, to check `BPETokenizer.encode`. The readable BPE trainer (Sennrich et
al., 2016, Algorithm 1) is not here: lmbook ships it as
`lmbook.tokenizers.train_bpe_reference`, and the Hugging Face tokenizer with an
lmbook tokenizer's merges, for comparing encodings, is `BPETokenizer.to_hf`.
"""

from __future__ import annotations


def merge_ids(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`ids` with each occurrence of `pair`, left to right, replaced by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


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
