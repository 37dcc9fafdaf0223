"""Benchmark lmbook.MultiHeadAttention against the minimal equivalent computation.

Ratios, measured side by side in one process (medians of interleaved runs):
  fast / minimal   MultiHeadAttention(x) over two plain nn.Linear projections around
                   F.scaled_dot_product_attention (goal <= 1.1);
  weights / fast   MultiHeadAttention(x, need_weights=True) over MultiHeadAttention(x).

Usage: python bench/bench_attention.py [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from timing import measure, report  # bench/timing.py (scripts run from bench/)

from lmbook import get_device
from lmbook.attention import MultiHeadAttention


class Minimal(nn.Module):
    """The same computation with no checks: Linear, F.sdpa, Linear."""

    def __init__(self, mha: MultiHeadAttention) -> None:
        super().__init__()
        C = mha.d_model
        self.nh, self.causal = mha.n_heads, mha.causal
        self.q_k_v = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.q_k_v.load_state_dict(mha.in_proj.state_dict())
        self.proj.load_state_dict(mha.out_proj.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.q_k_v(x).split(C, dim=2)
        q = q.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.nh, C // self.nh).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)


def step(fn, x: torch.Tensor, grad: bool):
    """One timed call: fn(x), plus a backward pass when `grad`."""

    def run() -> None:
        with torch.set_grad_enabled(grad):
            out = fn(x)
            if grad:
                out.sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: lmbook.get_device()")
    parser.add_argument("--quick", action="store_true", help="few reps, small shapes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    B, T, C, nh = (2, 64, 64, 4) if args.quick else (8, 256, 256, 8)
    reps = 5 if args.quick else 30
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    print(f"B={B} T={T} C={C} n_heads={nh} reps={reps} (medians, ms)")
    torch.manual_seed(0)
    x = torch.randn(B, T, C, device=device, requires_grad=True)
    for causal in (False, True):
        mha = MultiHeadAttention(C, nh, causal=causal).to(device)
        calls = {
            "minimal": Minimal(mha).to(device),
            "fast": lambda x, mha=mha: mha(x)[0],
            "weights": lambda x, mha=mha: mha(x, need_weights=True)[0],
        }
        for grad in (False, True):
            fns = {name: step(fn, x, grad) for name, fn in calls.items()}
            wall, cpu = measure(fns, reps, device)
            mode = "fwd+bwd" if grad else "fwd"
            ratios = [("fast", "minimal"), ("weights", "fast")]
            report(f"causal={causal!s:5} {mode:7}", wall, cpu, device, ratios)


if __name__ == "__main__":
    main()
