"""Self-checks of Part III (attention, RNNs, LSTM gates, positions): each expected
answer is recomputed here independently, right answers pass, wrong answers fail, and
the printed feedback never reveals the answer."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import lmbook.exercises as ex
import lmbook.exercises.mathematics_b as mb
from lmbook.attention import MultiHeadAttention
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "attention-scale",
    "qk-variance",
    "mha-parameters",
    "rnn-gradient-bound",
    "lstm-forget-gate",
    "pe-rotation-angle",
]


@functools.cache
def _independent(name: str) -> float:
    """The right answer, computed a different way from the module's."""
    if name == "attention-scale":
        return 64**-0.5
    if name == "qk-variance":
        g = torch.Generator().manual_seed(0)
        q = mb.QK_STD_Q * torch.randn(200_000, mb.QK_D_K, generator=g)
        k = mb.QK_STD_K * torch.randn(200_000, mb.QK_D_K, generator=g)
        empirical = (q * k).sum(-1).var().item()
        exact = mb.QK_D_K * mb.QK_STD_Q**2 * mb.QK_STD_K**2
        assert empirical == pytest.approx(exact, rel=0.03)  # Monte Carlo agrees
        return exact
    if name == "mha-parameters":
        m = MultiHeadAttention(mb.MHA_D_MODEL, mb.MHA_N_HEADS)
        return sum(p.numel() for p in m.parameters())
    if name == "rnn-gradient-bound":
        return math.exp(mb.RNN_DISTANCE * math.log(mb.RNN_NORM))
    if name == "lstm-forget-gate":
        cell = torch.nn.LSTMCell(1, 1).double()
        with torch.no_grad():
            cell.weight_ih.zero_()
            cell.weight_hh.zero_()
            cell.bias_hh.zero_()
            cell.bias_ih.copy_(torch.tensor(mb.LSTM_PRE))
        x, h = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1).double()
        c = torch.full((1, 1), mb.LSTM_C_PREV, dtype=torch.float64)
        return cell(x, (h, c))[1].item()
    if name == "pe-rotation-angle":
        d, i, k = mb.PE_D_MODEL, mb.PE_PAIR, mb.PE_OFFSET
        omega = math.exp(-math.log(10000.0) * 2 * i / d)
        pos = torch.arange(50, dtype=torch.float64)
        # the angle of pair i advances by the same amount for every position
        angle = torch.atan2(torch.sin(pos * omega), torch.cos(pos * omega))
        step = torch.remainder(angle[k:] - angle[:-k], 2 * math.pi)
        torch.testing.assert_close(step, torch.full_like(step, k * omega))
        return k * omega
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "attention-scale": [0.125, 1 / 8],
    "qk-variance": [128],
    "mha-parameters": [1_050_624, 4 * 512**2 + 4 * 512],
    "rnn-gradient-bound": [0.12, 0.122, 0.1216],
    "lstm-forget-gate": [2.17, 2.168],
    "pe-rotation-angle": [0.3],
}


def _lstm_without_forget_gate() -> float:
    a_i, _, a_g, _ = mb.LSTM_PRE
    return mb.LSTM_C_PREV + float(torch.sigmoid(torch.tensor(a_i))) * math.tanh(a_g)


# Typical mistakes.
WRONG = {
    "attention-scale": [
        1 / 64,  # forgot the square root
        8.0,  # sqrt(d_k): divided by, not multiplied
        1 / math.sqrt(mb.MHA_D_MODEL),  # d_model instead of the head size d_k
    ],
    "qk-variance": [
        mb.QK_D_K * mb.QK_STD_Q * mb.QK_STD_K,  # standard deviations, not variances
        math.sqrt(mb.QK_D_K) * 4,  # sqrt(d_k) products
        4.0,  # the variance of one product only
    ],
    "mha-parameters": [
        4 * 512 * 512,  # forgot the biases
        4 * 512 * 64 + 4 * 64,  # one head of size 64 only
        3 * 512**2 + 3 * 512,  # forgot W^O
    ],
    "rnn-gradient-bound": [
        mb.RNN_NORM ** (mb.RNN_DISTANCE - 1),  # off by one: 19 steps
        mb.RNN_NORM * mb.RNN_DISTANCE,  # multiplied instead of a power
    ],
    "lstm-forget-gate": [
        _lstm_without_forget_gate(),  # c' = c + i g
        math.tanh(_independent("lstm-forget-gate")) / (1 + math.exp(-1.0)),  # h_t
    ],
    "pe-rotation-angle": [
        3 * 10000 ** (-1 / 8),  # omega_i = 10000^(-i/d): forgot the 2
        math.degrees(0.3),  # degrees, not radians
        10000 ** (-2 / 8),  # forgot the offset k = 3
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert float(expected) == pytest.approx(_independent(name), rel=1e-6)


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
