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
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "attention-scale",
    "qk-variance",
    "softmax-jacobian",
    "rnn-gradient-bound",
    "lstm-forget-gate",
    "lstm-dc-dh",
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
    if name == "softmax-jacobian":
        # the closed form diag(a) - a a^T, with a from the weights directly
        w = torch.tensor(mb.SOFTMAX_WEIGHTS, dtype=torch.float64)
        a = w / w.sum()
        return (torch.diag(a) - torch.outer(a, a)).tolist()
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
    if name == "lstm-dc-dh":
        cell = torch.nn.LSTMCell(1, 1).double()
        with torch.no_grad():
            cell.weight_ih.zero_()
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
            cell.weight_hh.copy_(torch.tensor(mb.LSTM_W_HH)[:, None])
        h = torch.full((1, 1), mb.LSTM_H_PREV, dtype=torch.float64)
        h.requires_grad_()
        c = torch.full((1, 1), mb.LSTM_C_PREV_GRAD, dtype=torch.float64)
        cell(torch.zeros(1, 1, dtype=torch.float64), (h, c))[1].sum().backward()
        return h.grad.item()  # autograd through torch's LSTMCell
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
    "softmax-jacobian": [
        [[0.109, -0.0312, -0.0781], [-0.0312, 0.188, -0.156], [-0.0781, -0.156, 0.234]],
        [
            [7 / 64, -2 / 64, -5 / 64],
            [-2 / 64, 12 / 64, -10 / 64],
            [-5 / 64, -10 / 64, 15 / 64],
        ],
    ],
    "rnn-gradient-bound": [0.12, 0.122, 0.1216],
    "lstm-forget-gate": [2.17, 2.168],
    "lstm-dc-dh": [0.188, 0.1883],
    "pe-rotation-angle": [0.3],
}


def _lstm_without_forget_gate() -> float:
    a_i, _, a_g, _ = mb.LSTM_PRE
    return mb.LSTM_C_PREV + float(torch.sigmoid(torch.tensor(a_i))) * math.tanh(a_g)


_A = torch.tensor([1 / 8, 2 / 8, 5 / 8], dtype=torch.float64)


def _diag(*entries) -> list[list[float]]:
    return torch.diag(torch.tensor(entries, dtype=torch.float64)).tolist()


# Typical mistakes.
WRONG = {
    "attention-scale": [
        1 / 64,  # forgot the square root
        8.0,  # sqrt(d_k): divided by, not multiplied
        1 / math.sqrt(512),  # d_model instead of the head size d_k
    ],
    "qk-variance": [
        mb.QK_D_K * mb.QK_STD_Q * mb.QK_STD_K,  # standard deviations, not variances
        math.sqrt(mb.QK_D_K) * 4,  # sqrt(d_k) products
        4.0,  # the variance of one product only
    ],
    "softmax-jacobian": [
        _diag(1 / 8, 2 / 8, 5 / 8),  # diag(a) only: forgot -a a^T
        (-torch.outer(_A, _A)).tolist(),  # -a a^T only: forgot diag(a)
        (torch.diag(_A) - torch.outer(_A, 1 - _A)).tolist(),  # sign slip
    ],
    "rnn-gradient-bound": [
        mb.RNN_NORM ** (mb.RNN_DISTANCE - 1),  # off by one: 19 steps
        mb.RNN_NORM * mb.RNN_DISTANCE,  # multiplied instead of a power
    ],
    "lstm-forget-gate": [
        _lstm_without_forget_gate(),  # c' = c + i g
        math.tanh(_independent("lstm-forget-gate")) / (1 + math.exp(-1.0)),  # h_t
    ],
    "lstm-dc-dh": [
        -0.205,  # forgot the factor c_{t-1} in the forget-gate path
        0.678,  # forgot the path through the candidate g
        0.731,  # answered d c_t / d c_{t-1} = f instead
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
    expected = torch.tensor(ex._REGISTRY[name].expected(), dtype=torch.float64)
    independent = torch.tensor(_independent(name), dtype=torch.float64)
    torch.testing.assert_close(expected, independent, rtol=1e-6, atol=1e-12)


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
