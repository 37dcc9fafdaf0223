"""Self-checks for Part V, chapter "Fine-tuning a causal LM with Trainer": the
tokens one run sees, the labels a causal-LM loss averages over, and what a drop
in loss does to perplexity.

The expected answers are computed, not typed in: tokens from the run's settings,
predicted labels by building the shifted labels with -100 padding as
`DataCollatorForLanguageModeling(mlm=False)` and the model's loss do, and the
perplexity factor as exp of the drop.
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
RUN_STEPS, RUN_MICRO, RUN_ACCUM, RUN_BLOCK = 40, 8, 2, 128
LABELS_SHAPE = (4, 128)
LOSS_DROP = 0.7


def _tokens_seen() -> int:
    return RUN_STEPS * RUN_MICRO * RUN_ACCUM * RUN_BLOCK


def _predicted_tokens() -> int:
    import torch

    labels = torch.zeros(LABELS_SHAPE, dtype=torch.long)
    shifted = labels[:, 1:]  # position t predicts label t + 1
    return int((shifted != -100).sum())


def _perplexity_factor() -> float:
    return math.exp(LOSS_DROP)


register(
    "trainer-tokens-seen",
    _tokens_seen,
    "each optimizer step adds up the gradients of several micro-batches of "
    "examples, and each example is a block of tokens.",
    sig=None,
)
register(
    "causal-lm-predicted-tokens",
    _predicted_tokens,
    "the model shifts the labels by one inside its loss: the first token of a "
    "row has nothing before it to be predicted from.",
    sig=None,
)
register(
    "perplexity-factor",
    _perplexity_factor,
    "perplexity is exp(loss); a difference of losses is a ratio of perplexities.",
)
