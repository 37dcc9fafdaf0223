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

# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "tanh-derivative-at-0": [1, 1.0],
    "gelu-at-1": [0.841, 0.8413],
    "softmax-temperature": [[0.864, 0.117, 0.0193]],
    "perplexity-uniform": [[65, 6.02]],
    "sequence-perplexity": [[-4.16, 1.39, 4]],
    "gd-critical-lr": [0.333, 0.3333],
    "backprop-scalar": [[-0.122, -0.244, -0.0956, -0.207]],
}


def _backprop_without_tanh_derivative():
    dw1, db1, dw2, db2 = _backprop_scalar()
    h = math.tanh(0.5)
    return [dw1 / (1 - h**2), db1 / (1 - h**2), dw2, db2]


# Typical mistakes.
WRONG = {
    "tanh-derivative-at-0": [0.0, 0.25],  # tanh(0) itself; the sigmoid's slope
    "gelu-at-1": [
        0.5 * (1 + math.erf(1.0)),  # erf(x), forgetting the sqrt(2)
        1 / (1 + math.exp(-1.702)),  # the sigmoid approximation x sigma(1.702 x)
        0.84,  # too few figures
    ],
    "softmax-temperature": [
        list(_softmax([2.0, 1.0, 0.1])),  # forgot T
        list(_softmax([1.0, 0.5, 0.05])),  # multiplied by T instead of dividing
    ],
    "perplexity-uniform": [
        [65.0, math.log(65)],  # bpc in nats
        [math.log(65), math.log2(65)],  # cross-entropy, not perplexity
    ],
    "sequence-perplexity": [
        [math.log(64), math.log(64) / 3, 4.0],  # sign
        [-math.log2(64), math.log2(64) / 3, 4.0],  # log2 instead of ln
        [-math.log(64), math.log(64), 64.0],  # forgot to divide by 3
    ],
    "gd-critical-lr": [2 / 3, 1 / 6, 0.33],  # a = 3; lr < 1/a; too few figures
    "backprop-scalar": [
        _backprop_without_tanh_derivative(),
        [2 * g for g in _backprop_scalar()],  # dL/dy_hat = 2 (y_hat - y)
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(REFERENCE) == set(ROUNDED) == set(WRONG)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_right_answer_is_accepted(name, capsys):
    assert_accepted(name, REFERENCE[name], capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in ROUNDED.items() for a in answers]
)
def test_rounded_answer_is_accepted(name, answer, capsys):
    assert_accepted(name, answer, capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in WRONG.items() for a in answers]
)
def test_plausible_wrong_answer_is_rejected_without_revealing(name, answer, capsys):
    assert_rejected_without_revealing(name, answer, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_wrong_shape_is_rejected(name):
    answer = np.atleast_1d(REFERENCE[name])
    assert not exercises.check(name, np.append(answer, 0.0), quiet=True)


def test_all_registered():
    assert set(REFERENCE) <= set(exercises.names())


def test_softmax_temperature_sums_to_one():
    assert math.isclose(sum(exercises._REGISTRY["softmax-temperature"].expected()), 1)
