"""Shared assertions for the self-check tests: right answers are accepted, wrong ones
get a hint, and feedback never gives the answer away."""

from __future__ import annotations

import numpy as np

from lmbook.exercises import check


def spellings(answer) -> set[str]:
    """Ways an answer could be printed: repr, rounded, scientific, grouped."""
    forms: set[str] = set()
    if isinstance(answer, tuple):
        forms |= {str(answer), str(list(answer)), ", ".join(map(str, answer))}
    for value in np.ravel(np.asarray(answer, dtype=float)):
        v = float(value)
        forms |= {repr(v), f"{v:.2f}", f"{v:.3f}", f"{v:.3g}", f"{v:g}", f"{v:.2e}"}
        if v.is_integer() or abs(v) > 1e6:
            forms |= {str(round(v)), f"{round(v):,}"}
    return {f for f in forms if len(f) > 1}


def assert_hides(out: str, answer, name: str = "") -> None:
    """Fail if printed feedback `out` contains any spelling of `answer`."""
    for text in spellings(answer):
        assert text not in out, f"{name}'s feedback reveals {text!r}"


def assert_accepted(name: str, answer, capsys) -> None:
    """check(name, answer) says yes, and prints so."""
    assert check(name, answer) is True
    assert "correct" in capsys.readouterr().out


def assert_rejected_without_revealing(name: str, answer, right, capsys) -> None:
    """check(name, answer) says no, prints a hint and no spelling of `right`."""
    assert check(name, answer) is False
    out = capsys.readouterr().out
    assert "not yet" in out and "Hint:" in out
    assert_hides(out, right, name)


def exercise_tests(names, rounded, wrong, independent) -> dict:
    """The standard tests of one self-check module, as test functions.

    names: the module's exercise names; rounded / wrong: {name: [answers]} that
    a reader might type (accepted) and typical mistakes (rejected without the
    answer being revealed); independent(name): the right answer computed in a
    different way from the module's. A test file adds them with
    ``globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))``.
    """
    import pytest
    import torch

    from lmbook import exercises as ex

    def as_tensor(answer):
        return torch.tensor(answer, dtype=torch.float64)

    def test_every_exercise_of_the_module_is_tested():
        assert set(names) == set(rounded) == set(wrong)

    def test_all_registered():
        assert set(names) <= set(ex.names())

    @pytest.mark.parametrize("name", names)
    def test_expected_matches_independent_computation(name):
        expected = ex._REGISTRY[name].expected()
        torch.testing.assert_close(
            as_tensor(expected), as_tensor(independent(name)), rtol=1e-9, atol=1e-12
        )

    @pytest.mark.parametrize("name", names)
    def test_right_answer_accepted(name, capsys):
        assert_accepted(name, independent(name), capsys)

    @pytest.mark.parametrize(
        ("name", "answer"), [(n, a) for n, answers in rounded.items() for a in answers]
    )
    def test_rounded_answer_accepted(name, answer, capsys):
        assert_accepted(name, answer, capsys)

    @pytest.mark.parametrize(
        ("name", "answer"), [(n, a) for n, answers in wrong.items() for a in answers]
    )
    def test_typical_mistake_rejected_without_revealing(name, answer, capsys):
        assert_rejected_without_revealing(name, answer, independent(name), capsys)

    @pytest.mark.parametrize("name", names)
    def test_non_numeric_answer_rejected(name, capsys):
        assert check(name, "a lot") is False
        assert "not yet" in capsys.readouterr().out

    return {k: v for k, v in locals().items() if k.startswith("test_")}
