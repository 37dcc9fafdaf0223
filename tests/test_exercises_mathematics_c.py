"""Self-checks of Part III's Transformer-layer and training chapters: each expected
answer is recomputed here another way (with torch modules, autograd and optimizers),
rounded answers pass, typical mistakes fail, and feedback never reveals the answer."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

import lmbook.exercises as ex
import lmbook.exercises.mathematics_c as mc
from lmbook.train import TrainConfig, lr_at
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "layernorm-by-hand",
    "layernorm-grad",
    "residual-gradient-factor",
    "attention-grad-q",
    "cross-entropy-kl",
    "adam-two-steps",
    "warmup-cosine-lr",
    "clip-global-norm",
    "init-std",
]


def _adam_steps() -> list[float]:
    """theta_1 - theta_0 and theta_2 - theta_1 from torch.optim.Adam."""
    theta = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.Adam([theta], lr=mc.ADAM_LR, betas=mc.ADAM_BETAS, eps=mc.ADAM_EPS)
    steps = []
    for g in mc.ADAM_GRADS:
        theta.grad = torch.tensor([g], dtype=torch.float64)
        old = theta.item()
        opt.step()
        steps.append(theta.item() - old)
    return steps


@functools.cache
def _independent(name: str):
    """The right answer, computed a different way from the module's."""
    if name == "layernorm-by-hand":
        x = torch.tensor(mc.LN_X, dtype=torch.float64)
        ln = nn.LayerNorm(len(mc.LN_X), eps=0.0, dtype=torch.float64)
        return ln(x)[-1].item()
    if name == "layernorm-grad":
        x = torch.tensor(mc.LN_X, dtype=torch.float64, requires_grad=True)
        ln = nn.LayerNorm(len(mc.LN_X), eps=0.0, dtype=torch.float64)
        ln(x)[-1].backward()  # autograd, through nn.LayerNorm
        return x.grad.tolist()
    if name == "residual-gradient-factor":
        out = []
        for residual in (True, False):
            x0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
            h = x0
            for _ in range(mc.RESID_LAYERS):
                f = mc.RESID_JACOBIAN * h  # J_f = 0.1
                h = h + f if residual else f
            h.backward()
            out.append(x0.grad.item())
        return out
    if name == "attention-grad-q":
        q = torch.tensor([[mc.ATTN_Q]], dtype=torch.float64, requires_grad=True)
        k = torch.tensor(mc.ATTN_K, dtype=torch.float64)[:, None]
        v = torch.tensor(mc.ATTN_V, dtype=torch.float64)[:, None]
        F.scaled_dot_product_attention(q, k, v).sum().backward()
        return q.grad.item()
    if name == "cross-entropy-kl":
        p = torch.tensor(mc.KL_P, dtype=torch.float64)
        q = torch.tensor(mc.KL_Q, dtype=torch.float64)
        h_pq = F.cross_entropy(q.log(), p).item()
        kl = kl_divergence(Categorical(probs=p), Categorical(probs=q)).item()
        return [h_pq, kl]
    if name == "adam-two-steps":
        return _adam_steps()
    if name == "warmup-cosine-lr":
        cfg = TrainConfig()
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        W, S = cfg.warmup_steps, cfg.max_steps
        sched = torch.optim.lr_scheduler
        scheduler = sched.SequentialLR(
            optimizer,
            [
                sched.LinearLR(optimizer, 1 / W, 1.0, total_iters=W - 1),
                sched.CosineAnnealingLR(optimizer, T_max=S - W, eta_min=cfg.min_lr),
            ],
            milestones=[W],
        )
        lrs = []
        for _ in range(max(mc.SCHEDULE_STEPS) + 1):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert [lrs[s] for s in mc.SCHEDULE_STEPS] == pytest.approx(
            [lr_at(s, cfg) for s in mc.SCHEDULE_STEPS], rel=1e-9
        )
        return [lrs[s] for s in mc.SCHEDULE_STEPS]
    if name == "clip-global-norm":
        params = [nn.Parameter(torch.zeros(len(g))) for g in mc.CLIP_GRADS]
        for p, g in zip(params, mc.CLIP_GRADS, strict=True):
            p.grad = torch.tensor(g)
        norm = nn.utils.clip_grad_norm_(params, max_norm=mc.CLIP_MAX_NORM)
        return [norm.item(), params[0].grad[1].item()]
    if name == "init-std":
        fc = nn.Linear(mc.INIT_C, mc.INIT_INNER)  # weight (4C, C)
        proj = nn.Linear(mc.INIT_INNER, mc.INIT_C)  # weight (C, 4C)
        torch.manual_seed(0)
        nn.init.xavier_normal_(fc.weight)
        nn.init.kaiming_normal_(proj.weight, nonlinearity="relu")
        stds = [fc.weight.std().item(), proj.weight.std().item()]
        xavier = math.sqrt(2 / sum(fc.weight.shape))
        he = nn.init.calculate_gain("relu") / math.sqrt(proj.weight.shape[1])
        assert stds == pytest.approx([xavier, he], rel=0.01)  # 2.4M draws
        return [xavier, he]
    raise AssertionError(name)


# The rounded answers the chapters' solutions show, as a reader would type them.
ROUNDED = {
    "layernorm-by-hand": [1.604, 1.60],
    "layernorm-grad": [[0.0955, -0.0191, -0.134, 0.0573]],
    "residual-gradient-factor": [[9.85, 1e-24], [9.850, 1.0e-24]],
    "attention-grad-q": [0.393],
    "cross-entropy-kl": [[1.204, 0.511], [1.20, 0.511]],
    "adam-two-steps": [[-1.00e-3, 5.26e-5], [-0.001, 0.0000526]],
    "warmup-cosine-lr": [[1.5e-4, 1.65e-4]],
    "clip-global-norm": [[5, -0.4], [5.0, -0.400]],
    "init-std": [[0.0228, 0.0255]],
}

_SIGMA = math.sqrt(3.5)  # of LN_X = (1, 2, 3, 6), whose mean is 3

# Typical mistakes.
WRONG = {
    "layernorm-grad": [
        [-0.25 / _SIGMA] * 3 + [0.75 / _SIGMA],  # sigma held constant
        [0.0, 0.0, 0.0, 1 / _SIGMA],  # mu and sigma both held constant
        [0.0955, -0.0191, -0.134, -0.0573],  # a sign slip in the last entry
    ],
    "layernorm-by-hand": [
        3 / math.sqrt(14 / 3),  # unbiased variance (divides by C - 1)
        3 / 3.5,  # divided by the variance, not the standard deviation
    ],
    "residual-gradient-factor": [
        [1.1 * 24, 1e-24],  # added the factors instead of multiplying
        [0.1**24, 1.1**24],  # the two swapped
    ],
    "attention-grad-q": [
        -0.393,  # sign flipped (gradient ascent direction)
        0.197,  # a(1 - a) alone: forgot the values
    ],
    "cross-entropy-kl": [
        [0.693, 0.511],  # H(p) instead of H(p, q)
        [1.204, 0.368],  # KL(q || p) instead of KL(p || q)
        [1.737, 0.737],  # log base 2
    ],
    "adam-two-steps": [
        [-1.0e-3, 1.0e-3],  # no momentum: a sign step against g_2
        [-1.0e-3, 2.24e-4],  # no bias correction at step 2
        [-1.0e-3, 7.07e-5],  # step 1's correction (1 - beta), not 1 - beta^2
        [1.0e-3, -5.26e-5],  # the sign: Adam steps against the gradient
    ],
    "warmup-cosine-lr": [
        [1.47e-4, 1.65e-4],  # lr * step / warmup: off by one
        [1.5e-4, 1.5e-4],  # cosine decaying to 0 rather than to min_lr
    ],
    "clip-global-norm": [
        [5.0, -0.894],  # clipped each tensor by its own norm
        [5.0, -1.0],  # the norm, but no clipping
        [25.0, -0.08],  # the squared norm
    ],
    "init-std": [
        [math.sqrt(2 / 3840), math.sqrt(2 / 768)],  # He with fan_out, not fan_in
        [math.sqrt(1 / 768), math.sqrt(1 / 3072)],  # LeCun, 1 / n_in, for both
        [0.02, 0.02 / math.sqrt(24)],  # GPT-2's values, not the formulas
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name):
    expected = ex._REGISTRY[name].expected()
    assert expected == pytest.approx(_independent(name), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_right_answer_accepted(name, capsys):
    assert_accepted(name, _independent(name), capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in ROUNDED.items() for a in answers]
)
def test_rounded_answer_accepted(name, answer, capsys):
    assert_accepted(name, answer, capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in WRONG.items() for a in answers]
)
def test_typical_mistake_rejected_without_revealing(name, answer, capsys):
    assert_rejected_without_revealing(name, answer, _independent(name), capsys)


@pytest.mark.parametrize("name", NAMES)
def test_non_numeric_answer_rejected(name, capsys):
    assert ex.check(name, "a lot") is False
    assert "not yet" in capsys.readouterr().out
