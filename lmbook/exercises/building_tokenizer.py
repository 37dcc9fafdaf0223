"""Self-checks for Part IV, "Building a tokenizer": bytes, merges and the cost
of a vocabulary.

Byte-level BPE follows Sennrich, Haddow & Birch (2016) and Radford et al. (2019);
the vocabulary of Llama 3 is Dubey et al. (2024); 6 FLOPs per parameter per token
is Kaplan et al. (2020). The answers are computed here, not typed in.
"""

from __future__ import annotations

from collections import Counter

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
UTF8_TEXT = "我喜欢吃水果🙂"
MERGE_WORDS = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
LLAMA3_VOCAB, LLAMA3_D_MODEL = 128_256, 4096
FLOPS_N_BODY, FLOPS_D_MODEL, FLOPS_VOCAB, FLOPS_TOKENS_PER_CHAR = (
    10_000_000,
    512,
    32_000,
    0.25,
)


def _utf8_bytes() -> int:
    return len(UTF8_TEXT.encode("utf-8"))


def _third_merge_count() -> int:
    """How often the pair merged third occurs when it is merged."""
    words = {tuple(w): n for w, n in MERGE_WORDS.items()}  # characters, as here
    for _ in range(3):
        counts: Counter = Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                counts[pair] += n
        best = max(counts, key=counts.get)  # no ties in this corpus
        words = {_merge(s, best): n for s, n in words.items()}
    return counts[best]


def _merge(symbols: tuple, pair: tuple) -> tuple:
    out, i = [], 0
    while i < len(symbols):
        if symbols[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def _embedding_params() -> int:
    return 2 * LLAMA3_VOCAB * LLAMA3_D_MODEL  # input table and output layer


def _flops_per_char() -> float:
    per_token = 6 * (FLOPS_N_BODY + FLOPS_VOCAB * FLOPS_D_MODEL)
    return per_token * FLOPS_TOKENS_PER_CHAR


register(
    "tokenizer-utf8-bytes",
    _utf8_bytes,
    "without merges, byte-level BPE gives one token per UTF-8 byte; count the "
    "bytes of each character from its code point (1 up to U+007F, 2 up to "
    "U+07FF, 3 up to U+FFFF, 4 above).",
    sig=None,  # a count
)
register(
    "tokenizer-third-merge",
    _third_merge_count,
    "count every adjacent pair, weighted by the word's count, merge the most "
    "frequent pair everywhere, and count again; give the count of the third "
    "pair at the moment it is merged.",
    sig=None,
)
register(
    "tokenizer-embedding-params",
    _embedding_params,
    "the input embedding has one row of d_model numbers per token, and an "
    "untied output layer has another V x d_model matrix.",
    sig=None,
)
register(
    "tokenizer-flops-per-char",
    _flops_per_char,
    "training costs about 6 FLOPs per parameter per token, and the output layer "
    "(V x d_model) is computed for every token; multiply the FLOPs per token by "
    "the tokens per character.",
)
