"""Benchmark lmbook's two BPE trainers, and lmbook against Hugging Face `tokenizers`.

Ratios, measured side by side in one process (medians of interleaved runs):
  ref / fast      training time of lmbook's reference trainer, which recounts every
                  pair before each merge (Sennrich et al.'s Algorithm 1), over its
                  fast incremental one (`BPETokenizer.train`'s `method`), with
                  GPT-2's pre-split and with none (merges checked equal);
  ours / HF       training, and encoding with the same merges, against the Rust
                  `tokenizers` library (2 threads), which is what to use in practice;
  batches/s       lmbook.batching.TokenBatchSampler on --device for the encoded text.

Usage: LMBOOK_DATA_DIR=/work/shared/data python bench/bench_tokenizers.py
       [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "2")  # before `tokenizers` starts its pool
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lmbook from the checkout

import torch  # noqa: E402
from timing import measure  # noqa: E402  (bench/timing.py)

from lmbook import get_device, load_text  # noqa: E402
from lmbook.batching import TokenBatchSampler  # noqa: E402
from lmbook.tokenizers import BPETokenizer  # noqa: E402


def hf_train(text: str, vocab_size: int):
    import tokenizers

    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([text], trainer)
    return hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: lmbook.get_device()")
    parser.add_argument("--quick", action="store_true", help="smaller text, fewer reps")
    args = parser.parse_args()
    device = get_device(args.device)
    torch.set_num_threads(2)
    n_chars, vocab_size, reps = (20_000, 320, 3) if args.quick else (100_000, 512, 5)
    text = load_text("tinyshakespeare")[:n_chars]
    print(f"device={device} text={n_chars:,} chars vocab_size={vocab_size} reps={reps}")

    for pattern in ("gpt2", None):
        fast, ref = BPETokenizer(pattern), BPETokenizer(pattern)
        n = vocab_size - 256
        if pattern is None and not args.quick:
            n = 64  # the reference trainer rescans the whole text for every merge
        size = 256 + n
        t = measure(
            {
                "fast": lambda: fast.train(text, size, method="fast"),  # noqa: B023
                "ref": lambda: ref.train(text, size, method="reference"),  # noqa: B023
            },
            reps,
            device,
            warmup=1,
        )[0]  # wall-clock medians
        assert fast.merges == ref.merges, "the merges differ"
        print(
            f"train pattern={pattern!s:5} merges={n:3}: fast {t['fast']:.3f} s, "
            f"reference {t['ref']:.3f} s, ref/fast = {t['ref'] / t['fast']:.1f}x"
        )

    tok = BPETokenizer().train(text, vocab_size)
    try:
        hf = tok.to_hf().backend_tokenizer  # the Rust tokenizer, same merges
    except ImportError:
        print("Hugging Face `tokenizers` is not installed: skipping the comparison")
    else:
        assert hf.encode(text).ids == tok.encode(text), "HF encodes differently"

        def encode_ours():
            tok._cache.clear()  # measure encoding, not the chunk cache
            return tok.encode(text)

        t = measure(
            {
                "train ours": lambda: BPETokenizer().train(text, vocab_size),
                "train HF": lambda: hf_train(text, vocab_size),
                "encode ours": encode_ours,
                "encode HF": lambda: hf.encode(text),
            },
            reps,
            device,
            warmup=1,
        )[0]
        for what in ("train", "encode"):
            ours, ref = t[f"{what} ours"], t[f"{what} HF"]
            print(
                f"{what:6} ours {ours * 1e3:8.1f} ms, HF {ref * 1e3:7.1f} ms, "
                f"ours/HF = {ours / ref:.1f}x ({len(text) / ours / 1e6:.2f} M chars/s)"
            )

    ids = torch.tensor(tok.encode(text), device=device)
    sampler = TokenBatchSampler(ids, block_size=256, seed=0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def draw():
        for _ in range(100):
            sampler(64)
        sync()

    t = measure({"draw": draw}, reps, device, warmup=1)[0]["draw"]
    print(f"TokenBatchSampler(64 x 256) on {device}: {100 / t:,.0f} batches/s")


if __name__ == "__main__":
    main()
