"""Argument checks at the package's public boundary, in one place.

Every public function checks what a user passes with these helpers, so a bad
value always gives the same kind of message: the argument's name, what was
expected and what was given. Internal invariants use ``assert`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real

__all__ = ["tname", "check_int", "check_float", "check_bool", "check_choice"]


def tname(value: object) -> str:
    """The type name of value, for error messages."""
    return type(value).__name__


def check_int(
    name: str, value: object, low: int | None = None, high: int | None = None
) -> int:
    """Raise unless value is an int (not a bool) with low <= value <= high."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {tname(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range(low, high, False)}, got {value}")
    return value


def check_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Raise unless value is a finite real number in the given range.

    Ranges are closed unless ``low_open`` / ``high_open``: for example dropout is
    ``check_float("dropout", p, 0.0, 1.0, high_open=True)``, i.e. [0, 1).
    Infinity and NaN are always rejected.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a float, got {tname(value)}")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        want = "a finite number" if low is None and high is None else ""
        want = want or _range(low, high, True, low_open, high_open)
        raise ValueError(f"{name} must be {want}, got {value}")
    return v


def check_bool(name: str, value: object) -> bool:
    """Raise unless value is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {tname(value)}")
    return value


def check_choice(name: str, value: object, choices: Iterable) -> object:
    """Raise unless value is one of choices (compared with ==, types checked)."""
    choices = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in choices):
        listed = ", ".join(map(repr, choices))
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def _range(low, high, real, low_open=False, high_open=False) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"in {left}{low}, {high}{right}"
