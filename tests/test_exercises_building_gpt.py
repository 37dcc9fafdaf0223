"""Self-checks of the GPT-from-scratch chapter, against models built on meta."""

import pytest
import torch

from lmbook.gpt import GPT, GPTConfig
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing


def _meta(name):
    with torch.device("meta"):
        return GPT(GPTConfig.from_preset(name))


def _independent(name):
    if name == "gpt-medium-params":
        return _meta("gpt2-medium").num_parameters()
    if name == "gpt-train-flops":
        return 6 * _meta("gpt2").num_parameters(exclude_embeddings=True) * 10**10
    return _meta("gpt2").lm_head.weight.numel()


ROUNDED = {
    "gpt-medium-params": 354823168,
    "gpt-train-flops": 5.10e18,
    "gpt-untied-extra": 38597376,
}
WRONG = {
    "gpt-medium-params": 406286336,  # counted the tied output layer twice
    "gpt-train-flops": 7.47e18,  # used all 124M parameters, embeddings included
    "gpt-untied-extra": 39383808,  # added the 1024 x 768 position table too
}


@pytest.mark.parametrize("name", sorted(ROUNDED))
def test_rounded_answers_pass(name, capsys):
    assert ROUNDED[name] == pytest.approx(_independent(name), rel=5e-3)
    assert_accepted(name, ROUNDED[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_typical_mistakes_fail_without_revealing(name, capsys):
    assert_rejected_without_revealing(name, WRONG[name], _independent(name), capsys)
