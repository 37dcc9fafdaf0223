"""Devices and seeds: the two things every chapter sets up first; and memory.

`get_device` follows the order used by most PyTorch tutorials (CUDA, then Apple's
MPS, then the CPU); `set_seed` follows minGPT's helper of the same name.
`release_memory` lets a long notebook stay within a small machine's memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import random

import numpy as np
import torch

_KNOWN = ("cuda", "mps", "cpu")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return kind == "cpu"


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available `torch.device`.

    The order is cuda, then mps, then cpu. `prefer` (for example ``"cpu"`` or
    ``"cuda:1"``) or the environment variable ``LMBOOK_DEVICE`` overrides it;
    `prefer` wins over the variable. Asking for a device that is unknown or not
    available raises ``ValueError`` (or ``RuntimeError`` when it is unavailable).
    """
    source = "prefer"
    if prefer is None:
        prefer = os.environ.get("LMBOOK_DEVICE") or None
        source = "LMBOOK_DEVICE"
    if prefer is None:
        for kind in _KNOWN:
            if _available(kind):
                return torch.device(kind)
    if not isinstance(prefer, str | torch.device):
        raise TypeError(
            f"{source} must be a str such as 'cpu' or 'cuda', "
            f"got {type(prefer).__name__}"
        )
    try:
        device = torch.device(prefer)
    except RuntimeError as err:
        raise ValueError(
            f"{source}={prefer!r} is not a device torch knows; expected one of "
            f"{', '.join(_KNOWN)} (optionally with an index, e.g. 'cuda:0')"
        ) from err
    if device.type not in _KNOWN:
        raise ValueError(
            f"{source}={prefer!r} is not supported; expected one of {', '.join(_KNOWN)}"
        )
    if not _available(device.type):
        raise RuntimeError(
            f"{source}={prefer!r} was requested but {device.type} is not available "
            f"on this machine; unset LMBOOK_DEVICE or choose 'cpu'"
        )
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"{source}={prefer!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def set_seed(seed: int) -> None:
    """Seed `random`, NumPy and PyTorch (all CUDA devices included)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def release_memory() -> int:
    """Free what Python no longer uses and hand it back to the system.

    Runs the garbage collector (model graphs hold reference cycles), then,
    with glibc, malloc_trim(0): freed heap memory otherwise stays with the
    process, and a notebook that builds and drops several models in turn
    grows its resident memory past what it uses at any one time. Returns
    the number of objects the collector freed. Elsewhere only the collector
    runs.
    """
    freed = gc.collect()
    name = ctypes.util.find_library("c")
    if name and "libc.so" in name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # another C library
            pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return freed
