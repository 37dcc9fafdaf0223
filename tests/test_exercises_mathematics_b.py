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


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert float(expected) == pytest.approx(_independent(name), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_right_answer_accepted(name, capsys):
    assert_accepted(name, _independent(name), capsys)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("factor", [0.5, 1.1, -1.0])
def test_wrong_answer_rejected_without_revealing(name, factor, capsys):
    right = _independent(name)
    assert_rejected_without_revealing(name, right * factor, right, capsys)


@pytest.mark.parametrize("name", NAMES)
def test_non_numeric_answer_rejected(name, capsys):
    assert ex.check(name, "a lot") is False
    assert "not yet" in capsys.readouterr().out


def test_common_slips_rejected():
    # the usual mistakes: forgetting the square root, the 1/sqrt(d) of the variance,
    # the biases, or using the output gate in c'
    assert not ex.check("attention-scale", 1 / 64, quiet=True)
    assert not ex.check("attention-scale", 8.0, quiet=True)
    assert not ex.check("qk-variance", math.sqrt(mb.QK_D_K) * 4, quiet=True)
    assert not ex.check("mha-parameters", 4 * 512 * 512, quiet=True)
    sig = torch.sigmoid(torch.tensor(mb.LSTM_PRE))
    no_forget = mb.LSTM_C_PREV + sig[0] * math.tanh(mb.LSTM_PRE[2])
    assert not ex.check("lstm-forget-gate", float(no_forget), quiet=True)
    h_instead = float(sig[3]) * math.tanh(_independent("lstm-forget-gate"))
    assert not ex.check("lstm-forget-gate", h_instead, quiet=True)
