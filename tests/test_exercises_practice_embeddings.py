"""Self-checks of Part V, "Sentence embeddings": each expected answer is
recomputed here independently (by the formula, not the package), right and
rounded answers pass, typical mistakes fail, and the feedback never reveals
the answer."""

from __future__ import annotations

import math

import lmbook.exercises.practice_embeddings as pe
from tests.exercise_helpers import exercise_tests

NAMES = [
    "embeddings-cosine",
    "embeddings-padding",
    "embeddings-info-nce",
    "embeddings-mrr",
]


def _cos(u, v) -> float:
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def _mean(rows) -> list[float]:
    return [sum(col) / len(rows) for col in zip(*rows, strict=True)]


def _independent(name: str) -> float:
    """The right answer, by the formula written out."""
    if name == "embeddings-cosine":
        return _cos(pe.COS_U, pe.COS_V)
    if name == "embeddings-padding":
        real = [h for h, m in zip(pe.PAD_HIDDEN, pe.PAD_MASK, strict=True) if m]
        return _cos(_mean(real), _mean(pe.PAD_HIDDEN))
    if name == "embeddings-info-nce":
        losses = []
        for i, q in enumerate(pe.NCE_QUERIES):
            logits = [pe.NCE_SCALE * _cos(q, d) for d in pe.NCE_DOCS]
            log_z = math.log(sum(math.exp(x) for x in logits))
            losses.append(log_z - logits[i])
        return sum(losses) / len(losses)
    if name == "embeddings-mrr":
        return sum(1 / r for r in pe.MRR_RANKS) / len(pe.MRR_RANKS)
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "embeddings-cosine": [0.596, 0.5963],
    "embeddings-padding": [0.894, 0.8944],
    "embeddings-info-nce": [0.0181, 0.01815],
    "embeddings-mrr": [0.587, 0.5867],
}

# Typical mistakes.
WRONG = {
    "embeddings-cosine": [
        4.0,  # the dot product, not divided by the lengths
        4 / 5,  # divided by |v|^2
        4 / 45,  # divided by the squared lengths |u|^2 |v|^2
    ],
    "embeddings-padding": [
        1.0,  # compared the masked mean with itself
        _cos((2.0, 2.0), (1.5, 3.0)),  # naive mean over four positions
        _cos((2.0, 2.0), (0.0, 6.0)),  # the masked mean vs a [PAD] state
    ],
    "embeddings-info-nce": [
        math.log1p(math.exp(-0.2)),  # scale 1
        math.log1p(math.exp(4.0)),  # the wrong document as the target
        math.log1p(math.exp(-4.0)) * 2,  # summed over queries, not averaged
    ],
    "embeddings-mrr": [
        2 / 5,  # recall@1
        5 / sum(pe.MRR_RANKS),  # 1 / mean rank
        sum(pe.MRR_RANKS) / 5,  # the mean rank
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
