"""Training recipes for nanoGPT's CPU model: nanoGPT's own, and faster ones.

The baseline is the command that nanoGPT's README gives for training the
character-level Shakespeare model on a CPU (Karpathy, nanoGPT, 2022;
``config/train_shakespeare_char.py`` plus ``--block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
--dropout=0.0``), rebuilt in plain PyTorch on `lmbook.gpt.GPT`, which has
nanoGPT's layout, initialisation and parameter names: AdamW (Loshchilov & Hutter,
2019) with betas (0.9, 0.99) and weight decay 0.1 on matrices only, a linear
warmup of 100 steps and a cosine decay to 1e-4 (nanoGPT's ``get_lr``), gradient
clipping at norm 1.0 (Pascanu et al., 2013), random batches of 12 windows from
the first 90% of Tiny Shakespeare, bias-free layers, tied embeddings (Press &
Wolf, 2017) and GPT-2's scaled residual initialisation (Radford et al., 2019).

A `Recipe` changes one of these at a time: the learning rate, a
warmup-stable-decay schedule (Hu et al., 2024; Hägele et al., 2024), the batch
size, the initialisation, AdamW's settings, tying, or the Muon optimizer of the
modded-nanogpt speedrun (Jordan et al., 2024) for the hidden matrices
(`lmbook.muon.Muon`). `train` runs a recipe and times its training steps with
evaluation excluded. The model shape and the validation data never change, so
every recipe is judged on the same task; `load_bench_results` reads what
``bench/bench_speedrun.py`` measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.batching import TokenBatchSampler
from lmbook.checks import check_bool, check_choice, check_float, check_int, tname
from lmbook.data import load_text, train_val_split
from lmbook.gpt import GPT, GPTConfig
from lmbook.muon import Muon
from lmbook.tokenizers import CharTokenizer
from lmbook.utils import set_seed

__all__ = [
    "MODEL",
    "NANOGPT",
    "FAST",
    "Recipe",
    "CharData",
    "Run",
    "load_shakespeare_char",
    "lr_at",
    "make_model",
    "make_optimizers",
    "val_windows",
    "evaluate",
    "train",
    "Session",
    "load_bench_results",
]

# nanoGPT's CPU model: --n_layer=4 --n_head=4 --n_embd=128 --block_size=64
# --dropout=0.0, and bias = False from train.py's defaults (the config keeps it).
MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False)
SCHEDULES = ("cosine", "wsd")
INITS = ("scaled", "plain")
OPTIMIZERS = ("adamw", "muon")
RESULTS = "bench/results/speedrun.json"  # written by bench/bench_speedrun.py
RESULTS_URL = "https://raw.githubusercontent.com/lmbook/lmbook/main/" + RESULTS


@dataclass(frozen=True)
class Recipe:
    """How to train `MODEL`; the defaults are nanoGPT's README command for a CPU."""

    max_iters: int = 2000  # optimizer steps; the schedule ends here
    batch_size: int = 12  # windows of block_size characters per step
    lr: float = 1e-3  # AdamW's peak learning rate (nanoGPT: learning_rate)
    min_lr: float = 1e-4  # learning rate at the end of the decay
    warmup_iters: int = 100  # linear warmup steps
    schedule: str = "cosine"  # "cosine" (nanoGPT) or "wsd": warmup, stable, decay
    decay_frac: float = 0.3  # "wsd": the last decay_frac of the steps decay linearly
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW (beta1, beta2)
    weight_decay: float = 0.1  # AdamW's decoupled decay of dim >= 2 parameters
    grad_clip: float = 1.0  # largest global gradient norm; 0 turns clipping off
    init: str = "scaled"  # "scaled": c_proj std 0.02/sqrt(2 n_layer); "plain": 0.02
    tie_embeddings: bool = True  # lm_head shares the token embedding (nanoGPT)
    optimizer: str = "adamw"  # "adamw", or "muon" for the blocks' matrices
    muon_lr: float = 0.02  # Muon's peak learning rate (same schedule shape)
    muon_momentum: float = 0.95  # Muon's Nesterov momentum
    muon_weight_decay: float = 0.0  # Muon's decoupled weight decay
    fused: bool = False  # torch's fused AdamW kernel: the same update, fewer ops
    seed: int = 1337  # nanoGPT's torch.manual_seed(1337); also the batch order

    def __post_init__(self):
        check_int("max_iters", self.max_iters, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, 0, low_open=True)
        check_float("min_lr", self.min_lr, 0, self.lr)
        check_int("warmup_iters", self.warmup_iters, 0, self.max_iters)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_float("decay_frac", self.decay_frac, 0, 1, low_open=True)
        if not isinstance(self.betas, tuple | list) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair of floats, got {self.betas!r}")
        for i, b in enumerate(self.betas):
            check_float(f"betas[{i}]", b, 0, 1, high_open=True)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_float("weight_decay", self.weight_decay, 0)
        check_float("grad_clip", self.grad_clip, 0)
        check_choice("init", self.init, INITS)
        check_bool("tie_embeddings", self.tie_embeddings)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_float("muon_lr", self.muon_lr, 0, low_open=True)
        check_float("muon_momentum", self.muon_momentum, 0, 1, high_open=True)
        check_float("muon_weight_decay", self.muon_weight_decay, 0)
        check_bool("fused", self.fused)
        check_int("seed", self.seed, 0, 2**32 - 1)

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed, e.g. ``NANOGPT.replace(lr=2e-3)``."""
        return dataclasses.replace(self, **changes)


NANOGPT = Recipe()
# The faster recipe of the chapter: the changes that paid in the ablation of
# bench/bench_speedrun.py (Muon for the blocks' matrices, AdamW's lr 3e-3,
# warmup-stable-decay, batch 24), nanoGPT's choices for the rest. 400 steps
# leave a margin: with 350, one seed in four missed the target of 1.89.
FAST = Recipe(
    max_iters=400,
    batch_size=24,
    lr=3e-3,
    min_lr=0.0,
    warmup_iters=30,
    schedule="wsd",
    decay_frac=0.3,
    optimizer="muon",
    muon_lr=0.03,
)


class CharData(NamedTuple):
    """Tiny Shakespeare as character ids: nanoGPT's first 90% and last 10%."""

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    tokenizer: CharTokenizer  # the 65 characters of the whole text, sorted


def load_shakespeare_char() -> CharData:
    """nanoGPT's ``data/shakespeare_char/prepare.py``: sorted characters, 90/10."""
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.from_text(text)
    train_text, val_text = train_val_split(text, 0.9)
    as_ids = lambda s: torch.tensor(tok.encode(s), dtype=torch.long)  # noqa: E731
    return CharData(as_ids(train_text), as_ids(val_text), tok)


def _check_recipe(recipe: object) -> Recipe:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {tname(recipe)}")
    return recipe


def lr_at(it: int, recipe: Recipe) -> float:
    """AdamW's learning rate at iteration `it` (0-based) of `recipe`.

    "cosine" is nanoGPT's ``get_lr``: ``lr * (it + 1) / (warmup_iters + 1)``
    during warmup, then ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with
    p from 0 at warmup_iters to 1 at max_iters, and min_lr after. "wsd" warms up
    the same way, holds lr, and over the last ``decay_frac`` of the steps falls
    linearly to min_lr. Muon's rate is ``muon_lr * lr_at(it) / lr``.
    """
    check_int("it", it, 0)
    r = _check_recipe(recipe)
    if it < r.warmup_iters:
        return r.lr * (it + 1) / (r.warmup_iters + 1)
    if it > r.max_iters:
        return r.min_lr
    if r.schedule == "cosine":
        p = (it - r.warmup_iters) / max(1, r.max_iters - r.warmup_iters)
        return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (r.lr - r.min_lr)
    decay_start = r.max_iters - r.decay_frac * r.max_iters
    if it < decay_start:
        return r.lr
    p = (it - decay_start) / (r.max_iters - decay_start)
    return r.lr + p * (r.min_lr - r.lr)


def make_model(recipe: Recipe, vocab_size: int = 65) -> GPT:
    """`MODEL` with the recipe's tying and initialisation, seeded by recipe.seed.

    lmbook's GPT initialises as nanoGPT does: N(0, 0.02) for every matrix and
    embedding, zero biases, unit norm gains, and std 0.02 / sqrt(2 n_layer) for
    the residual projections (``c_proj``). ``init="plain"`` multiplies those back
    by sqrt(2 n_layer), so the two inits differ in that scale and nothing else.
    """
    r = _check_recipe(recipe)
    check_int("vocab_size", vocab_size, 1)
    set_seed(r.seed)
    config = GPTConfig(vocab_size=vocab_size, tie_embeddings=r.tie_embeddings, **MODEL)
    model = GPT(config)
    if r.init == "plain":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("c_proj.weight"):
                    p.mul_(math.sqrt(2 * config.n_layer))
    return model


def _muon_params(model: nn.Module) -> list[nn.Parameter]:
    """The blocks' 2-D weights; embeddings, head and norms stay with AdamW."""
    return [
        p
        for n, p in model.named_parameters()
        if n.startswith("transformer.h.") and p.dim() == 2
    ]


def make_optimizers(model: nn.Module, recipe: Recipe) -> list[torch.optim.Optimizer]:
    """nanoGPT's AdamW, plus `Muon` when recipe.optimizer="muon".

    AdamW has nanoGPT's two groups: weight decay on every parameter with
    dim >= 2, none on the rest (norm gains, biases). With Muon, the blocks'
    matrices move to Muon and AdamW keeps the embeddings (and the tied head).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {tname(model)}")
    r = _check_recipe(recipe)
    muon = _muon_params(model) if r.optimizer == "muon" else []
    taken = {id(p) for p in muon}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": r.weight_decay},
        {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0},
    ]
    kw = {"fused": True} if r.fused else {}
    opts = [torch.optim.AdamW(groups, lr=r.lr, betas=r.betas, **kw)]
    if muon:
        opts.append(
            Muon(
                muon,
                lr=r.muon_lr,
                momentum=r.muon_momentum,
                weight_decay=r.muon_weight_decay,
            )
        )
    for opt in opts:  # the peak rate of each group, scaled by the schedule
        for group in opt.param_groups:
            group["peak_lr"] = group["lr"]
    return opts


def val_windows(val: torch.Tensor, block_size: int = MODEL["block_size"]) -> tuple:
    """The validation split cut into non-overlapping windows: (x, y), each (N, T).

    Every character of the split (but the last few) is predicted once, at every
    position of the window equally often, which is what nanoGPT's random
    windows estimate; for Tiny Shakespeare's val split, N = 1742 windows of 64.
    """
    if not isinstance(val, torch.Tensor) or val.dim() != 1:
        raise TypeError("val must be a 1-D tensor of token ids")
    check_int("block_size", block_size, 1)
    n = (val.numel() - 1) // block_size
    if n < 1:
        raise ValueError(
            f"val has {val.numel()} tokens; block_size={block_size} needs at "
            f"least {block_size + 1}"
        )
    x = val[: n * block_size].view(n, block_size)  # (N, T)
    y = val[1 : n * block_size + 1].view(n, block_size)  # (N, T)
    return x.long(), y.long()


@torch.no_grad()
def evaluate(model: GPT, windows: tuple, chunk: int = 256) -> float:
    """Mean cross-entropy (nats per character) of `model` over all `windows`."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {tname(model)}")
    x, y = windows
    check_int("chunk", chunk, 1)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(0, x.size(0), chunk):
            logits, _ = model(x[i : i + chunk])  # (b, T, V)
            loss = F.cross_entropy(
                logits.flatten(0, 1), y[i : i + chunk].flatten(), reduction="sum"
            )
            total += loss.item()
    finally:
        model.train(was_training)
    return total / y.numel()


@dataclass
class Run:
    """What `train` returns: the model, its losses and timings."""

    recipe: Recipe
    model: GPT
    losses: list[float]  # training loss of every step
    grad_norms: list[float]  # global gradient norm of every step, before clipping
    evals: list[tuple[int, float, float, float]]  # (step, wall s, cpu s, val loss)
    wall: float  # seconds spent in training steps (evaluation excluded)
    cpu: float  # CPU seconds of this process (all threads) in training steps

    def time_to(self, target: float) -> tuple[int, float, float] | None:
        """(step, wall s, cpu s) of the first evaluation at or below target."""
        check_float("target", target, 0, low_open=True)
        for step, wall, cpu, val in self.evals:
            if val <= target:
                return step, wall, cpu
        return None


class Session:
    """A recipe's training in progress: ``advance(n)`` runs its next n steps.

    Two sessions advanced in turns, a few steps each, share the machine's load
    evenly, which is how ``bench/bench_speedrun.py`` races two recipes. One
    step is nanoGPT's loop body: set the scheduled learning rates, draw a batch,
    forward, backward, clip, step, zero the gradients, read the loss. After each
    step number in `eval_steps` (1-based) the validation loss over `windows`
    (default: all of ``val_windows(data.val)``) is measured, off the clocks.
    `device` (default: the CPU) holds the model and the batches; reading the
    loss each step waits for the device, so the timings stay right on a GPU.
    """

    def __init__(
        self,
        recipe: Recipe,
        data: CharData,
        *,
        steps: int | None = None,
        eval_steps: Iterable[int] = (),
        windows: tuple | None = None,
        device: torch.device | str | None = None,
    ):
        r = _check_recipe(recipe)
        if not isinstance(data, CharData):
            raise TypeError(f"data must be a CharData, got {tname(data)}")
        self.steps = r.max_iters if steps is None else check_int("steps", steps, 1)
        if isinstance(eval_steps, int) or not isinstance(eval_steps, Iterable):
            got = tname(eval_steps)
            raise TypeError(
                f"eval_steps must be an iterable of step numbers, got {got}"
            )
        self.eval_steps = {
            check_int("eval_steps[i]", s, 1, self.steps) for s in eval_steps
        }
        if self.eval_steps and windows is None:
            windows = val_windows(data.val)
        device = torch.device("cpu" if device is None else device)
        model = make_model(r, data.tokenizer.vocab_size).to(device)
        self.windows = None if windows is None else tuple(w.to(device) for w in windows)
        self.opts = make_optimizers(model, r)
        self.groups = [g for opt in self.opts for g in opt.param_groups]
        train_ids = data.train.to(device)
        self.sampler = TokenBatchSampler(train_ids, MODEL["block_size"], seed=r.seed)
        self.run = Run(r, model, [], [], [], 0.0, 0.0)

    @property
    def done(self) -> bool:
        """True once all `steps` have run."""
        return len(self.run.losses) >= self.steps

    def advance(self, n: int) -> Run:
        """Run the next n steps (fewer at the end); return the `Run` so far."""
        check_int("n", n, 1)
        run, r, model = self.run, self.run.recipe, self.run.model
        model.train()
        for _ in range(min(n, self.steps - len(run.losses))):
            it = len(run.losses)
            t0, c0 = time.perf_counter(), time.process_time()
            scale = lr_at(it, r) / r.lr
            for g in self.groups:
                g["lr"] = g["peak_lr"] * scale
            x, y = self.sampler(r.batch_size)
            _, loss = model(x, y)
            loss.backward()
            max_norm = r.grad_clip if r.grad_clip > 0 else math.inf
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            for opt in self.opts:
                opt.step()
            for opt in self.opts:
                opt.zero_grad(set_to_none=True)
            run.losses.append(loss.item())
            run.grad_norms.append(norm.item())
            run.wall += time.perf_counter() - t0
            run.cpu += time.process_time() - c0
            if not math.isfinite(run.losses[-1]):
                raise FloatingPointError(f"loss is {run.losses[-1]} at step {it + 1}")
            if it + 1 in self.eval_steps:
                val = evaluate(model, self.windows)
                run.evals.append((it + 1, run.wall, run.cpu, val))
        return run


def train(
    recipe: Recipe,
    data: CharData,
    *,
    steps: int | None = None,
    eval_steps: Iterable[int] = (),
    windows: tuple | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> Run:
    """Train `MODEL` with `recipe` on `data` for `steps` (default max_iters).

    A `Session` run to its end, with a tqdm progress bar if `progress`; see
    `Session` for the loop, the evaluations and the clocks.
    """
    check_bool("progress", progress)
    session = Session(
        recipe,
        data,
        steps=steps,
        eval_steps=eval_steps,
        windows=windows,
        device=device,
    )
    if not progress:
        return session.advance(session.steps)
    from tqdm.auto import tqdm

    with tqdm(total=session.steps, leave=False) as bar:
        while not session.done:
            session.advance(1)
            bar.update(1)
    return session.run


def load_bench_results(path: str | Path | None = None) -> dict:
    """The results of ``bench/bench_speedrun.py``, as the JSON dict it wrote.

    From `path`, else from the repository's ``bench/results/speedrun.json`` when
    the package runs from a clone, else (e.g. on Colab) from its copy on GitHub.
    """
    if path is None:
        local = Path(__file__).resolve().parents[1] / RESULTS
        if not local.is_file():
            import urllib.request

            with urllib.request.urlopen(RESULTS_URL, timeout=30) as response:
                return json.loads(response.read().decode("utf-8"))
        path = local
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or Path, got {tname(path)}")
    return json.loads(Path(path).read_text(encoding="utf-8"))
