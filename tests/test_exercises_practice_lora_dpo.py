"""Self-checks of Part V, "LoRA and preference optimisation": each expected
answer is recomputed here independently (by the formula, not the package),
right and rounded answers pass, typical mistakes fail, and the feedback never
reveals the answer."""

from __future__ import annotations

import math
import statistics

import lmbook.exercises.practice_lora_dpo as pd
from tests.exercise_helpers import exercise_tests

NAMES = [
    "lora-trainable-params",
    "dpo-loss-value",
    "dpo-optimal-policy",
    "grpo-advantage",
]


def _independent(name: str) -> float:
    """The right answer, by the formula written out."""
    if name == "lora-trainable-params":
        C = pd.LLAMA_7B["n_embd"]
        return pd.LLAMA_7B["n_layer"] * len(pd.LORA_TARGETS) * pd.LORA_R * (C + C)
    if name == "dpo-loss-value":
        lp = pd.DPO_LOGPS
        chosen = pd.DPO_BETA * (lp["policy_chosen"] - lp["ref_chosen"])
        rejected = pd.DPO_BETA * (lp["policy_rejected"] - lp["ref_rejected"])
        return math.log1p(math.exp(-(chosen - rejected)))
    if name == "dpo-optimal-policy":
        pairs = zip(pd.OPT_REF, pd.OPT_REWARD, strict=True)
        w = [p * math.exp(r / pd.OPT_BETA) for p, r in pairs]
        return w[2] / sum(w)
    if name == "grpo-advantage":
        r = pd.GRPO_REWARDS
        return (r[0] - statistics.mean(r)) / (statistics.stdev(r) + pd.GRPO_EPS)
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "lora-trainable-params": [4_194_304],
    "dpo-loss-value": [0.493, 0.4932],
    "dpo-optimal-policy": [0.801, 0.8008],
    "grpo-advantage": [1.62, 1.620],
}

# Typical mistakes.
WRONG = {
    "lora-trainable-params": [
        32 * 8 * (4096 + 4096),  # one matrix per layer, not two
        2 * 8 * (4096 + 4096),  # one layer
        32 * 2 * 4096 * 4096,  # the full matrices
    ],
    "dpo-loss-value": [
        math.log1p(math.exp(-4.5)),  # forgot beta
        math.log1p(math.exp(0.45)),  # rejected minus chosen
        math.log1p(math.exp(-0.55)),  # policy log-ratio without the reference
    ],
    "dpo-optimal-policy": [
        0.2 * math.exp(1.0) / (0.5 + 0.3 * math.exp(0.5) + 0.2 * math.exp(1.0)),
        math.exp(4) / (1 + math.exp(2) + math.exp(4)),  # forgot pi_ref
        0.2,  # pi_ref itself
    ],
    "grpo-advantage": [
        0.75 / math.sqrt(1.5 / 8),  # population standard deviation
        0.75,  # not divided by the standard deviation
        1 / math.sqrt(1.5 / 7),  # forgot to subtract the mean
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
