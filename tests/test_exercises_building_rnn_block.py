"""Self-checks of Part IV's recurrent-language-model and Transformer-block
chapters: each expected answer is recomputed here another way, the rounded answers
readers type pass, typical mistakes fail, and the feedback never gives the answer
away."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import lmbook.exercises as ex
import lmbook.exercises.building_rnn_block as rb
from lmbook.gpt import Block, GPTConfig
from lmbook.rnn import RNNLM
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "rnnlm-bpc",
    "rnnlm-parameters",
    "ngram-table-cells",
    "keras-mha-parameters",
    "block-parameters",
    "leak-mean-loss",
]


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _independent(name: str) -> float:
    """The right answer, computed a different way from the module's."""
    if name == "rnnlm-bpc":
        return rb.BPC_NATS * math.log2(math.e)
    if name == "rnnlm-parameters":
        model = RNNLM(rb.LSTM_VOCAB, rb.LSTM_HIDDEN, num_layers=rb.LSTM_LAYERS)
        return _numel(model)
    if name == "ngram-table-cells":
        table = torch.empty((rb.NGRAM_VOCAB,) * rb.NGRAM_N, device="meta")
        return table.numel()  # a dense table, shapes only
    if name == "keras-mha-parameters":
        # Keras's query/key/value/output EinsumDense layers hold the weights of
        # three Linear(C, heads * key_dim) and one Linear(heads * key_dim, C)
        inner = rb.KERAS_HEADS * rb.KERAS_KEY_DIM
        with torch.device("meta"):
            layers = [nn.Linear(rb.KERAS_WIDTH, inner) for _ in range(3)]
            layers.append(nn.Linear(inner, rb.KERAS_WIDTH))
        return sum(_numel(layer) for layer in layers)
    if name == "block-parameters":
        with torch.device("meta"):
            return _numel(Block(GPTConfig.from_preset("gpt2")))
    if name == "leak-mean-loss":
        losses = torch.zeros(rb.LEAK_T, dtype=torch.float64)
        losses[-1] = rb.LEAK_LAST_LOSS
        return losses.mean().item()
    raise AssertionError(name)


# The rounded answers the chapters' solutions show, as a reader would type them.
ROUNDED = {
    "rnnlm-bpc": [2.31, 2.308],
    "rnnlm-parameters": [1_086_017],
    "ngram-table-cells": [1_160_290_625, 65**5],
    "keras-mha-parameters": [8_401_408],
    "block-parameters": [7_087_872],
    "leak-mean-loss": [0.2, 3.2 / 16],
}

# Typical mistakes.
WRONG = {
    "rnnlm-bpc": [
        rb.BPC_NATS * math.log(2),  # multiplied by ln 2
        rb.BPC_NATS / math.log(10),  # decimal digits instead of bits
        math.exp(rb.BPC_NATS),  # the perplexity
    ],
    "rnnlm-parameters": [
        1_086_017 - 2 * 4 * 256,  # one bias per layer instead of two
        1_086_017 - 526_336,  # one LSTM layer only
        16_640 + 2 * (4 * 256 * (65 + 256) + 2 * 4 * 256) + 16_705,  # W_ih (4H, V)
    ],
    "ngram-table-cells": [
        65**4,  # the contexts only
        65 * 5,  # V times n
        5**65,  # exponent and base swapped
    ],
    "keras-mha-parameters": [
        4 * 512**2 + 4 * 512,  # key_dim read as the model width
        4 * 8 * 512**2,  # forgot the biases
        3 * (512 * 8 * 512 + 8 * 512) + 512 * 512 + 512,  # output kernel C x C
    ],
    "block-parameters": [
        12 * 768**2,  # weights only
        12 * 768**2 + 9 * 768,  # forgot the LayerNorms
        4 * 768**2 + 4 * 768,  # attention only
    ],
    "leak-mean-loss": [
        3.2,  # the last position's loss
        3.2 / 15,  # divided by the visible positions
        0.0,  # the visible positions' loss
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert float(expected) == pytest.approx(_independent(name), rel=1e-12)


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
