"""Self-checks of Part IV, "Building a tokenizer": each expected answer is
recomputed here another way (with lmbook's tokenizer, trainer and a meta-device
model), right answers pass, typical mistakes fail, and the feedback never reveals
the answer."""

from __future__ import annotations

import functools

import pytest

import lmbook.exercises as ex
import lmbook.exercises.building_tokenizer as bt
from lmbook.tokenizers import BPETokenizer, train_bpe_reference
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "tokenizer-utf8-bytes",
    "tokenizer-third-merge",
    "tokenizer-embedding-params",
    "tokenizer-flops-per-char",
]


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "tokenizer-utf8-bytes":
        return len(BPETokenizer().encode(bt.UTF8_TEXT))  # no merges: one per byte
    if name == "tokenizer-third-merge":
        words = {w.encode(): n for w, n in bt.MERGE_WORDS.items()}
        merges = train_bpe_reference(words, 3)
        tok = BPETokenizer(None)
        tok._set_merges(merges[:2])  # the segmentation before the third merge
        return sum(
            n * sum(pair == merges[2] for pair in zip(ids, ids[1:], strict=False))
            for w, n in bt.MERGE_WORDS.items()
            for ids in [tok.encode(w)]
        )
    if name == "tokenizer-embedding-params":
        import torch

        with torch.device("meta"):
            emb = torch.nn.Embedding(bt.LLAMA3_VOCAB, bt.LLAMA3_D_MODEL)
            head = torch.nn.Linear(bt.LLAMA3_D_MODEL, bt.LLAMA3_VOCAB, bias=False)
        return emb.weight.numel() + head.weight.numel()
    if name == "tokenizer-flops-per-char":
        chars = 1_000_000
        tokens = bt.FLOPS_TOKENS_PER_CHAR * chars
        params = bt.FLOPS_N_BODY + bt.FLOPS_VOCAB * bt.FLOPS_D_MODEL
        return 6 * params * tokens / chars
    raise AssertionError(name)


def test_the_third_merge_is_hug():
    words = {w.encode(): n for w, n in bt.MERGE_WORDS.items()}
    assert train_bpe_reference(words, 3) == [(117, 103), (117, 110), (104, 256)]


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "tokenizer-utf8-bytes": [22],
    "tokenizer-third-merge": [15],
    "tokenizer-embedding-params": [1_050_673_152, 2 * 128_256 * 4096],
    "tokenizer-flops-per-char": [3.96e7, 39_576_000, 3.958e7],
}

# Typical mistakes.
WRONG = {
    "tokenizer-utf8-bytes": [
        7,  # characters, not bytes
        21,  # the emoji taken as 3 bytes
        18,  # the emoji forgotten
    ],
    "tokenizer-third-merge": [
        20,  # the first merge's count (u, g)
        16,  # the second merge's count (u, n)
        12,  # (p, un), the runner-up
    ],
    "tokenizer-embedding-params": [
        bt.LLAMA3_VOCAB * bt.LLAMA3_D_MODEL,  # the input table only (as if tied)
        2 * 128_000 * 4096,  # "128k" taken as 128,000
    ],
    "tokenizer-flops-per-char": [
        6 * bt.FLOPS_N_BODY * bt.FLOPS_TOKENS_PER_CHAR,  # forgot the output layer
        6
        * (bt.FLOPS_N_BODY + bt.FLOPS_VOCAB * bt.FLOPS_D_MODEL)
        / bt.FLOPS_TOKENS_PER_CHAR,  # divided by tokens per character
        2
        * (bt.FLOPS_N_BODY + bt.FLOPS_VOCAB * bt.FLOPS_D_MODEL)
        * bt.FLOPS_TOKENS_PER_CHAR,  # the forward pass only
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert float(expected) == pytest.approx(_independent(name), rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_right_answer_accepted(name, capsys):
    assert_accepted(name, _independent(name), capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in ROUNDED.items() for a in answers]
)
def test_rounded_answer_accepted(name, answer, capsys):
    assert_accepted(name, answer, capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in WRONG.items() for a in answers]
)
def test_typical_mistake_rejected_without_revealing(name, answer, capsys):
    assert_rejected_without_revealing(name, answer, _independent(name), capsys)


@pytest.mark.parametrize("name", NAMES)
def test_non_numeric_answer_rejected(name, capsys):
    assert ex.check(name, "a lot") is False
    assert "not yet" in capsys.readouterr().out
