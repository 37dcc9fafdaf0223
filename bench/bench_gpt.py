"""Benchmark lmbook.gpt against Hugging Face's GPT2LMHeadModel, side by side.

Measures, in one process with the same weights for both models:
  1. a training step (forward, backward, AdamW) on nanoGPT's CPU recipe shape,
     lmbook / HF time, and its MFU against a measured fp32 matmul ceiling. The
     headline pits each library's default model of that shape against the other
     (lmbook: exact GELU, like nanoGPT; HF GPT-2: "gelu_new", its tanh formula
     written as eight tensor ops); two more rows give both the same GELU, so the
     cost of the activation and of the rest of the model can be told apart;
  2. the KV-cache speedup of greedy generation at the gpt2 (124M) shape, for
     lmbook and for HF by the same measure (cached / uncached tokens per second);
  3. lmbook / HF cached generation speed, and the fraction of the memory-bandwidth
     bound (weight bytes read per token / measured read bandwidth) it reaches.
     Both lmbook paths run through the model's modules (one code path).

Usage: python bench/bench_gpt.py [--quick] [--generate-only] [--device cpu]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from transformers.activations import ACT2FN

from lmbook import get_device
from lmbook.gpt import GPT, GPTConfig


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats, warmup=1):
    """Median seconds of fn() over repeats, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired(ours, theirs, device, repeats, warmup=3):
    """Time ours() and theirs() alternately, call by call.

    Returns (median seconds of ours, of theirs, median of the per-pair ratios).
    Alternating keeps both exposed to the same machine load (other processes on
    a shared machine), so the ratio stays meaningful when absolute times drift.
    """
    for _ in range(warmup):
        ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours, device, 1, warmup=0))
        t_theirs.append(timed(theirs, device, 1, warmup=0))
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_theirs, strict=True))
    return statistics.median(t_ours), statistics.median(t_theirs), ratio


def matmul_flops(device, n=2048, repeats=5):
    """Measured fp32 FLOP/s of an n x n matmul: the compute ceiling for MFU."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / timed(lambda: a @ b, device, repeats, warmup=2)


def read_bandwidth(device, gib=1.0, repeats=5):
    """Measured memory read bandwidth (bytes/s): summing a large fp32 tensor."""
    x = torch.ones(int(gib * 2**30) // 4, device=device)
    return x.numel() * 4 / timed(lambda: x.sum(), device, repeats, warmup=2)


TRAIN_RUNS = (  # label, lmbook activation, HF activation_function
    ("defaults: lmbook exact GELU vs HF gelu_new", "gelu", "gelu_new"),
    ("same GELU formula: tanh vs gelu_new", "gelu_tanh", "gelu_new"),
    ("same GELU kernel: tanh vs gelu_pytorch_tanh", "gelu_tanh", "gelu_pytorch_tanh"),
)


def bench_train(device, steps, activation, hf_activation):
    """nanoGPT's CPU recipe: 4 layers, 4 heads, 128 dims, block 64, batch 12."""
    shape = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**shape, activation=activation)).to(device).train()
    torch.manual_seed(0)  # the same weights, with GPT-2's GELU, in HF's model
    hf = GPT(GPTConfig(**shape, activation="gelu_tanh")).to(device)
    hf = hf.to_hf(attn_implementation="sdpa").train()
    hf.config.activation_function = hf_activation
    for block in hf.transformer.h:
        block.mlp.act = ACT2FN[hf_activation]
    x = torch.randint(0, 65, (12, 65), device=device)
    idx, targets = x[:, :-1], x[:, 1:]

    def make_step(model, is_hf):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            if is_hf:
                loss = model(idx, labels=idx).loss  # HF shifts the labels itself
            else:
                loss = model(idx, targets)[1]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    ours, theirs = make_step(gpt, False), make_step(hf, True)
    t_ours, t_hf, ratio = paired(ours, theirs, device, steps)
    C, n_layer, T = gpt.config.n_embd, gpt.config.n_layer, gpt.config.block_size
    n = gpt.num_parameters() + gpt.config.vocab_size * C  # lm_head matmul counts
    flops = (6 * n + 12 * n_layer * T * C) * idx.numel()  # PaLM, appendix B
    return t_ours, t_hf, ratio, flops


def bench_generate(device, repeats, new_tokens):
    """gpt2 (124M) shape with random weights: 4-token prompt, greedy decoding."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig.from_preset("gpt2")).to(device).eval()
    hf = gpt.to_hf(attn_implementation="sdpa").eval()
    prompt = torch.randint(0, 50257, (1, 4), device=device)
    out = {}

    def ours():
        out["ours"] = gpt.generate(prompt, new_tokens, temperature=0)

    def theirs():
        out["hf"] = hf.generate(
            prompt,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )

    def no_cache():
        out["nc"] = gpt.generate(prompt, new_tokens, temperature=0, use_cache=False)

    def hf_no_cache():
        out["hf_nc"] = hf.generate(
            prompt,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
            use_cache=False,
        )

    t_ours, t_hf, ratio = paired(ours, theirs, device, repeats, warmup=1)
    # uncached is slow: fewer pairs, each run next to a cached one
    few = max(1, repeats // 2)
    _, t_nc, inv_speedup = paired(ours, no_cache, device, few, 0)
    _, t_hf_nc, inv_hf_speedup = paired(theirs, hf_no_cache, device, few, 0)
    weight_bytes = sum(  # read once per token: every matrix, wte as lm_head only
        p.numel() * p.element_size()
        for n, p in gpt.named_parameters()
        if n != "transformer.wpe.weight"
    )
    return dict(
        tps=new_tokens / t_ours,
        tps_hf=new_tokens / t_hf,
        tps_nc=new_tokens / t_nc,
        speedup=1 / inv_speedup,
        speedup_hf=1 / inv_hf_speedup,
        tps_hf_nc=new_tokens / t_hf_nc,
        ratio=1 / ratio,  # tokens/s of lmbook / tokens/s of HF
        same_hf=torch.equal(out["ours"], out["hf"]),
        same_nc=torch.equal(out["ours"], out["nc"]),
        weight_bytes=weight_bytes,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: lmbook.get_device()")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--generate-only", action="store_true", help="skip the training step"
    )
    parser.add_argument("--new-tokens", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    repeats = 3 if args.quick else 5
    new_tokens = args.new_tokens or (50 if args.quick else 200)
    print(
        f"device {device}, torch {torch.__version__}, threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    peak = matmul_flops(device)
    bw = read_bandwidth(device)
    print(
        f"fp32 matmul ceiling {peak / 1e9:.1f} GFLOP/s, read bandwidth "
        f"{bw / 1e9:.1f} GB/s"
    )

    print("\n[train step] 4L/4H/128, block 64, batch 12, vocab 65, AdamW, HF sdpa")
    steps = 20 if args.quick else 100
    for i, (label, activation, hf_act) in enumerate(TRAIN_RUNS):
        if args.generate_only:
            print("  skipped (--generate-only)")
            break
        t_ours, t_hf, ratio, flops = bench_train(device, steps, activation, hf_act)
        goal = "   (goal <= 0.8)" if i == 0 else ""
        print(
            f"  {label:44s} lmbook {t_ours * 1e3:6.2f} ms, HF {t_hf * 1e3:6.2f} ms, "
            f"ratio {ratio:.3f}{goal}"
        )
        print(
            f"  {'':44s} MFU lmbook {flops / t_ours / peak:.1%}, HF "
            f"{flops / t_hf / peak:.1%} ({flops / 1e9:.2f} GFLOP/step)"
        )
    print("  (ratios: medians of per-pair ratios, steps timed alternately)")

    r = bench_generate(device, repeats, new_tokens)
    tps, tps_hf = r["tps"], r["tps_hf"]
    print(
        f"\n[generate] gpt2 shape (random weights), prompt 4, {new_tokens} new, "
        f"greedy, float32"
    )
    print(
        f"  lmbook cached {tps:.1f} tok/s, uncached {r['tps_nc']:.1f} tok/s; "
        f"HF generate {tps_hf:.1f} tok/s, uncached {r['tps_hf_nc']:.1f} tok/s"
    )
    print(
        f"  KV-cache speedup: lmbook {r['speedup']:.2f}x, HF {r['speedup_hf']:.2f}x"
        f"   (goal: lmbook >= HF)   cached == uncached tokens: {r['same_nc']}"
    )
    print(
        f"  ratio lmbook / HF tokens/s = {r['ratio']:.3f}   (goal >= 1.1)"
        f"   same tokens as HF: {r['same_hf']}"
    )
    nbytes = r["weight_bytes"]
    bound = bw / nbytes
    print(
        f"  bandwidth bound: {nbytes / 1e6:.0f} MB of weights per token / "
        f"{bw / 1e9:.1f} GB/s = {bound:.1f} tok/s; lmbook reaches {tps / bound:.0%},"
        f" HF {tps_hf / bound:.0%}"
    )
    print(
        f"\nload average at the end {os.getloadavg()[0]:.2f} (other processes "
        f"skew absolute times; ratios are timed call by call, side by side)"
    )


if __name__ == "__main__":
    main()
