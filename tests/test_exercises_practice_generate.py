"""Self-checks of Part V, "Pipelines, Auto classes and generate": each expected
answer is recomputed here independently (with transformers' own generate and
logits warpers), right answers pass, typical wrong answers fail, and the
feedback never reveals the answer."""

from __future__ import annotations

import functools
import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper

import lmbook.exercises.practice_generate as pg
from tests.exercise_helpers import exercise_tests

NAMES = ["generate-output-shape", "left-pad-new-position", "temperature-top-k-prob"]


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "generate-output-shape":
        ids = torch.randint(1, 64, (pg.SHAPE_PROMPTS, pg.SHAPE_PADDED))
        mask = torch.ones_like(ids)
        mask[0, :4] = 0  # one row left-padded
        out = _tiny_llama().generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=pg.SHAPE_NEW,
            min_new_tokens=pg.SHAPE_NEW,
            num_beams=4,
            do_sample=False,
            num_return_sequences=pg.SHAPE_RETURN,
            pad_token_id=0,
        )
        return tuple(out.shape)
    if name == "left-pad-new-position":
        # the position generate gives the next token: one past the last real
        # token's, and the last real token sits at (real tokens - 1)
        short = min(pg.PAD_LENGTHS)
        return len(range(short))
    if name == "temperature-top-k-prob":
        scores = torch.tensor([pg.PROC_LOGITS], dtype=torch.float64)
        scores = TemperatureLogitsWarper(pg.PROC_TEMPERATURE)(None, scores)
        scores = TopKLogitsWarper(pg.PROC_TOP_K)(None, scores)
        return scores.softmax(-1)[0, 0].item()
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "generate-output-shape": [(6, 21), [6, 21]],
    "left-pad-new-position": [3],
    "temperature-top-k-prob": [0.881, 1 / (1 + math.exp(-2))],
}

# Typical mistakes.
WRONG = {
    "generate-output-shape": [
        (3, 21),  # forgot num_return_sequences
        (24, 21),  # multiplied by num_beams too
        (6, 12),  # only the new tokens
    ],
    "left-pad-new-position": [
        7,  # the column index: counted the pads as text
        2,  # the last prompt token's position, not the next one
        4,  # the number of pads
    ],
    "temperature-top-k-prob": [
        1 / (1 + math.exp(-1)),  # no temperature
        math.exp(4) / (math.exp(4) + math.exp(2) + math.e + math.exp(-2)),  # no top-k
        1 / (1 + math.exp(-0.5)),  # multiplied by the temperature
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
