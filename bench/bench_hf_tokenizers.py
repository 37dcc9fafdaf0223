"""Benchmark the setting of the chapter "Tokenizers and datasets": lmbook's BPE
against Hugging Face `tokenizers` on Tiny Shakespeare's splits.

Ratios, measured side by side in one process (medians of interleaved runs):
  train   lmbook's BPE trainer (`BPETokenizer.train`) and the library's
          `BpeTrainer` with the ByteLevel pre-tokenizer, both on the whole
          training split; the library's WordPiece and Unigram trainers on its
          lines (the chapter trains them on the first 200,000 characters);
  encode  the validation split with the same merges (ids asserted equal):
          lmbook with its chunk cache emptied first ("cold") and kept ("warm"),
          the library's `encode` on the whole string and `encode_batch` on
          its lines; and the same on the validation text with its characters
          shuffled, where almost every chunk is new, so the cache cannot help.

Usage: LMBOOK_DATA_DIR=/work/shared/data python bench/bench_hf_tokenizers.py
       [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=2, help="RAYON_NUM_THREADS and torch threads"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer reps, no Unigram trainer"
    )
    return parser.parse_args()


ARGS = parse_args()
os.environ["RAYON_NUM_THREADS"] = str(ARGS.threads)  # before `tokenizers` starts
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lmbook from the checkout

import torch  # noqa: E402
from timing import measure  # noqa: E402  (bench/timing.py)
from tokenizers import (  # noqa: E402
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from lmbook import load_text, train_val_split  # noqa: E402
from lmbook.tokenizers import BPETokenizer  # noqa: E402

V = 1000  # the chapter's vocabulary size
CPU = torch.device("cpu")


def library_bpe(text: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=V,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text], trainer)
    return tok


def library_wordpiece(lines: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=V, special_tokens=special, show_progress=False
    )
    tok.train_from_iterator(lines, trainer)
    return tok


def library_unigram(lines: list[str]) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=V, special_tokens=["<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(lines, trainer)
    return tok


def report(title: str, wall: dict, cpu: dict, base: str) -> None:
    print(title)
    for name in wall:
        ratio = wall[name] / wall[base]
        print(
            f"  {name:24s} wall {wall[name] * 1e3:8.1f} ms ({ratio:5.2f} x {base}),"
            f" cpu {cpu[name] * 1e3:8.1f} ms"
        )


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    reps = 3 if ARGS.quick else 7
    train_text, val_text = train_val_split(load_text("tinyshakespeare"), 0.9)
    lines = train_text.splitlines()
    print(
        f"threads={ARGS.threads} reps={reps} V={V} training split "
        f"{len(train_text):,} chars, validation {len(val_text):,} chars"
    )

    train_fns = {
        "lmbook BPE": lambda: BPETokenizer().train(train_text, V),
        "library BPE": lambda: library_bpe(train_text),
        "library WordPiece": lambda: library_wordpiece(lines),
    }
    if not ARGS.quick:
        train_fns["library Unigram"] = lambda: library_unigram(lines)
    wall, cpu = measure(train_fns, 3 if not ARGS.quick else 1, CPU, warmup=0)
    report("train (whole training split)", wall, cpu, "lmbook BPE")

    ours = BPETokenizer().train(train_text, V)
    backend = ours.to_hf().backend_tokenizer  # the same merges, in Rust
    chars = list(val_text)
    random.Random(0).shuffle(chars)
    texts = {"validation": val_text, "shuffled validation": "".join(chars)}
    for label, text in texts.items():
        pieces = text.splitlines(keepends=True)
        ids = ours.encode(text)
        assert backend.encode(text).ids == ids, "the library encodes differently"
        assert [i for e in backend.encode_batch(pieces) for i in e.ids] == ids
        chunks = ours.pre_tokenize(text)

        def cold(text=text):
            ours._cache.clear()
            return ours.encode(text)

        fns = {
            "lmbook cold cache": cold,
            "lmbook warm cache": lambda text=text: ours.encode(text),
            "library encode": lambda text=text: backend.encode(text),
            "library encode_batch": lambda p=pieces: backend.encode_batch(p),
        }
        wall, cpu = measure(fns, reps, CPU, warmup=1)
        report(
            f"encode {label}: {len(ids):,} tokens, {len(chunks):,} chunks, "
            f"{len(set(chunks)):,} distinct",
            wall,
            cpu,
            "lmbook cold cache",
        )


if __name__ == "__main__":
    main()
