"""Self-checks for Part II, Core concepts: language models, tokens and embeddings.

The expected answers are computed, not typed in: compute-optimal training follows
Hoffmann et al., "Training Compute-Optimal Large Language Models" (2022), with the
training-compute estimate C = 6ND and the parameter power law L(N) = (N_c/N)^alpha_N
of Kaplan et al., "Scaling Laws for Neural Language Models" (2020). The embedding
checks follow ``torch.nn.Embedding`` and the shape of all-MiniLM-L6-v2 (Reimers &
Gurevych, 2019; Wang et al., 2020).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapters' exercise statements.
CHINCHILLA_BUDGET = 1e24  # FLOPs
CHINCHILLA_TOKENS_PER_PARAM = 20
KAPLAN_ALPHA_N = 0.076
KAPLAN_LOSS_RATIO = 0.9  # "lower the loss by 10%"
EMBEDDING_VOCAB, EMBEDDING_DIM = 65, 32
EMBEDDING_IDS_SHAPE = (4, 16)
MINILM_VOCAB, MINILM_DIM = 30522, 384  # all-MiniLM-L6-v2's config.json


def _chinchilla_tokens() -> float:
    # C = 6 N D with D = r N  =>  N = sqrt(C / (6 r)), D = r N
    r = CHINCHILLA_TOKENS_PER_PARAM
    return r * math.sqrt(CHINCHILLA_BUDGET / (6 * r))


def _kaplan_factor() -> float:
    # (N_c / kN)^a = ratio * (N_c / N)^a  =>  k = ratio^(-1/a)
    return KAPLAN_LOSS_RATIO ** (-1.0 / KAPLAN_ALPHA_N)


def _embedding_lookup_shape() -> tuple[int, ...]:
    import torch
    import torch.nn as nn

    emb = nn.Embedding(EMBEDDING_VOCAB, EMBEDDING_DIM, device="meta")
    ids = torch.zeros(EMBEDDING_IDS_SHAPE, dtype=torch.long, device="meta")
    return tuple(emb(ids).shape)


def _minilm_embedding_params() -> int:
    return MINILM_VOCAB * MINILM_DIM


register(
    "chinchilla-tokens",
    _chinchilla_tokens,
    "substitute D = 20 N into C = 6 N D, solve for N, then multiply by 20; the "
    "answer is a number of tokens, not of parameters.",
)
register(
    "kaplan-factor",
    _kaplan_factor,
    "multiplying N by k multiplies L(N) by k^(-alpha_N); set that equal to 0.9 and "
    "solve for k (take logarithms).",
    sig=2,  # the solution gives 4.0
)
register(
    "embedding-lookup-shape",
    _embedding_lookup_shape,
    "the lookup replaces every id by one row of the (vocab_size, embedding_dim) "
    "matrix; give the whole shape as a tuple, e.g. (B, T, ...).",
    sig=None,
)
register(
    "minilm-embedding-params",
    _minilm_embedding_params,
    "the matrix has one row per token of the vocabulary (hf_tok.vocab_size) and one "
    "column per embedding dimension (model.config.hidden_size).",
    sig=None,  # a count
)
