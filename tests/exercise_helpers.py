"""Shared assertion for the self-check tests: feedback never gives the answer away."""

from __future__ import annotations

import numpy as np


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
