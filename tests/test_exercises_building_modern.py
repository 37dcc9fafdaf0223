"""Self-checks of the modern-LLM chapter: rounded answers pass, typical slips fail."""

import math

import pytest
import torch

from lmbook.gpt import MLP, GPTConfig
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing


def _independent(name):
    """The right answer, computed another way than the module's."""
    if name == "modern-kv-bytes":
        config = GPTConfig(32000, 16, 32, 32, 4096, n_kv_head=8)  # Llama 3 8B
        return 2 * config.n_layer * config.n_kv_head * config.head_size * 2
    if name == "modern-swiglu-params":
        with torch.device("meta"):
            mlp = MLP(
                GPTConfig(
                    8, 8, 1, 32, 4096, n_inner=11008, bias=False, activation="swiglu"
                )
            )
        return sum(p.numel() for p in mlp.parameters())
    return 2 * math.pi / 10000 ** (-2 * 15 / 32)


ROUNDED = {
    "modern-kv-bytes": 131072,
    "modern-swiglu-params": 135266304,
    "modern-rope-wavelength": 35300,  # 2 pi 10000^(15/16) = 35,333: 3 figures
}
WRONG = {
    "modern-kv-bytes": 524288,  # used the 32 query heads instead of 8 kv heads
    "modern-swiglu-params": 90177536,  # counted two matrices, as for GELU
    "modern-rope-wavelength": 5623,  # forgot the factor 2 pi
}


@pytest.mark.parametrize("name", sorted(ROUNDED))
def test_rounded_answers_pass(name, capsys):
    assert ROUNDED[name] == pytest.approx(_independent(name), rel=5e-3)
    assert_accepted(name, ROUNDED[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_typical_mistakes_fail_without_revealing(name, capsys):
    assert_rejected_without_revealing(name, WRONG[name], _independent(name), capsys)
