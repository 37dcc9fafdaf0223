"""Muon: momentum orthogonalised by Newton-Schulz, for the weight matrices of a net.

Keller Jordan et al., "Muon: An optimizer for hidden layers in neural networks"
(2024), the optimizer of the modded-nanogpt speedrun, as ``torch.optim.Muon``
implements it (PyTorch 2.9 and later): Nesterov momentum, then five steps of a
quintic Newton-Schulz iteration that pushes the update's singular values towards
1, then a step scaled by sqrt(max(1, fan_out / fan_in)). torch runs the iteration
in bfloat16, fast on GPUs but many times slower than float32 on CPUs without
bfloat16 units; `Muon` here does the same update with the iteration in float32
by default, and with ``ns_dtype=torch.bfloat16`` it reproduces torch's.
"""

from __future__ import annotations

import math

import torch

from lmbook.checks import check_float, check_int, tname

__all__ = ["Muon", "newton_schulz", "NS_COEFFICIENTS"]

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # torch.optim.Muon's (a, b, c)


def newton_schulz(g: torch.Tensor, steps: int = 5, dtype=torch.float32):
    """Approximately orthogonalise a matrix: g (m, n) -> U S' V^T, S' ~ 1.

    Keller Jordan's quintic Newton-Schulz iteration, as in torch.optim.Muon
    (which runs it in bfloat16): scale g to spectral norm <= 1, then repeat
    X <- a X + (b A + c A^2) X with A = X X^T, (a, b, c) = (3.4445, -4.775,
    2.0315), on the wide orientation of g. Returns g's shape in g's dtype.
    """
    if not isinstance(g, torch.Tensor) or g.dim() != 2:
        raise ValueError(
            "newton_schulz orthogonalises a matrix; got "
            + (f"shape {tuple(g.shape)}" if isinstance(g, torch.Tensor) else tname(g))
        )
    check_int("steps", steps, 1, 99)
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    if g.size(0) > g.size(1):
        x = x.T
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T  # (m, m), m <= n
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if g.size(0) > g.size(1):
        x = x.T
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """torch.optim.Muon's update, with Newton-Schulz in `ns_dtype` (float32).

    Per 2-D parameter W (out, in) with gradient G: B <- mu B + (1 - mu) G;
    U = (1 - mu) G + mu B (Nesterov); W <- (1 - lr wd) W - lr sqrt(max(1,
    out/in)) NS(U). torch's version computes NS in bfloat16, which CPUs without
    bfloat16 units run many times slower; with ``ns_dtype=torch.bfloat16``
    this class gives torch's update.
    """

    def __init__(
        self,
        params,
        lr=0.02,
        momentum=0.95,
        weight_decay=0.0,
        ns_steps=5,
        ns_dtype=torch.float32,
    ):
        check_float("lr", lr, 0, low_open=True)
        check_float("momentum", momentum, 0, 1, high_open=True)
        check_float("weight_decay", weight_decay, 0)
        check_int("ns_steps", ns_steps, 1, 99)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"Muon updates matrices only, got a {p.dim()}-D parameter "
                        f"of shape {tuple(p.shape)}; give it to AdamW"
                    )

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu)  # Nesterov
                update = newton_schulz(update, group["ns_steps"], group["ns_dtype"])
                p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * math.sqrt(max(1, p.size(0) / p.size(1))))
        return loss
