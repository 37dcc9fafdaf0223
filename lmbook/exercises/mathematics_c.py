"""Self-checks for Part III, Mathematics: the Transformer layer and training.

The expected answers are computed, not typed in: layer normalisation follows Ba,
Kiros & Hinton (2016), residual connections He et al. (2016), the gradients of
attention Vaswani et al. (2017); cross-entropy and KL divergence Cover & Thomas
(2006), Adam Kingma & Ba (2015), the warmup-plus-cosine schedule `lmbook.train.lr_at`
(Goyal et al., 2017; Loshchilov & Hutter, 2017), clipping by the global norm
Pascanu, Mikolov & Bengio (2013) as ``torch.nn.utils.clip_grad_norm_`` does it,
Xavier initialisation Glorot & Bengio (2010) and He initialisation He et al. (2015).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapters' exercise statements.
LN_X = (1.0, 2.0, 3.0, 6.0)  # normalise with gamma = 1, beta = 0, eps = 0
RESID_JACOBIAN, RESID_LAYERS = 0.1, 24  # J_f = 0.1 I in each of 24 layers
ATTN_Q, ATTN_K, ATTN_V = 1.0, (0.0, 1.0), (1.0, 3.0)  # d = 1, loss = y
KL_P, KL_Q = (0.5, 0.5), (0.9, 0.1)
ADAM_LR, ADAM_BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-8
ADAM_GRADS = (0.004, -0.004)  # the gradients of steps 1 and 2
SCHEDULE_STEPS = (49, 550)  # with TrainConfig's defaults
CLIP_GRADS, CLIP_MAX_NORM = ((2.0, -1.0), (2.0, 4.0)), 2.0  # ask for the -1
INIT_C, INIT_INNER = 768, 3072  # GPT-2 small: c_fc is C -> 4C, c_proj 4C -> C


def _layernorm_by_hand() -> float:
    mu = sum(LN_X) / len(LN_X)
    var = sum((x - mu) ** 2 for x in LN_X) / len(LN_X)  # biased
    return (LN_X[-1] - mu) / math.sqrt(var)


def _layernorm_grad() -> list[float]:
    # d LN(x)_i / d x_j = (delta_ij - 1/C - xhat_i xhat_j / C) / sigma, row i = C-1
    C = len(LN_X)
    mu = sum(LN_X) / C
    sigma = math.sqrt(sum((x - mu) ** 2 for x in LN_X) / C)
    xhat = [(x - mu) / sigma for x in LN_X]
    last = C - 1
    return [((j == last) - 1 / C - xhat[last] * xhat[j] / C) / sigma for j in range(C)]


def _residual_gradient_factor() -> list[float]:
    return [(1 + RESID_JACOBIAN) ** RESID_LAYERS, RESID_JACOBIAN**RESID_LAYERS]


def _attention_grad_q() -> float:
    scores = [ATTN_Q * k for k in ATTN_K]  # / sqrt(d), d = 1
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    a = [x / sum(e) for x in e]
    y = sum(w * v for w, v in zip(a, ATTN_V, strict=True))
    a_bar = list(ATTN_V)  # y_bar = 1, so A_bar = y_bar V^T
    # row sum of A_bar * A is y, so s_bar = a * (a_bar - y)
    s_bar = [w * (ab - y) for w, ab in zip(a, a_bar, strict=True)]
    return sum(sb * k for sb, k in zip(s_bar, ATTN_K, strict=True))


def _cross_entropy_kl() -> list[float]:
    h_pq = -sum(p * math.log(q) for p, q in zip(KL_P, KL_Q, strict=True))
    kl = sum(p * math.log(p / q) for p, q in zip(KL_P, KL_Q, strict=True))
    return [h_pq, kl]


def _adam_two_steps() -> list[float]:
    b1, b2 = ADAM_BETAS
    m = v = 0.0
    steps = []
    for t, g in enumerate(ADAM_GRADS, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        steps.append(-ADAM_LR * m_hat / (math.sqrt(v_hat) + ADAM_EPS))
    return steps


def _warmup_cosine_lr() -> list[float]:
    from lmbook.train import TrainConfig, lr_at

    cfg = TrainConfig()
    return [lr_at(step, cfg) for step in SCHEDULE_STEPS]


def _clip_global_norm() -> list[float]:
    norm = math.sqrt(sum(g * g for grad in CLIP_GRADS for g in grad))
    scale = min(1.0, CLIP_MAX_NORM / (norm + 1e-6))  # as clip_grad_norm_
    return [norm, CLIP_GRADS[0][1] * scale]


def _init_std() -> list[float]:
    xavier_fc = math.sqrt(2 / (INIT_C + INIT_INNER))  # fan_in C, fan_out 4C
    he_proj = math.sqrt(2 / INIT_INNER)  # fan_in 4C
    return [xavier_fc, he_proj]


register(
    "layernorm-by-hand",
    _layernorm_by_hand,
    "subtract the mean of the four features and divide by the square root of "
    "their variance; LayerNorm's variance divides by C, not C - 1.",
)
register(
    "layernorm-grad",
    _layernorm_grad,
    "give four numbers, d LN(x)_4 / d x_j for j = 1..4. The mean and the "
    "standard deviation depend on every x_j: d mu / d x_j = 1/C and d sigma / "
    "d x_j = xhat_j / C.",
)
register(
    "residual-gradient-factor",
    _residual_gradient_factor,
    "give two numbers. With residuals each layer's Jacobian is I + J_f, without "
    "it is J_f; the factor for the whole stack is the product over the layers.",
)
register(
    "attention-grad-q",
    _attention_grad_q,
    "a = softmax(q k), y = a . v; then a_bar = v (since y_bar = 1), s_bar = "
    "a * (a_bar - y), and q_bar = s_bar . k (d = 1, so no scale).",
)
register(
    "cross-entropy-kl",
    _cross_entropy_kl,
    "give [H(p, q), KL(p || q)] in nats (natural logarithms): H(p, q) = "
    "-sum p log q, and KL(p || q) = H(p, q) - H(p).",
)
register(
    "adam-two-steps",
    _adam_two_steps,
    "give two signed changes, theta_1 - theta_0 and theta_2 - theta_1. m_t and v_t "
    "are running averages started at 0; divide them by 1 - beta1^t and "
    "1 - beta2^t, and step by -lr m_hat / (sqrt(v_hat) + eps).",
)
register(
    "warmup-cosine-lr",
    _warmup_cosine_lr,
    "during warmup the rate is lr * (step + 1) / warmup_steps; after it, "
    "min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 with p = (step - warmup_steps)"
    " / (max_steps - warmup_steps).",
)
register(
    "clip-global-norm",
    _clip_global_norm,
    "give the global norm and the clipped entry. The norm is the square root of "
    "the sum of the squares of all entries of both tensors; every gradient is "
    "multiplied by max_norm / norm when the norm exceeds max_norm.",
)
register(
    "init-std",
    _init_std,
    "give two standard deviations. Xavier: the variance is 2 / (n_in + n_out); "
    "He: 2 / n_in, where n_in is the layer's number of inputs.",
)
