"""Benchmark lmbook.decoding: the KV cache and speculative decoding, side by side.

Measures, in one process (medians of interleaved runs, see timing.py):
  1. the KV-cache speedup of greedy `lmbook.decoding.generate`: cached / uncached
     tokens per second, at the house model's shape and at GPT-2's 124M shape
     (random weights), with `GPT.generate` beside it;
  2. speculative decoding with the house model "shakespeare-char" as the target
     and three drafts, from cheap to expensive: a character bigram table counted
     from the training text, a 1-layer GPT trained here for a few hundred steps,
     and the target itself (acceptance 1: what the bookkeeping costs). For k
     draft tokens it reports the acceptance rate, tokens per target pass, and
     the speed against plain cached generation with the target, greedy and
     sampled (temperature 1);
  3. why it pays or not: one target pass over k + 1 tokens against a 1-token
     pass (c_verify), at the house shape and at GPT-2's. Speculation pays when
     drafting is cheap and c_verify stays near 1, i.e. when a forward pass is
     limited by reading the weights, not by arithmetic (Leviathan et al., 2023).

Usage: LMBOOK_DATA_DIR=... python bench/bench_decoding.py [--quick] [--device cpu]
       [--threads 2] [--new-tokens 200]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from timing import measure  # bench/timing.py (scripts run from bench/)

from lmbook import GPT, CharTokenizer, GPTConfig, get_device, load_text
from lmbook.data import train_val_split
from lmbook.decoding import generate, speculative_generate
from lmbook.pretrained import house_model_path


class BigramLM:
    """Next-character logits from bigram counts (add-one smoothing)."""

    def __init__(self, ids: torch.Tensor, vocab_size: int, device):
        counts = torch.ones(vocab_size, vocab_size)
        counts.index_put_(
            (ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True
        )
        self.table = counts.log().to(device)  # (V, V)

    def __call__(self, idx):  # (B, T) -> (B, T, V)
        return self.table[idx]


def train_draft(ids, vocab_size, steps, device, seed=0):
    """A 1-layer, 64-wide character GPT trained with AdamW on random windows."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size, 128, n_layer=1, n_head=4, n_embd=64)
    model = GPT(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 129, (32,), generator=gen)
        x = torch.stack([ids[s : s + 129] for s in starts]).to(device)
        loss = model(x[:, :-1], x[:, 1:])[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), loss.item()


def val_loss(model, ids, device, windows=64, T=128):
    """Mean next-character cross-entropy (nats) on evenly spaced windows."""
    starts = torch.linspace(0, len(ids) - T - 2, windows).long()
    x = torch.stack([ids[s : s + T + 1] for s in starts]).to(device)
    with torch.no_grad():
        logits = model(x[:, :-1])
        logits = logits[0] if isinstance(logits, tuple) else logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))


def bench_cache(label, model, device, reps, new_tokens):
    prompt = torch.randint(0, model.config.vocab_size, (1, 8), device=device)
    out = {}
    fns = {
        "cached": lambda: out.update(c=generate(model, prompt, new_tokens, 0)),
        "uncached": lambda: out.update(
            u=generate(model, prompt, new_tokens, 0, use_cache=False)
        ),
        "GPT.generate": lambda: out.update(g=model.generate(prompt, new_tokens, 0)),
    }
    wall, _ = measure(fns, reps, device, warmup=1)
    assert torch.equal(out["c"], out["u"]) and torch.equal(out["c"], out["g"])
    tps = {k: new_tokens / v for k, v in wall.items()}
    speedup = wall["uncached"] / wall["cached"]
    print(
        f"  {label:34s} cached {tps['cached']:7.1f} tok/s, uncached "
        f"{tps['uncached']:7.1f} tok/s: speedup {speedup:.2f}x; "
        f"time GPT.generate / ours {wall['GPT.generate'] / wall['cached']:.2f}"
    )


def verify_cost(model, device, ks, reps):
    """Seconds of one cached pass over k + 1 new tokens / over 1 token."""
    from lmbook.gpt import KVCache

    L = model.config.block_size
    w = model.lm_head.weight
    cache = KVCache(model.config, 1, min(L, 128), w.device, w.dtype)
    ctx = torch.randint(0, model.config.vocab_size, (1, 100), device=device)
    fns = {}
    for k in [0, *ks]:
        new = ctx[:, : k + 1]

        def step(new=new):
            cache.length = 64  # a 64-token context is cached
            with torch.no_grad():
                model(new, kv_cache=cache)

        fns[k] = step
    with torch.no_grad():
        model(ctx[:, :64], kv_cache=cache)
    wall, _ = measure(fns, reps, device, warmup=2)
    return {k: wall[k] / wall[0] for k in ks}, wall[0]


def bench_speculative(target, drafts, prompt, device, reps, new_tokens, ks, t):
    """Speed of speculative decoding at temperature t against plain generation."""
    kind = "greedy" if t == 0 else f"sampled, temperature {t:g}"
    print(f"\n  {kind}: speed = time of plain cached generate / time with draft")
    out = {}

    def plain():
        gen = torch.Generator(device=device).manual_seed(0)
        out["plain"] = generate(target, prompt, new_tokens, t, generator=gen)

    def spec(name, k):
        gen = torch.Generator(device=device).manual_seed(0)
        draft = drafts[name]
        out[name, k] = speculative_generate(
            target, draft, prompt, new_tokens, k, t, generator=gen
        )

    fns = {"plain": plain}
    fns.update({(n, k): (lambda n=n, k=k: spec(n, k)) for n in drafts for k in ks})
    wall, _ = measure(fns, reps, device, warmup=1)
    for name, k in (key for key in fns if key != "plain"):
        s = out[name, k]
        if t == 0:
            assert torch.equal(s.sequences, out["plain"]), "greedy must agree"
        per_pass = (s.sequences.size(1) - prompt.size(1)) / s.target_calls
        print(
            f"    draft {name:12s} k={k}: acceptance {s.accepted / s.drafted:5.1%}, "
            f"{per_pass:4.2f} tokens per target pass, speed "
            f"{wall['plain'] / wall[name, k]:.2f}x"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: lmbook.get_device()")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--draft-steps", type=int, default=None)
    parser.add_argument(
        "--target", default=None, help="a saved GPT folder (default: the house model)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    reps = 3 if args.quick else 5
    new_tokens = args.new_tokens or (60 if args.quick else 200)
    draft_steps = args.draft_steps or (100 if args.quick else 400)
    ks = (2, 4) if args.quick else (2, 4, 8)
    print(
        f"device {device}, torch {torch.__version__}, threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    path = args.target or house_model_path("shakespeare-char")
    target = GPT.from_pretrained(path).to(device)
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.from_text(text)
    train, val = (torch.tensor(tok.encode(t)) for t in train_val_split(text))
    c = target.config
    print(
        f"target: {path}, {c.n_layer} layers, {c.n_embd} wide, "
        f"{target.num_parameters() / 1e6:.2f}M parameters"
    )

    # the house model sees 128 characters: past them both loops re-encode
    short = min(new_tokens, c.block_size - 8)
    print(
        f"\n[KV cache] greedy, prompt 8, new tokens: {short} (house), "
        f"{new_tokens} (gpt2)"
    )
    bench_cache("house model (trained)", target, device, reps, short)
    if not args.quick:
        torch.manual_seed(0)
        gpt2 = GPT(GPTConfig.from_preset("gpt2")).to(device).eval()
        bench_cache("gpt2 shape (124M, random weights)", gpt2, device, 3, new_tokens)

    draft, _ = train_draft(train, tok.vocab_size, draft_steps, device)
    drafts = {
        "bigram": BigramLM(train, tok.vocab_size, device),
        f"1L-GPT ({draft.num_parameters() / 1e3:.0f}k)": draft,
        "target": target,
    }
    # the text must fit the target's context (see speculative_generate)
    spec_tokens = min(new_tokens, c.block_size + 1 - 8)
    print(
        f"\n[speculative] prompt = 8 characters of the validation text, "
        f"{spec_tokens} new"
    )
    for name, model in drafts.items():
        print(f"  val loss {name:16s} {val_loss(model, val, device):.3f} nats/char")
    prompt = val[1000:1008][None].to(device)
    for t in (0.0, 1.0):
        bench_speculative(target, drafts, prompt, device, reps, spec_tokens, ks, t)

    print("\n[verify cost] one cached pass over k + 1 tokens / a 1-token pass")
    models = {"house model": target}
    if not args.quick:
        models["gpt2 shape"] = gpt2
    for name, model in models.items():
        ratios, t1 = verify_cost(model, device, ks, reps * 4)
        cells = ", ".join(f"k={k}: {r:.2f}" for k, r in ratios.items())
        print(f"  {name:12s} 1 token {t1 * 1e3:6.2f} ms; {cells}")
    d1 = verify_cost(draft, device, ks, reps * 4)[1]
    print(f"  draft 1L-GPT 1 token {d1 * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
