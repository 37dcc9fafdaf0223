"""Self-checks of Part II (pretraining, architectures, autoencoders and VAEs).

Every right answer is computed here independently of lmbook and torch (with math,
NumPy and brute force from the definitions), so a wrong ``expected`` function in
the module fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmbook import exercises
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing


def _simulated_mask_count(seed: int = 0, repeats: int = 400) -> float:
    """Monte Carlo of BERT's rule on 64 x 128 tokens with 2 special per row."""
    rng = np.random.default_rng(seed)
    special = np.zeros((64, 128), dtype=bool)
    special[:, [0, -1]] = True
    counts = []
    for _ in range(repeats):
        selected = (rng.random(special.shape) < 0.15) & ~special
        counts.append((selected & (rng.random(special.shape) < 0.8)).sum())
    return float(np.mean(counts))


def _causal_count(T: int) -> int:
    return sum(1 for t in range(T) for s in range(T) if s <= t)


def _kl_diag(mu, sigma) -> float:
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    return float(0.5 * np.sum(mu**2 + sigma**2 - 1 - np.log(sigma**2)))


REFERENCE = {
    "pretraining-mask-count": 64 * 126 * 0.15 * 0.8,
    "pretraining-signal-ratio": 129 / (0.15 * 128),
    "pretraining-mlm-loss": -(math.log(0.5) + math.log(0.25) + math.log(0.125)) / 3,
    "architectures-causal-entries": _causal_count(10),
    "architectures-cross-shape": [2, 8, 7, 12],
    "architectures-path-length": [47, 1],
    "confused-vae-kl": _kl_diag([0.5, -1.0], [1.0, 2.0]),
    "confused-reparam-grad": [0.3 + 2.0 * -0.5, 1.0, 0.5 * 2.0 * -0.5],
}

# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "pretraining-mask-count": [968, 967.68, 967.7],
    "pretraining-signal-ratio": [6.72, 6.719],
    "pretraining-mlm-loss": [1.386, 1.39],
    "architectures-causal-entries": [55],
    "architectures-cross-shape": [[2, 8, 7, 12], (2, 8, 7, 12)],
    "architectures-path-length": [[47, 1]],
    "confused-vae-kl": [1.432, 1.43],
    "confused-reparam-grad": [[-0.7, 1.0, -0.5]],
}

_SELECTED = [0.5, 0.25, 0.125]  # probabilities of the three selected tokens

# Typical mistakes.
WRONG = {
    "pretraining-mask-count": [
        64 * 128 * 0.15 * 0.8,  # counted the special tokens
        64 * 126 * 0.15,  # forgot that only 80% become [MASK]
        967,  # truncated, not rounded
    ],
    "pretraining-signal-ratio": [
        130 / (0.15 * 128),  # forgot the shift: the last token has no target
        129 / (0.15 * 130),  # let [CLS] and [SEP] be masked
        (0.15 * 128) / 129,  # MLM / AR, upside down
    ],
    "pretraining-mlm-loss": [
        -(sum(map(math.log, _SELECTED)) + math.log(0.9)) / 4,  # averaged in label -100
        -sum(map(math.log2, _SELECTED)) / 3,  # log2 (bits) instead of ln (nats)
        -sum(map(math.log, _SELECTED)),  # summed, not averaged
    ],
    "architectures-causal-entries": [45, 100, 10],  # no diagonal, no mask, T
    "architectures-cross-shape": [[2, 8, 12, 7], [2, 7, 12], [2, 8, 7, 7]],
    "architectures-path-length": [[47, 47], [48, 1], [46, 1]],  # off by one
    "confused-vae-kl": [
        _kl_diag([0.5, -1.0], [1.0, 2.0**0.5]),  # sigma taken as the variance
        _kl_diag([0.5, -1.0], [1.0, 2.0]) * 2,  # forgot the 1/2
    ],
    "confused-reparam-grad": [
        [0.3 + 4.0 * -0.5, 1.0, 4.0 * -0.5],  # used the variance, not sigma
        [0.3 + 2.0 * -0.5, 1.0, 2.0 * -0.5],  # forgot the 1/2 of sigma' = sigma/2
    ],
}


def test_every_exercise_of_the_module_is_tested():
    mine = {
        n
        for n in exercises.names()
        if n.split("-")[0] in {"pretraining", "architectures", "confused"}
    }
    assert mine == set(REFERENCE) == set(ROUNDED) == set(WRONG)


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


def test_mask_count_matches_a_simulation_of_the_rule():
    # the simulated mean of 400 draws is within a few standard errors of the answer
    expected = exercises._REGISTRY["pretraining-mask-count"].expected()
    assert abs(_simulated_mask_count() - expected) < 5.0


@pytest.mark.parametrize("name", ["architectures-cross-shape", "confused-reparam-grad"])
def test_wrong_length_is_just_wrong(name):
    assert not exercises.check(name, REFERENCE[name][:-1], quiet=True)
