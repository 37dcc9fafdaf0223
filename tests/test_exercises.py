"""The self-check machinery of lmbook.exercises."""

from __future__ import annotations

import numpy as np
import pytest

from lmbook import exercises


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(
        exercises._REGISTRY,
        "toy-scale",
        exercises.Exercise("toy-scale", lambda: 0.125, "think of 1/sqrt(d_k)"),
    )


def test_right_answer(toy, capsys):
    assert exercises.check("toy-scale", 0.125)
    assert "correct" in capsys.readouterr().out


def test_wrong_answer_gives_hint_not_answer(toy, capsys):
    assert not exercises.check("toy-scale", 0.25)
    out = capsys.readouterr().out
    assert "Hint: think of 1/sqrt(d_k)" in out and "0.125" not in out


def test_wrong_type_is_just_wrong(toy):
    assert not exercises.check("toy-scale", "an eighth", quiet=True)
    assert not exercises.check("toy-scale", [0.125, 0.125], quiet=True)


def test_unknown_exercise():
    with pytest.raises(ValueError, match="name='nope' is not a known exercise"):
        exercises.check("nope", 1)


def test_every_registered_exercise_accepts_its_answer_and_rejects_another():
    for name in exercises.names():
        ex = exercises._REGISTRY[name]
        expected = ex.expected()
        assert exercises.check(name, expected, quiet=True), name
        if not isinstance(expected, str):
            wrong = np.asarray(expected, dtype=float) * 2 + 1
            assert not exercises.check(name, wrong, quiet=True), name


def test_assert_hides_catches_a_revealed_answer():
    from tests.exercise_helpers import assert_hides

    assert_hides("✘ not yet. Hint: think of 1/sqrt(d_k)", 0.125)
    for leak in ("the answer is 0.125", "about 0.12", "1.25e-01"):
        with pytest.raises(AssertionError, match="reveals"):
            assert_hides(leak, 0.125)
