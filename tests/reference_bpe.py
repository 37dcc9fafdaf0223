"""Helpers for the BPE tests and bench, written independently of lmbook.

`naive_encode`: minbpe's encoder, which repeatedly merges the adjacent pair of
lowest rank, to check `BPETokenizer.encode`. `hf_tokenizer`: a Hugging Face
`tokenizers` BPE with the merges of an lmbook BPETokenizer, to compare encodings
with the library the field uses. The readable BPE trainer (Sennrich et al., 2016,
Algorithm 1) is not here: lmbook ships it as `lmbook.tokenizers.train_bpe_reference`.
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


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte (encoder.py)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    chars = keep + [256 + i for i in range(len(extra))]
    return {b: chr(c) for b, c in zip(keep + extra, chars, strict=True)}


def hf_tokenizer(tok):
    """A Hugging Face tokenizer with exactly `tok`'s merges (GPT-2 byte mapping)."""
    import tokenizers

    b2u = gpt2_bytes_to_unicode()

    def show(i):
        return "".join(b2u[b] for b in tok.vocab[i])

    vocab = {show(i): i for i in range(tok.vocab_size)}
    merges = [(show(a), show(b)) for a, b in tok.merges]
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    return hf
