"""Self-checks for the book's exercises.

``check("attention-scale", answer)`` says whether `answer` is right and, if not,
gives a hint. It never prints the expected answer. Each part of the book keeps its
checks in a module of this package that calls `register`.

Precision: a number is right when it agrees with the true value to ``sig``
significant figures (3 unless the exercise says otherwise), that is, when it is
within half a unit in the ``sig``-th significant figure of the true value. So for
GELU(1) = 0.841345..., ``0.841``, ``0.8413`` and the full value pass and ``0.84``
or ``0.842`` do not. Each element of a list is judged on its own magnitude, and a
true value of 0 must be answered exactly. Exercises with ``sig=None`` (counts,
shapes) accept only the exact value. The hint says which rule applies.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmbook.checks import check_bool, check_int, tname


@dataclass(frozen=True)
class Exercise:
    """A computable exercise: how to recognise a right answer, and a hint."""

    name: str
    expected: Callable[[], Any]  # computes the answer lazily (may import torch)
    hint: str
    sig: int | None = 3  # significant figures that must agree; None: exact


_REGISTRY: dict[str, Exercise] = {}


def register(
    name: str, expected: Callable[[], Any], hint: str, sig: int | None = 3
) -> None:
    """Add an exercise; `expected()` returns the right answer.

    sig: significant figures a numeric answer must agree to (default 3; give the
    precision the chapter's solution shows, if fewer), or None for exact answers.
    """
    if sig is not None:
        check_int("sig", sig, 1, 15)
    if name in _REGISTRY:
        raise ValueError(f"exercise {name!r} is registered twice")
    _REGISTRY[name] = Exercise(name, expected, hint, sig)


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def names() -> list[str]:
    """All registered exercise names."""
    _load_all()
    return sorted(_REGISTRY)


def _matches(answer: Any, expected: Any, ex: Exercise) -> bool:
    if isinstance(expected, str):
        return isinstance(answer, str) and answer.strip().lower() == expected.lower()
    try:
        a = np.asarray(
            answer.detach().cpu() if hasattr(answer, "detach") else answer, dtype=float
        )
        e = np.asarray(
            expected.detach().cpu() if hasattr(expected, "detach") else expected,
            dtype=float,
        )
    except (TypeError, ValueError):
        return False
    if a.shape != e.shape:
        return False
    if ex.sig is None:
        return bool(np.array_equal(a, e))
    nonzero = e != 0
    magnitude = np.floor(np.log10(np.abs(e), where=nonzero, out=np.zeros_like(e)))
    half_unit = np.where(nonzero, 0.5 * 10.0 ** (magnitude - ex.sig + 1), 0.0)
    # the slack lets an exact half-way answer (0.125 -> 0.12 or 0.13) through
    return bool(np.all(np.abs(a - e) <= half_unit * (1 + 1e-9)))


def _precision(ex: Exercise) -> str:
    if ex.sig is None:
        return "The answer must be exact."
    return f"Answers are accepted to {ex.sig} significant figures."


def check(name: str, answer: Any, quiet: bool = False) -> bool:
    """Print whether `answer` to exercise `name` is right (with a hint if not).

    Returns True or False. Numbers need to be right to the exercise's significant
    figures (see the module docstring); quiet=True prints nothing.
    """
    check_bool("quiet", quiet)
    _load_all()
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {tname(name)}")
    if name not in _REGISTRY:
        raise ValueError(
            f"name={name!r} is not a known exercise; expected one of "
            f"{sorted(_REGISTRY)}"
        )
    ex = _REGISTRY[name]
    ok = _matches(answer, ex.expected(), ex)
    if not quiet and ok:
        print(f"✔ {name}: correct.")
    elif not quiet:
        hint = ex.hint.rstrip()
        hint += "" if hint.endswith(".") else "."
        print(f"✘ {name}: not yet. Hint: {hint} {_precision(ex)}")
    return ok
