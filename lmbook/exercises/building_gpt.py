"""Self-checks for Part IV, "GPT from scratch": parameter counts and 6ND.

Shapes are GPT-2's (Radford et al., 2019); the 6ND rule is Kaplan et al. (2020).
"""

from __future__ import annotations

from lmbook.exercises import register

MEDIUM = dict(L=24, C=1024, V=50257, T=1024)
SMALL = dict(L=12, C=768, V=50257, T=1024)
TOKENS = 10**10


def _params(L, C, V, T):
    return L * (12 * C**2 + 13 * C) + V * C + T * C + 2 * C


def _train_flops():
    s = SMALL
    non_embedding = _params(**s) - s["V"] * s["C"] - s["T"] * s["C"]
    return 6 * non_embedding * TOKENS


register(
    "gpt-medium-params",
    lambda: _params(**MEDIUM),
    "Per block 12 C^2 weights plus 13 C biases and norm parameters; then the "
    "token and position embeddings and the final LayerNorm. The output layer "
    "is tied, so it adds nothing.",
    sig=None,
)
register(
    "gpt-train-flops",
    _train_flops,
    "6 FLOPs per parameter per token, with N the parameters outside the "
    "embeddings (about 85 million for GPT-2 small).",
)
register(
    "gpt-untied-extra",
    lambda: SMALL["V"] * SMALL["C"],
    "An untied output layer is one extra matrix of vocabulary size by width.",
    sig=None,
)
