"""Self-checks for Part II, Core concepts: pretraining, architectures, autoencoders.

Each ``expected`` function computes its answer from the definitions, with torch or
lmbook where that is the natural reference: BERT's masking rule (Devlin et al.,
2019), next-token prediction (Radford et al., 2018), masks and path lengths of
self-attention (Vaswani et al., 2017) and the KL term and reparameterisation trick
of the variational autoencoder (Kingma & Welling, 2014).
"""

from __future__ import annotations

from lmbook.exercises import register

MLM_SELECT, MLM_MASK = 0.15, 0.8  # BERT: select 15% of tokens; 80% become [MASK]


def _mask_count() -> float:
    # 64 sequences of 128 tokens, 2 of them special ([CLS], [SEP]) per sequence
    maskable = 64 * (128 - 2)
    return maskable * MLM_SELECT * MLM_MASK


def _signal_ratio() -> float:
    T = 130  # tokens including [CLS] and [SEP]
    autoregressive = T - 1  # every input position predicts the next token
    masked = MLM_SELECT * (T - 2)  # expected selected non-special positions
    return autoregressive / masked


def _mlm_loss() -> float:
    import torch
    import torch.nn.functional as F

    # vocabulary of 4; the true tokens are 0, 1, 2 at the selected positions and 3
    # at a position whose label is -100 (not selected)
    probs = torch.tensor(
        [
            [0.5, 0.25, 0.125, 0.125],
            [0.25, 0.25, 0.25, 0.25],
            [0.25, 0.5, 0.125, 0.125],
            [0.025, 0.025, 0.05, 0.9],
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 1, 2, -100])
    return float(F.cross_entropy(probs.log(), labels, ignore_index=-100))


def _causal_entries() -> int:
    from lmbook.attention import causal_mask

    return int(causal_mask(10).sum())


def _cross_shape() -> list[int]:
    import torch

    from lmbook.attention import scaled_dot_product_attention

    B, nh, hs = 2, 8, 4
    q = torch.zeros(B, nh, 7, hs)  # queries: 7 target (decoder) positions
    kv = torch.zeros(B, nh, 12, hs)  # keys and values: 12 source positions
    _, weights = scaled_dot_product_attention(q, kv, kv)
    return list(weights.shape)


def _path_length() -> list[int]:
    # an Elman RNN reaches h_50 from x_3 through h_4, ..., h_50; attention in one step
    return [50 - 3, 1]


def _vae_kl() -> float:
    import torch
    from torch.distributions import Normal, kl_divergence

    q = Normal(torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0]))
    return float(kl_divergence(q, Normal(0.0, 1.0)).sum())


def _reparam_grad() -> list[float]:
    import math

    import torch

    mu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor(math.log(4.0), dtype=torch.float64, requires_grad=True)
    z = mu + torch.exp(0.5 * logvar) * -0.5  # epsilon = -0.5
    d_mu, d_logvar = torch.autograd.grad(z, (mu, logvar))
    return [float(z.detach()), float(d_mu), float(d_logvar)]


register(
    "pretraining-mask-count",
    _mask_count,
    "only non-special tokens can be selected; multiply their number by the "
    "probability of being selected and then of being shown as [MASK]",
)
register(
    "pretraining-signal-ratio",
    _signal_ratio,
    "every input position of an autoregressive model has a target; the masked LM "
    "has one only at the expected 15% of the non-special tokens",
)
register(
    "pretraining-mlm-loss",
    _mlm_loss,
    "average -ln p over the selected positions only; a label of -100 adds nothing",
)
register(
    "architectures-causal-entries",
    _causal_entries,
    "position t (counting from 1) may attend to t positions; add them up",
    sig=None,  # a count
)
register(
    "architectures-cross-shape",
    _cross_shape,
    "queries come from the decoder, keys from the encoder: (B, heads, T_q, T_k)",
    sig=None,  # a shape
)
register(
    "architectures-path-length",
    _path_length,
    "count the hidden states between the two positions for the RNN; attention "
    "links any two positions directly",
    sig=None,  # counts of steps
)
register(
    "confused-vae-kl",
    _vae_kl,
    "sum 0.5 * (mu^2 + sigma^2 - 1 - ln sigma^2) over the dimensions; sigma is a "
    "standard deviation, so square it",
)
register(
    "confused-reparam-grad",
    _reparam_grad,
    "sigma = exp(logvar / 2); z = mu + sigma * eps, and dz/dlogvar = sigma * eps / 2",
)
