"""Self-checks for Part III, Mathematics: neurons, softmax, sequence probability and
gradient descent.

Each ``expected`` function computes its answer from the definitions, with torch
where that is the natural reference: the activations of Hendrycks & Gimpel (2016,
GELU), the softmax with temperature (Hinton et al., 2015), perplexity (Jelinek et
al., 1977) and backpropagation (Rumelhart et al., 1986).
"""

from __future__ import annotations

import math

from lmbook.exercises import register


def _tanh_derivative_at_0() -> float:
    import torch

    x = torch.zeros((), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.tanh(x), x)
    return float(grad)


def _gelu_at_1() -> float:
    import torch
    import torch.nn.functional as F

    return float(F.gelu(torch.tensor(1.0, dtype=torch.float64)))


def _softmax_temperature() -> list[float]:
    import torch

    logits = torch.tensor([2.0, 1.0, 0.1], dtype=torch.float64)
    return torch.softmax(logits / 0.5, dim=0).tolist()


def _perplexity_uniform() -> list[float]:
    import torch
    import torch.nn.functional as F

    V = 65  # characters in Tiny Shakespeare
    logits = torch.zeros(1, V, dtype=torch.float64)  # a uniform model
    ce = float(F.cross_entropy(logits, torch.tensor([0])))  # nats per character
    return [math.exp(ce), ce / math.log(2)]


def _sequence_perplexity() -> list[float]:
    probs = [0.5, 0.25, 0.125]  # P(w_i | w_<i) of the three predicted tokens
    logp = sum(math.log(p) for p in probs)
    ce = -logp / len(probs)
    return [logp, ce, math.exp(ce)]


def _gd_critical_lr() -> float:
    # L(w) = 3 w^2 has curvature a = L''(w) = 6; w <- (1 - lr * a) w converges
    # iff |1 - lr * a| < 1, i.e. lr < 2 / a.
    return 2 / 6


def _backprop_scalar() -> list[float]:
    import torch

    x, y = 0.5, 1.0
    w1, b1, w2, b2 = (
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in (2.0, -0.5, 1.5, 0.1)
    )
    y_hat = w2 * torch.tanh(w1 * x + b1) + b2
    loss = 0.5 * (y_hat - y) ** 2
    return [float(g) for g in torch.autograd.grad(loss, (w1, b1, w2, b2))]


register(
    "tanh-derivative-at-0",
    _tanh_derivative_at_0,
    "differentiate tanh x = sinh x / cosh x; the result can be written as "
    "1 - tanh(x)**2. Then put x = 0.",
)
register(
    "gelu-at-1",
    _gelu_at_1,
    "use the exact form GELU(x) = x * Phi(x), with Phi(x) = (1 + erf(x / sqrt(2))) / 2 "
    "the standard normal CDF (not the tanh approximation).",
)
register(
    "softmax-temperature",
    _softmax_temperature,
    "divide every logit by the temperature T = 0.5 first, then apply softmax; the "
    "answer is a list of three probabilities that sum to 1.",
)
register(
    "perplexity-uniform",
    _perplexity_uniform,
    "a uniform model gives every character the same probability; answer "
    "[perplexity, bits per character], with perplexity = exp(cross-entropy in "
    "nats) and bpc = cross-entropy / ln 2.",
)
register(
    "sequence-perplexity",
    _sequence_perplexity,
    "answer [total log-probability in nats, cross-entropy per token, perplexity]: "
    "sum the natural logs, divide minus that sum by the number of tokens, "
    "then exponentiate.",
)
register(
    "gd-critical-lr",
    _gd_critical_lr,
    "gradient descent on L(w) = a w^2 / 2 multiplies w by (1 - lr * a) each step; "
    "find the curvature a of L(w) = 3 w^2 first.",
)
register(
    "backprop-scalar",
    _backprop_scalar,
    "answer [dL/dw1, dL/db1, dL/dw2, dL/db2]; start from dL/dy_hat = y_hat - y and "
    "remember tanh'(z) = 1 - tanh(z)**2.",
)
