"""Self-checks for Part V, "Sentence embeddings": cosine similarity, mean pooling
with the attention mask, the InfoNCE loss with in-batch negatives, and the mean
reciprocal rank.

The answers are computed with the package (`lmbook.embeddings`): `cos_sim`,
`mean_pool` as in Sentence-BERT (Reimers & Gurevych, 2019), `info_nce_loss`
(van den Oord et al., 2018), which equals sentence-transformers'
``MultipleNegativesRankingLoss``, and `mrr`.
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
COS_U, COS_V = (1.0, 2.0, 2.0), (2.0, 0.0, 1.0)
PAD_HIDDEN = ((1.0, 0.0), (3.0, 2.0), (2.0, 4.0), (0.0, 6.0), (0.0, 6.0))
PAD_MASK = (1, 1, 1, 0, 0)  # three tokens, then two [PAD] positions
NCE_QUERIES = ((1.0, 0.0), (0.0, 1.0))
NCE_DOCS = ((0.8, 0.6), (0.6, 0.8))  # document i answers query i
NCE_SCALE = 20.0
MRR_RANKS = (1, 3, 1, 2, 10)  # rank of each query's right document
MRR_DOCS = 10  # documents ranked per query


def _cosine() -> float:
    import torch

    from lmbook.embeddings import cos_sim

    u = torch.tensor([COS_U], dtype=torch.float64)
    v = torch.tensor([COS_V], dtype=torch.float64)
    return float(cos_sim(u, v))


def _padding() -> float:
    import torch

    from lmbook.embeddings import cos_sim, mean_pool

    hidden = torch.tensor([PAD_HIDDEN], dtype=torch.float64)  # (1, 5, 2)
    masked = mean_pool(hidden, torch.tensor([PAD_MASK]))  # (1, 2)
    return float(cos_sim(masked, hidden.mean(1)))


def _info_nce() -> float:
    import torch

    from lmbook.embeddings import info_nce_loss

    q = torch.tensor(NCE_QUERIES, dtype=torch.float64)
    d = torch.tensor(NCE_DOCS, dtype=torch.float64)
    return float(info_nce_loss(q, d, scale=NCE_SCALE))


def _mrr() -> float:
    import torch

    from lmbook.embeddings import mrr

    # a score matrix in which query i's right document (column i) has its rank
    scores = torch.zeros(len(MRR_RANKS), MRR_DOCS, dtype=torch.float64)
    levels = torch.linspace(1.0, 0.0, MRR_DOCS, dtype=torch.float64)
    for i, rank in enumerate(MRR_RANKS):
        others = [j for j in range(MRR_DOCS) if j != i]
        order = others[: rank - 1] + [i] + others[rank - 1 :]
        scores[i, order] = levels
    return mrr(scores)


register(
    "embeddings-cosine",
    _cosine,
    "divide the dot product u . v by the product of the two lengths |u| |v|",
)
register(
    "embeddings-padding",
    _padding,
    "the masked mean averages the three real tokens only, the naive mean all five "
    "positions; then take the cosine of the two mean vectors",
)
register(
    "embeddings-info-nce",
    _info_nce,
    "multiply the cosines by the scale, then take the cross-entropy of each row "
    "with the right document as the target (-log softmax), averaged over queries",
)
register(
    "embeddings-mrr",
    _mrr,
    "average 1 / rank over the five queries",
)
