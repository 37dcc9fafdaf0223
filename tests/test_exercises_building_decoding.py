"""Self-checks of Part IV, "Decoding": each expected answer is recomputed here
independently (with Hugging Face's processors, brute force or simulation), right
answers pass, typical wrong answers fail, and the feedback never reveals the
answer."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from transformers.generation import RepetitionPenaltyLogitsProcessor

import lmbook.exercises as ex
import lmbook.exercises.building_decoding as bd
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "repetition-penalty",
    "top-p-kept",
    "length-penalty-tie",
    "speculative-acceptance",
    "speculative-tokens-per-pass",
]


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "repetition-penalty":
        scores = torch.tensor([bd.PENALTY_LOGITS], dtype=torch.float64)
        seen = torch.tensor([bd.PENALTY_SEEN])
        out = RepetitionPenaltyLogitsProcessor(bd.PENALTY)(seen, scores)
        return tuple(out[0].tolist())
    if name == "top-p-kept":
        total = 0.0
        for n, p in enumerate(sorted(bd.TOP_P_PROBS, reverse=True), start=1):
            total += p
            if total >= bd.TOP_P:
                return n
    if name == "length-penalty-tie":
        (la, na), (lb, nb) = bd.BEAM_A, bd.BEAM_B

        def gap(a):
            return la / na**a - lb / nb**a

        low, high = -5.0, 5.0  # bisection: A wins at low alpha, B at high alpha
        assert gap(low) > 0 > gap(high)
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if gap(mid) > 0 else (low, mid)
        return low
    if name == "speculative-acceptance":
        p = torch.tensor(bd.SPEC_P, dtype=torch.float64)
        q = torch.tensor(bd.SPEC_Q, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        y = torch.multinomial(q, 400_000, replacement=True, generator=gen)
        r = torch.rand(400_000, generator=gen, dtype=torch.float64)
        simulated = (r < p[y] / q[y]).double().mean().item()
        exact = float(torch.minimum(p, q).sum())
        assert simulated == pytest.approx(exact, abs=0.005)  # simulation agrees
        return exact
    if name == "speculative-tokens-per-pass":
        a = float(torch.minimum(torch.tensor(bd.SPEC_P), torch.tensor(bd.SPEC_Q)).sum())
        # P(exactly j drafts accepted) = a**j (1 - a) for j < k, a**k for j = k;
        # the round yields j + 1 tokens
        k = bd.SPEC_K
        return sum((j + 1) * a**j * (1 - a) for j in range(k)) + (k + 1) * a**k
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "repetition-penalty": [(1.33, -1.5, 0.5, -0.2), [4 / 3, -1.5, 0.5, -0.2]],
    "top-p-kept": [3],
    "length-penalty-tie": [0.415, 0.41504],
    "speculative-acceptance": [0.7, 0.70],
    "speculative-tokens-per-pass": [2.77, 2.773],
}

# Typical mistakes.
WRONG = {
    "repetition-penalty": [
        (2 / 1.5, -1 / 1.5, 0.5, -0.2),  # divided the negative logit too
        (2 / 1.5, -1.5 / 1.5 * 1.5**2, 0.5, -0.2),  # token 1 penalised twice
        (2 / 1.5, -1.5, 0.5 / 1.5, -0.2 * 1.5),  # penalised every token
    ],
    "top-p-kept": [
        2,  # stopped before reaching p
        4,  # one too many: went past the token that reached p
        1,  # kept only tokens with probability above p
    ],
    "length-penalty-tie": [
        math.log(8 / 6) / math.log(8),  # divided by log n_B
        math.log(6 / 8) / math.log(2),  # inverted the ratio: the sign is wrong
        0.5,
    ],
    "speculative-acceptance": [
        sum(max(p, q) for p, q in zip(bd.SPEC_P, bd.SPEC_Q, strict=True)),
        sum(p * q for p, q in zip(bd.SPEC_P, bd.SPEC_Q, strict=True)),
        1 - 0.7,  # the rejection rate
    ],
    "speculative-tokens-per-pass": [
        0.7 * 4,  # accepted drafts only, as if independent of the first rejection
        0.7 * 4 + 1,  # expected accepted drafts if every one were tried, plus one
        (1 - 0.7**4) / (1 - 0.7),  # forgot the token the target adds
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert expected == pytest.approx(_independent(name), rel=1e-6)


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
