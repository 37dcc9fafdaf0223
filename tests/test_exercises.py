"""The self-check machinery of lmbook.exercises: the precision rule, hints that
never give the answer away, and that every exercise has its cases tested."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest

from lmbook import exercises

PARTS = sorted(  # every tests/test_exercises_<part>.py, each with ROUNDED and WRONG
    p.stem.removeprefix("test_exercises_")
    for p in Path(__file__).parent.glob("test_exercises_*.py")
)


def _toy(monkeypatch, expected, sig=3, name="toy"):
    ex = exercises.Exercise(name, lambda: expected, "think of 1/sqrt(d_k).", sig=sig)
    monkeypatch.setitem(exercises._REGISTRY, name, ex)
    return name


def _ok(name, answer) -> bool:
    return exercises.check(name, answer, quiet=True)


def test_right_answer(monkeypatch, capsys):
    assert exercises.check(_toy(monkeypatch, 0.125), 0.125)
    assert "correct" in capsys.readouterr().out


def test_wrong_answer_gives_hint_and_precision_not_answer(monkeypatch, capsys):
    assert not exercises.check(_toy(monkeypatch, 0.125), 0.25)
    out = capsys.readouterr().out
    assert "Hint: think of 1/sqrt(d_k)." in out
    assert "accepted to 3 significant figures" in out
    assert "0.125" not in out


@pytest.mark.parametrize(
    ("sig", "note"),
    [(2, "accepted to 2 significant figures"), (None, "must be exact")],
)
def test_hint_states_the_precision(monkeypatch, capsys, sig, note):
    assert not exercises.check(_toy(monkeypatch, 55, sig=sig), 45)
    assert note in capsys.readouterr().out


def test_wrong_type_is_just_wrong(monkeypatch):
    name = _toy(monkeypatch, 0.125)
    assert not _ok(name, "an eighth")
    assert not _ok(name, [0.125, 0.125])
    assert not _ok(name, None)
    assert not _ok(name, float("nan"))


def test_unknown_exercise():
    with pytest.raises(ValueError, match="name='nope' is not a known exercise"):
        exercises.check("nope", 1)


def test_bad_name_type():
    with pytest.raises(TypeError, match="name must be a str, got list"):
        exercises.check(["attention-scale"], 0.125)


def test_bad_quiet():
    with pytest.raises(TypeError, match="quiet must be a bool, got str"):
        exercises.check("attention-scale", 0.125, quiet="yes")


# --- the precision rule -----------------------------------------------------------

GELU_1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))  # 0.84134...


@pytest.mark.parametrize("answer", [0.841, 0.8413, 0.84134, GELU_1])
def test_three_significant_figures_accepted(monkeypatch, answer):
    assert _ok(_toy(monkeypatch, GELU_1), answer)


@pytest.mark.parametrize("answer", [0.84, 0.842, 0.840, 0.8, 0.85])
def test_fewer_or_wrong_figures_rejected(monkeypatch, answer):
    assert not _ok(_toy(monkeypatch, GELU_1), answer)


@pytest.mark.parametrize(
    ("expected", "answer"),
    [(967.68, 968), (1 / 3, 0.333), (6.71875, 6.72), (1.825741858e12, 1.83e12)],
)
def test_rule_scales_with_the_magnitude(monkeypatch, expected, answer):
    name = _toy(monkeypatch, expected)
    assert _ok(name, answer)
    assert _ok(name, -answer) is False
    assert not _ok(name, answer * 1.01)


def test_two_significant_figures_when_the_check_says_so(monkeypatch):
    name = _toy(monkeypatch, 0.9**20, sig=2)  # 0.1216
    assert _ok(name, 0.12) and _ok(name, 0.122)
    assert not _ok(name, 0.13) and not _ok(name, 0.1)


def test_half_way_rounds_either_way(monkeypatch):
    # 0.125 to 2 figures is 0.12 or 0.13 depending on the rounding convention
    name = _toy(monkeypatch, 0.125, sig=2)
    assert _ok(name, 0.12) and _ok(name, 0.13)
    assert not _ok(name, 0.119) and not _ok(name, 0.131)


def test_exact_checks_take_no_tolerance(monkeypatch):
    name = _toy(monkeypatch, 1_050_624, sig=None)
    assert _ok(name, 1_050_624) and _ok(name, 1_050_624.0)
    assert _ok(name, np.int64(1_050_624))
    assert not _ok(name, 1_050_624.4) and not _ok(name, 1_050_000)


def test_each_element_needs_its_own_figures(monkeypatch):
    name = _toy(monkeypatch, [65.0, math.log2(65)])  # [65, 6.0224]
    assert _ok(name, [65, 6.02])
    assert not _ok(name, [65, 6.0])  # 6.0 is 2 figures
    name = _toy(monkeypatch, [0.8638, 0.1169, 0.01932], name="probs")
    assert _ok(name, [0.864, 0.117, 0.0193])
    assert not _ok(name, [0.864, 0.117, 0.02])


def test_zero_must_be_exact(monkeypatch):
    name = _toy(monkeypatch, [0.0, 1.0])
    assert _ok(name, [0, 1.0])
    assert not _ok(name, [1e-9, 1.0])


@pytest.mark.parametrize(
    ("sig", "error", "match"),
    [
        (0, ValueError, "sig must be in \\[1, 15\\], got 0"),
        (2.5, TypeError, "sig must be an int, got float"),
        (True, TypeError, "sig must be an int, got bool"),
    ],
)
def test_register_checks_sig(monkeypatch, sig, error, match):
    monkeypatch.setattr(exercises, "_REGISTRY", dict(exercises._REGISTRY))
    with pytest.raises(error, match=match):
        exercises.register("toy-sig", lambda: 1.0, "hint", sig=sig)


def _unit(value: float, sig: int) -> float:
    """One unit in the sig-th significant figure of value."""
    return 10.0 ** (math.floor(math.log10(abs(value))) - sig + 1)


@pytest.mark.parametrize("name", exercises.names())
def test_every_exercise_accepts_its_rounded_answer_and_not_one_unit_off(name):
    ex = exercises._REGISTRY[name]
    expected = ex.expected()
    if isinstance(expected, str):
        pytest.skip("a string answer is compared as text")
    e = np.asarray(expected, dtype=float).ravel()
    if ex.sig is None:
        rounded, off = e, e.copy()
        off[0] += 1
    else:
        rounded = np.array([float(f"{v:.{ex.sig}g}") for v in e])
        off = rounded.copy()
        off[0] = rounded[0] + _unit(e[0], ex.sig)
    shape = np.shape(expected)
    assert exercises.check(name, rounded.reshape(shape).tolist(), quiet=True)
    assert not exercises.check(name, off.reshape(shape).tolist(), quiet=True)


def test_every_exercise_has_a_rounded_and_a_typical_wrong_answer_tested():
    rounded, wrong = {}, {}
    for part in PARTS:
        module = importlib.import_module(f"tests.test_exercises_{part}")
        rounded |= module.ROUNDED
        wrong |= module.WRONG
    assert set(rounded) == set(wrong) == set(exercises.names())
    assert all(rounded.values()) and all(wrong.values())


def test_assert_hides_catches_a_revealed_answer():
    from tests.exercise_helpers import assert_hides

    assert_hides("✘ not yet. Hint: think of 1/sqrt(d_k)", 0.125)
    for leak in ("the answer is 0.125", "about 0.12", "1.25e-01"):
        with pytest.raises(AssertionError, match="reveals"):
            assert_hides(leak, 0.125)
