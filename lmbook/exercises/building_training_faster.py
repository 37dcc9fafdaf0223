"""Self-checks for Part IV, "Training faster": nanoGPT's schedule, GPT-2's
residual initialisation, AdamW's first step, the cost of Muon's Newton-Schulz
iteration, and clipping.

The answers are computed with the package's code where it exists
(`lmbook.speedrun.lr_at`, ``torch.optim.AdamW``,
``torch.nn.utils.clip_grad_norm_``), following nanoGPT's ``get_lr``
(Karpathy, 2022), GPT-2's scaled initialisation (Radford et al., 2019), AdamW
(Loshchilov & Hutter, 2019; Kingma & Ba, 2015), Muon (Jordan et al., 2024) and
gradient-norm clipping (Pascanu et al., 2013).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
COSINE_IT = 1000  # the iteration asked about, under nanoGPT's recipe
GPT2_LAYERS = 12  # GPT-2 small
ADAMW_THETA, ADAMW_GRAD, ADAMW_LR, ADAMW_WD = 0.5, -2.0, 0.01, 0.1
ADAMW_BETAS = (0.9, 0.99)
NS_SHAPE, NS_STEPS = (512, 128), 5  # the c_fc weight of the chapter's model
CLIP_GRADS = ((3.0, 4.0), (12.0,))  # two parameters' gradients
CLIP_MAX_NORM = 1.0


def _cosine_lr() -> float:
    from lmbook.speedrun import NANOGPT, lr_at

    return lr_at(COSINE_IT, NANOGPT)


def _residual_std() -> float:
    return 0.02 / math.sqrt(2 * GPT2_LAYERS)


def _adamw_first_step() -> float:
    import torch

    p = torch.nn.Parameter(torch.tensor([ADAMW_THETA], dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=ADAMW_LR, betas=ADAMW_BETAS, weight_decay=ADAMW_WD)
    p.grad = torch.tensor([ADAMW_GRAD], dtype=torch.float64)
    opt.step()
    return float(p.item())


def _ns_flops() -> int:
    # each step on X (m, n), m <= n: X X^T (2 m^2 n), A A (2 m^3), B X (2 m^2 n)
    m, n = sorted(NS_SHAPE)
    return NS_STEPS * (4 * m * m * n + 2 * m**3)


def _clipped_first_entry() -> float:
    import torch

    grads = [torch.tensor(g, dtype=torch.float64) for g in CLIP_GRADS]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, CLIP_MAX_NORM)
    return float(params[0].grad[0])


register(
    "speedrun-cosine-lr",
    _cosine_lr,
    "the cosine starts after the 100 warmup steps, so the fraction p of the "
    "decay is (it - 100) / (2000 - 100), not it / 2000; then "
    "lr = min_lr + (lr_max - min_lr) (1 + cos(pi p)) / 2",
)
register(
    "speedrun-residual-std",
    _residual_std,
    "GPT-2 scales the std 0.02 of the residual projections by 1/sqrt(N), where "
    "N counts the residual additions: two per layer (attention and MLP)",
)
register(
    "speedrun-adamw-first-step",
    _adamw_first_step,
    "after bias correction the first Adam step moves by lr * g / |g| against the "
    "gradient; AdamW's decoupled decay first multiplies theta by (1 - lr * wd)",
    sig=4,  # 3 figures could not tell 0.5095 from 0.51, the step without decay
)
register(
    "speedrun-ns-flops",
    _ns_flops,
    "count 2 m n k floating-point operations for an (m, k) by (k, n) product; "
    "each step has three products, X X^T, A A and B X; run the iteration on the "
    "wide orientation (m = 128 rows), and do not forget the number of steps",
)
register(
    "speedrun-clip",
    _clipped_first_entry,
    "the global norm is the square root of the sum of squares of all entries of "
    "both gradients; every entry is multiplied by max_norm / that norm",
)
