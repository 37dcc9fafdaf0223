"""Train the book's house models, reproducibly, from the book's own data.

    python tools/train_house_models.py shakespeare-char [--steps N] [--out DIR]

Each house model is a `Recipe` in ``RECIPES``: its corpus, tokenizer, model shape
and optimisation. A run seeds everything from the recipe, trains for a fixed
number of steps (never until a time limit), saves the model in Hugging Face's
format with its tokenizer, measures the validation loss again from the saved
weights, and writes ``training_log.json`` beside them: the command, seed, wall
time, torch version, CPU, thread count and the loss curve. Adding a model means
adding a recipe (and, for a new tokenizer or architecture, one builder function).

The optimiser is AdamW (Loshchilov & Hutter, 2019), decaying only 2-D matrices,
with a warmup-stable-decay schedule (Hägele et al., 2024, "Scaling Laws and
Compute-Optimal Training Beyond Fixed Training Durations"). ``torch.optim.Muon``
was measured and left out: its Newton-Schulz step runs in bfloat16, which CPUs
without bf16 instructions emulate slowly (12 s per optimizer step against
AdamW's 0.05 s, for a 2.7M-parameter GPT on one AVX2 core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing lmbook

from lmbook import (  # noqa: E402
    GPT,
    BPETokenizer,
    CharTokenizer,
    GPTConfig,
    load_text,
    train_val_split,
)
from lmbook.fileio import atomic_write  # noqa: E402
from lmbook.utils import set_seed  # noqa: E402

HOUSE_DIR = ROOT / "lmbook" / "house_models"
FIRST_STEPS = 5  # steps whose losses are logged one by one (tests replay them)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a house model: data, shape and optimisation."""

    name: str  # folder name under lmbook/house_models/
    corpus: str  # lmbook.load_text name
    tokenizer: str  # key of TOKENIZERS
    arch: str  # key of ARCHITECTURES
    model: dict  # keyword arguments of the architecture's config (no vocab_size)
    steps: int  # optimizer steps of the full run
    batch_size: int  # sequences per step
    lr: float  # peak learning rate
    warmup_steps: int  # linear warmup from 0
    decay_fraction: float  # last fraction of steps decaying linearly to 0 (WSD)
    weight_decay: float = 0.1  # on 2-D matrices only
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW
    grad_clip: float = 1.0  # global gradient norm
    seed: int = 1337
    threads: int = 1  # torch.set_num_threads of the script (tests keep their own)
    train_fraction: float = 0.9  # the validation set is the rest (the end)
    log_interval: int = 10  # train loss (mean since the last record) every N steps
    eval_interval: int = 250  # val loss on `eval_windows` windows every N steps
    eval_windows: int = 256  # windows of block_size, evenly spaced over val
    description: str = ""
    extra: dict = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "shakespeare-char": Recipe(
        name="shakespeare-char",
        corpus="tinyshakespeare",
        tokenizer="char",
        arch="gpt2",
        model=dict(block_size=128, n_layer=6, n_head=6, n_embd=192, dropout=0.1),
        steps=3000,
        batch_size=32,
        lr=2e-3,
        warmup_steps=100,
        decay_fraction=0.3,
        threads=2,
        eval_interval=250,
        eval_windows=128,
        description="a GPT-2-layout character model of Tiny Shakespeare",
    ),
    "shakespeare-bpe": Recipe(
        name="shakespeare-bpe",
        corpus="tinyshakespeare",
        tokenizer="bpe1024",
        arch="llama",
        # llama-mini: RMSNorm, RoPE, SwiGLU (n_inner 512), 6 query heads sharing
        # 2 key/value heads; tied embeddings, as small Llama-family models do
        model=dict(
            block_size=128,
            n_layer=6,
            n_head=6,
            n_kv_head=2,
            n_embd=192,
            dropout=0.1,
            tie_embeddings=True,
        ),
        steps=1600,
        batch_size=32,
        lr=2e-3,
        warmup_steps=100,
        decay_fraction=0.3,
        threads=1,
        eval_interval=200,
        eval_windows=128,
        description="a Llama-layout byte-level BPE model of Tiny Shakespeare",
        extra=dict(vocab_size=1024),
    ),
}


# ---------------------------------------------------------------- tokenizers
def char_tokenizer(text: str):
    """(lmbook tokenizer, Hugging Face fast tokenizer) with one id per character.

    Ids are `lmbook.CharTokenizer.from_text`'s: the sorted set of characters.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ours = CharTokenizer.from_text(text)
    hf = Tokenizer(models.WordLevel(vocab=dict(ours.stoi), unk_token=None))
    # split before every character, "\n" and " " included, keeping each as a token
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()  # join tokens with nothing between them
    fast = PreTrainedTokenizerFast(
        tokenizer_object=hf, clean_up_tokenization_spaces=False
    )
    return ours, fast


def bpe1024_tokenizer(text: str):
    """(lmbook BPETokenizer, its Hugging Face fast tokenizer), 1024 ids.

    GPT-2's pre-tokenizer pattern and 768 merges learned from the training split
    only (the first 90% of the text), so no validation text shapes the merges.
    """
    train_text, _ = train_val_split(text, 0.9)
    ours = BPETokenizer().train(train_text, 1024)
    return ours, ours.to_hf()


TOKENIZERS: dict[str, Callable] = {"char": char_tokenizer, "bpe1024": bpe1024_tokenizer}


# ------------------------------------------------------------- architectures
def gpt2_model(recipe: Recipe, vocab_size: int) -> GPT:
    """lmbook's GPT (GPT-2 layout), saved as a transformers GPT2LMHeadModel."""
    return GPT(GPTConfig(vocab_size=vocab_size, **recipe.model))


def llama_model(recipe: Recipe, vocab_size: int) -> GPT:
    """lmbook's GPT with Llama's block, saved as a transformers LlamaForCausalLM."""
    config = GPTConfig.from_preset("llama-mini", vocab_size=vocab_size, **recipe.model)
    assert config.is_llama
    return GPT(config)


ARCHITECTURES: dict[str, Callable] = {"gpt2": gpt2_model, "llama": llama_model}


# ---------------------------------------------------------------- training
def lr_factor(step: int, recipe: Recipe) -> float:
    """Multiplier of the peak lr at `step`: linear warmup, flat, linear decay to 0."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    decay_start = recipe.steps - int(recipe.decay_fraction * recipe.steps)
    if step < decay_start:
        return 1.0
    return max(0.0, (recipe.steps - step) / (recipe.steps - decay_start))


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.AdamW:
    """AdamW; weight decay on 2-D matrices, none on biases and LayerNorm gains."""
    params = list(model.parameters())  # a tied weight appears once
    groups = [
        {
            "params": [p for p in params if p.dim() >= 2],
            "weight_decay": recipe.weight_decay,
        },
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=recipe.betas)


def get_batch(ids: torch.Tensor, batch_size: int, T: int, gen: torch.Generator):
    """Random windows: x, y (B, T) with y the next token of x."""
    starts = torch.randint(len(ids) - T, (batch_size,), generator=gen)
    x = torch.stack([ids[s : s + T] for s in starts.tolist()])  # (B, T)
    y = torch.stack([ids[s + 1 : s + 1 + T] for s in starts.tolist()])  # (B, T)
    return x, y


@torch.no_grad()
def val_loss(model, ids: torch.Tensor, T: int, max_windows: int | None = None):
    """Mean cross-entropy (nats/token) over non-overlapping windows of T tokens.

    Window i reads ids[i*T : i*T+T] and predicts ids[i*T+1 : i*T+T+1]; a last,
    shorter window covers the tail, so every token but the first is predicted once.
    max_windows: use that many full windows evenly spaced over ids (a quick check).
    """
    was_training = model.training
    model.eval()
    n = len(ids) - 1
    starts = list(range(0, n, T))
    if max_windows is not None and max_windows < len(starts):
        stride = len(starts) // max_windows
        starts = starts[: max_windows * stride : stride]
    total, count = 0.0, 0
    full = [s for s in starts if s + T <= n]
    for k in range(0, len(full), 64):
        chunk = full[k : k + 64]
        x = torch.stack([ids[s : s + T] for s in chunk])  # (B, T)
        y = torch.stack([ids[s + 1 : s + T + 1] for s in chunk])  # (B, T)
        logits, _ = model(x)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        count += y.numel()
    for s in (s for s in starts if s + T > n):  # the tail
        logits, _ = model(ids[s:n][None])
        total += F.cross_entropy(logits[0], ids[s + 1 : n + 1], reduction="sum")
        count += n - s
    model.train(was_training)
    return float(total) / count


def prepare(recipe: Recipe):
    """(train ids, val ids, lmbook tokenizer, HF tokenizer) of the recipe's corpus."""
    text = load_text(recipe.corpus)
    ours, hf = TOKENIZERS[recipe.tokenizer](text)
    train_text, val_text = train_val_split(text, recipe.train_fraction)
    train_ids = torch.tensor(ours.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(ours.encode(val_text), dtype=torch.long)
    return train_ids, val_ids, ours, hf


def train(
    recipe: Recipe,
    train_ids,
    val_ids,
    vocab_size: int,
    stop_after=None,
    log: Callable[[str], None] = lambda s: None,
):
    """Train from the recipe's seed; return (model, curve).

    stop_after: stop after that many steps (the schedule still assumes
    recipe.steps), for tests that replay the start of a run.
    curve: {"train": [[step, loss], ...], "val": [[step, loss], ...]}; each train
    loss is the mean over the steps since the previous record ([10, x] averages
    steps 6..10); the first FIRST_STEPS steps are recorded one by one.
    """
    set_seed(recipe.seed)
    model = ARCHITECTURES[recipe.arch](recipe, vocab_size)
    model.train()
    opt = make_optimizer(model, recipe)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(recipe.seed)
    T = model.config.block_size
    curve = {"train": [], "val": []}
    steps = recipe.steps if stop_after is None else min(stop_after, recipe.steps)
    running, t0 = [], time.perf_counter()
    for step in range(steps):
        f = lr_factor(step, recipe)
        for g in opt.param_groups:
            g["lr"] = recipe.lr * f
        x, y = get_batch(train_ids, recipe.batch_size, T, gen)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        running.append(loss.item())
        done = step + 1
        if done % recipe.log_interval == 0 or done == steps or done <= FIRST_STEPS:
            curve["train"].append([done, sum(running) / len(running)])
            running = []
        if done % recipe.eval_interval == 0 or done == recipe.steps:
            v = val_loss(model, val_ids, T, recipe.eval_windows)
            curve["val"].append([done, v])
            log(f"step {done}/{steps} val {v:.4f} ({time.perf_counter() - t0:.0f} s)")
        if done % 50 == 0:
            log(
                f"step {done}/{steps} train {curve['train'][-1][1]:.4f} "
                f"lr x{f:.3f} ({time.perf_counter() - t0:.0f} s)"
            )
    return model.eval(), curve


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CARD = """\
---
library_name: transformers
pipeline_tag: text-generation
license: mit
---

# {name}

{description_cap}, saved in Hugging Face's format
with {tokenizer_kind}. It is one of the book's "house models",
trained by `tools/train_house_models.py` from the book's own data and shipped in
the `lmbook` package:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from lmbook import GPT, house_model_path

folder = house_model_path("{name}")
model = AutoModelForCausalLM.from_pretrained(folder)  # {hf_class}
tokenizer = AutoTokenizer.from_pretrained(folder)  # {tokenizer_comment}
gpt = GPT.from_pretrained(folder)  # the same weights in lmbook's GPT
```

- **Data:** {corpus}; the first {train_pct}% of the characters for training, the
  last {val_pct}% for validation.
- **Tokenizer:** {tokenizer_line}
- **Shape:** {shape_line}
- **Parameters:** {parameters:,} (the tied input/output embedding counted once).
- **Weights:** `model.safetensors`, float32, {size_mb:.1f} MB.
- **Validation loss: {val_loss:.2f} nats/{unit}** over {val_tokens:,} {units}{per_char}.
- **Training:** {steps} steps of {batch_size} x {block_size} {units} ({tokens_m:.1f}M
  {units}, {epochs:.1f} epochs), seed {seed}.
- **Optimiser:** AdamW, lr {lr:g}, betas {betas}, weight decay {weight_decay} on
  matrices, gradient clipping at {grad_clip}; {warmup_steps} warmup steps,
  then flat, then a linear decay to 0 over the last {decay_pct}% of the steps.
- **Wall time:** {wall_min:.0f} min ({wall_time_s:.0f} s) on {threads} thread(s).
- **Hardware:** {cpu}, shared with other jobs.
- **Software:** torch {torch}, Python {python}.

The validation loss is the mean cross-entropy over every {unit_word} of the
validation split after its first, in non-overlapping windows of {block_size}
{units} (the last window shorter), computed from the stored weights.
`tests/test_house_models.py` recomputes it with `transformers` alone.

## Reproduce

```bash
LMBOOK_DATA_DIR=/path/to/data {command}
```

`training_log.json` records the full recipe, the loss curve (train loss every
{log_interval} steps, the first {first_steps} one by one; validation loss
on {eval_windows} windows every {eval_interval} steps), the command, seed,
wall time, torch version, CPU and thread count. A rerun repeats the curve up to
float32 rounding, which differs a little between CPUs and thread counts.

## Sample

{sample_n} {units} after the prompt "ROMEO:", sampled at temperature 0.8 with
`torch.Generator().manual_seed(0)` (another CPU may sample other text):

```text
{sample}
```

## Limitations

A small model trained for {wall_min:.0f} minutes on a shared CPU: it imitates the layout
of a play (speaker names, short verse lines) and spells common words, but many
words are misspelt and the text has no meaning. {coverage}
"""

# what the card says of each tokenizer
TOKENIZER_CARD = {
    "char": dict(
        unit="char",
        unit_word="character",
        units="characters",
        tokenizer_kind="a character-level tokenizer",
        tokenizer_comment="one token per character",
        tokenizer_line="{vocab_size} characters, with the ids of\n"
        "  `lmbook.CharTokenizer.from_text(text)`.",
        coverage="It knows only the {vocab_size}\ncharacters of Tiny Shakespeare; "
        "any other character cannot be encoded.",
    ),
    "bpe1024": dict(
        unit="token",
        unit_word="token",
        units="tokens",
        tokenizer_kind="a byte-level BPE tokenizer",
        tokenizer_comment="byte-level BPE, {vocab_size} ids",
        tokenizer_line="byte-level BPE with GPT-2's pre-tokenizer pattern, "
        "{vocab_size} ids (256\n  bytes and {merges} merges learned from the "
        "training split by\n  `lmbook.BPETokenizer().train(text, {vocab_size})`); "
        "no special tokens.",
        coverage="Byte-level BPE\nencodes any text, but the model has seen only "
        "Tiny Shakespeare.",
    ),
}


def sample_text(folder: Path, prompt: str, n: int) -> str:
    """Prompt + n characters sampled from the saved model (temperature 0.8, seed 0)."""
    from transformers import AutoTokenizer

    model = GPT.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    idx = torch.tensor([tokenizer(prompt)["input_ids"]])  # (1, T)
    gen = torch.Generator().manual_seed(0)
    out = model.generate(idx, n, temperature=0.8, generator=gen)  # (1, T + n)
    return tokenizer.decode(out[0].tolist())


def bits_per_char(record: dict) -> float:
    """A run's validation loss in bits per character of the validation text.

    nats/token x tokens / (characters x ln 2): the whole validation split costs
    the same number of bits whatever the tokenizer, so models compare.
    """
    r = record["recipe"]
    val_text = train_val_split(load_text(r["corpus"]), r["train_fraction"])[1]
    chars = len(val_text) - 1  # the first character is not predicted
    return record["val_loss"] * record["val_tokens"] / (chars * math.log(2))


def write_model_card(out: Path, record: dict) -> None:
    """Write out/README.md from a training record (training_log.json)."""
    r, m = record["recipe"], record["recipe"]["model"]
    tokens = record["steps"] * r["batch_size"] * m["block_size"]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    train_chars = int(len(load_text(r["corpus"])) * r["train_fraction"])
    size = (out / "model.safetensors").stat().st_size
    fields = {**r, **m, **{k: v for k, v in record.items() if k != "recipe"}}
    fields.update(
        description_cap=r["description"][:1].upper() + r["description"][1:],
        train_pct=round(100 * r["train_fraction"]),
        val_pct=round(100 * (1 - r["train_fraction"])),
        vocab_size=config["vocab_size"],
        size_mb=size / 1e6,
        tokens_m=tokens / 1e6,
        epochs=tokens / train_chars,
        wall_min=record["wall_time_s"] / 60,
        decay_pct=round(100 * r["decay_fraction"]),
        first_steps=FIRST_STEPS,
        betas=tuple(r["betas"]),
    )
    words = {
        k: v.format(vocab_size=config["vocab_size"], merges=config["vocab_size"] - 256)
        for k, v in TOKENIZER_CARD[r["tokenizer"]].items()
    }
    fields.update(words)
    if config.get("model_type") == "llama":
        fields["hf_class"] = "LlamaForCausalLM"
        fields["shape_line"] = (
            f"Llama's block (RMSNorm, RoPE, SwiGLU), {m['n_layer']} layers,\n"
            f"  {m['n_head']} query heads sharing {m['n_kv_head']} key/value heads, "
            f"n_embd {m['n_embd']},\n  MLP width {config['intermediate_size']}, "
            f"block_size {m['block_size']}, dropout {m['dropout']}, tied embeddings."
        )
    else:
        fields["hf_class"] = "GPT2LMHeadModel"
        fields["shape_line"] = (
            f"GPT-2's block, {m['n_layer']} layers, {m['n_head']} heads, "
            f"n_embd {m['n_embd']},\n  block_size {m['block_size']}, "
            f"dropout {m['dropout']}."
        )
    train_tokens = record.get("train_tokens", train_chars)
    if words["unit"] != "char" and "train_tokens" not in record:
        from transformers import AutoTokenizer

        text = load_text(r["corpus"])
        train_text = train_val_split(text, r["train_fraction"])[0]
        train_tokens = len(AutoTokenizer.from_pretrained(out)(train_text).input_ids)
    fields["epochs"] = tokens / train_tokens
    fields["per_char"] = ""
    if words["unit"] != "char":  # the loss per character, comparable across models
        fields["per_char"] = f" ({bits_per_char(record):.3f} bits per character)"
    fields["sample_n"] = 400
    fields["sample"] = sample_text(out, "ROMEO:", 400)
    atomic_write(out / "README.md", CARD.format(**fields))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, help="override the recipe's step count")
    parser.add_argument("--out", type=Path, help="folder (default: the package's)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="override recipe fields for probes, e.g. lr=1e-3",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="rewrite README.md from training_log.json; no training",
    )
    args = parser.parse_args(argv)
    recipe = RECIPES[args.name]
    if args.card_only:
        out = args.out or HOUSE_DIR / recipe.name
        record = json.loads((out / "training_log.json").read_text(encoding="utf-8"))
        write_model_card(out, record)
        return
    overrides = {"steps": args.steps} if args.steps else {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value)
    model_over = {k: overrides.pop(k) for k in list(overrides) if k in recipe.model}
    model = {**recipe.model, **model_over}
    recipe = dataclasses.replace(recipe, **overrides, model=model)
    out = args.out or HOUSE_DIR / recipe.name
    command = "python tools/train_house_models.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )

    def log(msg):
        print(msg, flush=True)

    torch.set_num_threads(recipe.threads)
    log(f"{command}\n{recipe}")
    train_ids, val_ids, ours, hf = prepare(recipe)
    start = time.time()
    model, curve = train(recipe, train_ids, val_ids, ours.vocab_size, log=log)
    wall = time.time() - start
    model.save_pretrained(out)
    hf.save_pretrained(out)
    saved = GPT.from_pretrained(out)  # measure the stored weights, not the live ones
    final = val_loss(saved, val_ids, saved.config.block_size)
    log(f"final val loss {final:.4f} nats/token from {out}, {wall:.0f} s of training")
    record = {
        "name": recipe.name,
        "command": command,
        "recipe": dataclasses.asdict(recipe),
        "seed": recipe.seed,
        "steps": recipe.steps,
        "parameters": saved.num_parameters(),
        "val_loss": final,
        "val_tokens": len(val_ids) - 1,
        "train_tokens": len(train_ids),
        "wall_time_s": round(wall, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "curve": curve,
    }
    atomic_write(out / "training_log.json", json.dumps(record, indent=1) + "\n")
    write_model_card(out, record)


if __name__ == "__main__":
    main()
