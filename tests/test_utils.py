"""get_device and set_seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmbook import get_device, set_seed


def test_get_device_picks_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("LMBOOK_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")


def test_get_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv("LMBOOK_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("mps")


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("LMBOOK_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cpu")


def test_prefer_wins_over_environment(monkeypatch):
    monkeypatch.setenv("LMBOOK_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_from_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LMBOOK_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match=r"LMBOOK_DEVICE='cuda'.*not available"):
        get_device()


def test_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LMBOOK_DEVICE", raising=False)
    with pytest.raises(ValueError, match=r"prefer='tpu'.*expected one of cuda, mps"):
        get_device("tpu")


def test_supported_by_torch_but_not_by_lmbook(monkeypatch):
    with pytest.raises(ValueError, match=r"prefer='meta' is not supported"):
        get_device("meta")


def test_device_of_wrong_type():
    with pytest.raises(TypeError, match=r"prefer must be a str.*got int"):
        get_device(0)


def test_set_seed_makes_all_generators_repeat():
    set_seed(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_seed(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    torch.testing.assert_close(first[2], second[2], rtol=0, atol=0)
    set_seed(124)
    assert random.random() != first[0]


@pytest.mark.parametrize(
    "seed, error",
    [(1.5, TypeError), (True, TypeError), (-1, ValueError), (2**32, ValueError)],
)
def test_set_seed_rejects_bad_seeds(seed, error):
    with pytest.raises(error, match="seed must be"):
        set_seed(seed)


def test_release_memory_collects_cycles():
    import gc
    import weakref

    from lmbook.utils import release_memory

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    alive = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert alive() is not None
        assert release_memory() >= 2
        assert alive() is None
    finally:
        gc.enable()
