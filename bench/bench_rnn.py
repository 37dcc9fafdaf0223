"""Benchmark lmbook.RNNLM against the same model built by hand from torch.nn.

Ratios, measured side by side in one process (medians of interleaved runs):
  fast / bare   RNNLM(fast=True) over nn.Embedding + nn.LSTM + nn.Linear and the
                cross-entropy written out by hand (goal <= 1.1);
  slow / fast   RNNLM(fast=False), lmbook's time-step loop, over RNNLM(fast=True).

Usage: python bench/bench_rnn.py [--device cpu|cuda] [--quick] [--cell lstm|gru|rnn]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from timing import measure, report  # bench/timing.py (scripts run from bench/)

from lmbook import get_device
from lmbook.rnn import RNNLM

TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Bare(nn.Module):
    """Embedding, torch's recurrent layer and a linear head, with no checks."""

    def __init__(self, model: RNNLM) -> None:
        super().__init__()
        V, H = model.embedding.weight.shape
        L = model.rnn.num_layers
        self.emb = nn.Embedding(V, H)
        self.rnn = TORCH_LAYERS[model.cell](H, H, L, batch_first=True)
        self.head = nn.Linear(H, V)
        self.emb.load_state_dict(model.embedding.state_dict())
        self.rnn.load_state_dict(model.rnn.state_dict())
        self.head.load_state_dict(model.lm_head.state_dict())

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        logits = self.head(self.rnn(self.emb(idx))[0])  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def step(fn, idx: torch.Tensor, targets: torch.Tensor, grad: bool):
    """One timed call: fn(idx, targets), plus a backward pass when `grad`."""

    def run() -> None:
        with torch.set_grad_enabled(grad):
            _, loss = fn(idx, targets)
            if grad:
                loss.backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: lmbook.get_device()")
    parser.add_argument("--quick", action="store_true", help="few reps, small shapes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cell", default="lstm", choices=sorted(TORCH_LAYERS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    V, H, L, B, T = (65, 64, 2, 8, 32) if args.quick else (65, 256, 2, 32, 64)
    reps = 5 if args.quick else 20
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}"
    )
    print(f"cell={args.cell} vocab={V} hidden={H} layers={L} B={B} T={T} reps={reps}")
    torch.manual_seed(0)
    fast = RNNLM(V, H, L, cell=args.cell, fast=True).to(device)
    slow = RNNLM(V, H, L, cell=args.cell, fast=False).to(device)
    slow.load_state_dict(fast.state_dict())
    models = {"bare": Bare(fast).to(device), "fast": fast, "slow": slow}
    idx = torch.randint(0, V, (B, T), device=device)
    targets = torch.randint(0, V, (B, T), device=device)
    for grad in (False, True):
        fns = {name: step(m, idx, targets, grad) for name, m in models.items()}
        wall, cpu = measure(fns, reps, device)
        mode = "fwd+bwd" if grad else "fwd"
        report(f"{mode:7}", wall, cpu, device, [("fast", "bare"), ("slow", "fast")])


if __name__ == "__main__":
    main()
