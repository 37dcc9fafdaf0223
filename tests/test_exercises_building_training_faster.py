"""Self-checks of Part IV, "Training faster": each expected answer is recomputed
here independently (by the formula, not the package), right and rounded answers
pass, typical mistakes fail, and the feedback never reveals the answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import lmbook.exercises as ex
import lmbook.exercises.building_training_faster as tf
from lmbook.muon import newton_schulz
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "speedrun-cosine-lr",
    "speedrun-residual-std",
    "speedrun-adamw-first-step",
    "speedrun-ns-flops",
    "speedrun-clip",
]


def _independent(name: str) -> float:
    """The right answer, by the formula written out."""
    if name == "speedrun-cosine-lr":
        p = (tf.COSINE_IT - 100) / (2000 - 100)
        return 1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * p)) / 2
    if name == "speedrun-residual-std":
        return 0.02 * (2 * tf.GPT2_LAYERS) ** -0.5
    if name == "speedrun-adamw-first-step":
        b1, b2 = tf.ADAMW_BETAS
        g, eps = tf.ADAMW_GRAD, 1e-8
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g * g / (1 - b2)
        decayed = tf.ADAMW_THETA * (1 - tf.ADAMW_LR * tf.ADAMW_WD)
        return decayed - tf.ADAMW_LR * m_hat / (math.sqrt(v_hat) + eps)
    if name == "speedrun-ns-flops":
        m, n = 128, 512  # 512 x 128 transposed to the wide orientation
        x = torch.zeros(m, n)
        with FlopCounterMode(display=False) as counter:
            newton_schulz(x.T.contiguous(), steps=tf.NS_STEPS)
        assert counter.get_total_flops() == tf.NS_STEPS * (4 * m * m * n + 2 * m**3)
        return counter.get_total_flops()
    if name == "speedrun-clip":
        norm = math.sqrt(sum(x * x for g in tf.CLIP_GRADS for x in g))
        return tf.CLIP_GRADS[0][0] * tf.CLIP_MAX_NORM / (norm + 1e-6)
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "speedrun-cosine-lr": [5.87e-4, 0.000587],
    "speedrun-residual-std": [0.00408, 0.004082],
    "speedrun-adamw-first-step": [0.5095, 0.51 - 0.0005],
    "speedrun-ns-flops": [1.89e8, 188_743_680],
    "speedrun-clip": [0.231, 3 / 13],
}

# Typical mistakes.
WRONG = {
    "speedrun-cosine-lr": [
        5.5e-4,  # p = 1000 / 2000: forgot that the cosine starts after warmup
        1e-3 * (1 + math.cos(math.pi * 900 / 1900)) / 2,  # forgot min_lr
        1e-4,  # the end of the schedule
    ],
    "speedrun-residual-std": [
        0.02 / math.sqrt(12),  # one residual addition per layer
        0.02 / 24,  # no square root
        0.02,  # the plain init
    ],
    "speedrun-adamw-first-step": [
        0.51,  # no weight decay
        0.4895,  # moved with the gradient, not against it
        0.5 + 0.01 * 2,  # plain SGD step lr * |g|
    ],
    "speedrun-ns-flops": [
        5 * (4 * 512 * 512 * 128 + 2 * 512**3),  # the tall orientation
        4 * 128 * 128 * 512 + 2 * 128**3,  # one step, not five
        5 * (2 * 128 * 128 * 512 + 128**3),  # multiply-adds, not FLOPs
    ],
    "speedrun-clip": [
        3.0,  # not clipped
        0.6,  # clipped each tensor on its own: 3 / 5
        3 / 19,  # the L1 norm 3 + 4 + 12
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
