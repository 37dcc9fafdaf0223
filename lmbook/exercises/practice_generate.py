"""Self-checks for Part V, chapter "Pipelines, Auto classes and generate": the
shape of `generate`'s output, the position a left-padded prompt continues at,
and the distribution after temperature and top-k.

The expected answers are computed, not typed in: the shape from the rule that
each prompt returns num_return_sequences rows of prompt plus new tokens, the
position from the attention mask as `generate` derives it, and the probability
with `lmbook.decoding.logits_processors`.
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
SHAPE_PROMPTS, SHAPE_PADDED, SHAPE_NEW, SHAPE_RETURN = 3, 9, 12, 2
PAD_LENGTHS = (3, 7)  # two prompts, left-padded into one batch
PROC_LOGITS = (2.0, 1.0, 0.5, -1.0)
PROC_TEMPERATURE, PROC_TOP_K = 0.5, 2


def _output_shape() -> tuple[int, int]:
    return (SHAPE_PROMPTS * SHAPE_RETURN, SHAPE_PADDED + SHAPE_NEW)


def _left_pad_new_position() -> int:
    import torch

    width = max(PAD_LENGTHS)
    short = min(PAD_LENGTHS)
    mask = torch.zeros(width, dtype=torch.long)
    mask[width - short :] = 1  # left padding: the pads come first
    positions = mask.cumsum(0) - 1  # each real token: real tokens before it
    return int(positions[-1]) + 1


def _temperature_top_k_prob() -> float:
    import torch

    from lmbook.decoding import logits_processors

    scores = torch.tensor([PROC_LOGITS], dtype=torch.float64)
    for p in logits_processors(temperature=PROC_TEMPERATURE, top_k=PROC_TOP_K):
        scores = p(None, scores)
    return float(scores.softmax(-1)[0, 0])


register(
    "generate-output-shape",
    _output_shape,
    "every prompt returns num_return_sequences rows, and each row holds the "
    "padded prompt followed by the new tokens. Give (rows, columns).",
    sig=None,
)
register(
    "left-pad-new-position",
    _left_pad_new_position,
    "positions count only the real tokens of a row, starting at 0; the pads "
    "before them take no position in the text.",
    sig=None,
)
register(
    "temperature-top-k-prob",
    _temperature_top_k_prob,
    "divide the logits by the temperature first, then keep the k largest and "
    "take the softmax over those alone.",
)
