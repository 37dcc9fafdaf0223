"""Self-checks of Part III (neurons, softmax, sequence probability, gradients).

Every right answer is computed here independently of lmbook (with math and NumPy
from the definitions), so a wrong ``expected`` function in the module fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbook import exercises
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing


def _softmax(z):
    e = np.exp(np.asarray(z, dtype=float) - np.max(z))
    return e / e.sum()


def _backprop_scalar():
    x, y, w1, b1, w2, b2 = 0.5, 1.0, 2.0, -0.5, 1.5, 0.1
    h = math.tanh(w1 * x + b1)
    d_yhat = w2 * h + b2 - y  # L = (y_hat - y)^2 / 2
    d_z = d_yhat * w2 * (1 - h**2)
    return [d_z * x, d_z, d_yhat * h, d_yhat]


REFERENCE = {
    "tanh-derivative-at-0": 1 - math.tanh(0.0) ** 2,
    "gelu-at-1": 1.0 * 0.5 * (1 + math.erf(1 / math.sqrt(2))),
    "softmax-temperature": list(_softmax([4.0, 2.0, 0.2])),
    "perplexity-uniform": [65.0, math.log2(65)],
    "sequence-perplexity": [-math.log(64), math.log(64) / 3, 4.0],
    "gd-critical-lr": 1 / 3,
    "backprop-scalar": _backprop_scalar(),
}

WRONG = {
    "tanh-derivative-at-0": 0.0,  # tanh(0) itself, not its derivative
    "gelu-at-1": 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)) + 0.01,
    "softmax-temperature": list(_softmax([2.0, 1.0, 0.1])),  # forgot T
    "perplexity-uniform": [65.0, math.log(65)],  # bpc in nats
    "sequence-perplexity": [math.log(64), math.log(64) / 3, 4.0],  # sign
    "gd-critical-lr": 2 / 3,  # used a = 3
    "backprop-scalar": _backprop_scalar()[::-1],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_right_answer_is_accepted(name, capsys):
    assert_accepted(name, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_plausible_wrong_answer_is_rejected_without_revealing(name, capsys):
    assert_rejected_without_revealing(name, WRONG[name], REFERENCE[name], capsys)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_wrong_shape_is_rejected(name):
    answer = np.atleast_1d(REFERENCE[name])
    assert not exercises.check(name, np.append(answer, 0.0), quiet=True)


def test_all_registered():
    assert set(REFERENCE) <= set(exercises.names())


def test_softmax_temperature_sums_to_one():
    assert math.isclose(sum(exercises._REGISTRY["softmax-temperature"].expected()), 1)
