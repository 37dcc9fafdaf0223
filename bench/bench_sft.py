"""Instruction tuning of the house model shakespeare-bpe, longer than the chapter.

The recipe of chapters/05-practice/instruction-tuning.ipynb (the chat format of
lmbook.instruct, batches of 16 conversations from make_tasks, AdamW at 2e-3
with 20 warm-up steps and linear decay, gradients clipped to norm 1, no
dropout), for --steps steps, with exact match on the chapter's held-out
conversations measured every --every steps (the schedule is that of the full
run, so an intermediate figure is not what a run of that length would give).
Results are written to bench/results/sft.json (atomically) after every
evaluation.

Usage, from the repository root:
  LMBOOK_DATA_DIR=/work/shared/data nohup nice -n 5 python bench/bench_sft.py \\
      --steps 1500 --every 300 > bench/logs/sft.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from lmbook import GPT, house_model_path  # noqa: E402
from lmbook.data import load_text, train_val_split  # noqa: E402
from lmbook.fileio import atomic_write  # noqa: E402
from lmbook.instruct import (  # noqa: E402
    add_chat_format,
    chat,
    collate_sft,
    encode_chat,
    make_tasks,
    sft_loss,
)

OUT = Path(__file__).resolve().parent / "results" / "sft.json"
BATCH, LR, WARMUP = 16, 2e-3, 20
KIND = {"What": "calc", "How": "count", "Say": "repeat"}


def evaluate(model, tokenizer, test):
    _, transcripts = chat(model.eval(), tokenizer, [c[:1] for c in test])
    hits, calls = {}, []
    for conv, t in zip(test, transcripts, strict=True):
        kind = KIND[conv[0]["content"].split()[0]]
        hits.setdefault(kind, []).append(
            t[-1]["content"].strip() == conv[-1]["content"]
        )
        if kind == "calc":
            calls.append(
                bool(re.fullmatch(r"<calc>\d+[-+*]\d+</calc>", t[1]["content"]))
            )
    result = {k: sum(v) / len(v) for k, v in sorted(hits.items())}
    result["calc well-formed"] = sum(calls) / len(calls)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = house_model_path("shakespeare-bpe")
    tokenizer = AutoTokenizer.from_pretrained(path)
    hf = AutoModelForCausalLM.from_pretrained(path, attention_dropout=0.0, dropout=0.0)
    add_chat_format(tokenizer, hf)
    text = train_val_split(load_text("tinyshakespeare"))[0]
    words = sorted(
        {w.lower() for w in text.split() if w.isalpha() and 3 <= len(w) <= 6}
    )
    train = make_tasks(args.steps * BATCH, words, seed=0)
    seen = {c[0]["content"] for c in train}
    test = [c for c in make_tasks(240, words, seed=1) if c[0]["content"] not in seen][
        :180
    ]
    torch.manual_seed(0)
    gpt = GPT.from_hf(hf).train()
    opt = torch.optim.AdamW(gpt.parameters(), lr=LR, weight_decay=0.0)
    sched = transformers.get_linear_schedule_with_warmup(opt, WARMUP, args.steps)
    results = {"steps": args.steps, "threads": args.threads, "evaluations": []}
    start = time.time()
    for step in range(args.steps):
        convs = train[step * BATCH : (step + 1) * BATCH]
        batch = collate_sft(
            [encode_chat(tokenizer, c) for c in convs], tokenizer.pad_token_id
        )
        logits, _ = gpt(batch["input_ids"])
        loss = sft_loss(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            seconds = time.time() - start
            em = evaluate(gpt.to_hf(), tokenizer, test)
            gpt.train()
            row = {
                "step": step + 1,
                "train_seconds": round(seconds),
                "loss": loss.item(),
                **em,
            }
            results["evaluations"].append(row)
            print(json.dumps(row), flush=True)
            atomic_write(
                OUT, json.dumps(results, indent=1) + "\n", name="the results file"
            )
            start += (
                time.time() - start - seconds
            )  # evaluation time is not training time
    print(f"written {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
