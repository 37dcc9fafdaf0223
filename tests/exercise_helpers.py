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
