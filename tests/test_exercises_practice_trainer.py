"""Self-checks of Part V, "Fine-tuning a causal LM with Trainer": each expected
answer is recomputed here independently (with transformers' collator and a
model's own loss), right answers pass, typical wrong answers fail, and the
feedback never reveals the answer."""

from __future__ import annotations

import functools
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import lmbook.exercises.practice_trainer as pt
from tests.exercise_helpers import exercise_tests

NAMES = ["trainer-tokens-seen", "causal-lm-predicted-tokens", "perplexity-factor"]


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "trainer-tokens-seen":
        return sum(
            pt.RUN_BLOCK for _ in range(pt.RUN_STEPS * pt.RUN_ACCUM * pt.RUN_MICRO)
        )
    if name == "causal-lm-predicted-tokens":
        # a model's mean loss times the count equals the summed loss: find the
        # count that makes them agree
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=32,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
        model = LlamaForCausalLM(config).eval()
        ids = torch.randint(0, 32, pt.LABELS_SHAPE)
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
            logp = out.logits.log_softmax(-1)
        per_token = -logp[:, :-1].gather(-1, ids[:, 1:, None])
        count = per_token.numel()
        torch.testing.assert_close(out.loss, per_token.sum() / count)
        return count
    if name == "perplexity-factor":
        a = 3.2  # any loss before
        return math.exp(a) / math.exp(a - pt.LOSS_DROP)
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "trainer-tokens-seen": [81920],
    "causal-lm-predicted-tokens": [508],
    "perplexity-factor": [2.01, 2.014],
}

# Typical mistakes.
WRONG = {
    "trainer-tokens-seen": [40 * 8 * 128, 40 * 16, 4 * 40 * 8 * 128],
    "causal-lm-predicted-tokens": [512, 4 * 126, 127],
    "perplexity-factor": [0.7, math.exp(-0.7), 1.7],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
