"""Self-checks for the book's exercises.

``check("attention-scale", answer)`` says whether `answer` is right and, if not,
gives a hint. It never prints the expected answer. Each part of the book keeps its
checks in a module of this package that calls `register`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Exercise:
    """A computable exercise: how to recognise a right answer, and a hint."""

    name: str
    expected: Callable[[], Any]  # computes the answer lazily (may import torch)
    hint: str
    rtol: float = 1e-4
    atol: float = 1e-6


_REGISTRY: dict[str, Exercise] = {}


def register(name: str, expected: Callable[[], Any], hint: str, **tol: float) -> None:
    """Add an exercise; `expected()` returns the right answer."""
    if name in _REGISTRY:
        raise ValueError(f"exercise {name!r} is registered twice")
    _REGISTRY[name] = Exercise(name, expected, hint, **tol)


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
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=ex.rtol, atol=ex.atol))


def check(name: str, answer: Any, quiet: bool = False) -> bool:
    """Print whether `answer` to exercise `name` is right (with a hint if not)."""
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(
            f"name={name!r} is not a known exercise; expected one of "
            f"{sorted(_REGISTRY)}"
        )
    ex = _REGISTRY[name]
    ok = _matches(answer, ex.expected(), ex)
    if not quiet:
        print(f"✔ {name}: correct." if ok else f"✘ {name}: not yet. Hint: {ex.hint}")
    return ok
