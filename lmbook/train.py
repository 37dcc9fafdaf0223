"""A compact trainer that knows nothing about the model it trains (as minGPT's).

The model is any ``nn.Module`` whose ``forward(x, y)`` returns ``(logits, loss)``.
It follows AdamW with decoupled weight decay (Loshchilov & Hutter, "Decoupled
Weight Decay Regularization", 2019), a linear warmup (Goyal et al., 2017) then the
cosine decay of SGDR (Loshchilov & Hutter, 2017), clipping of the global gradient
norm (Pascanu et al., 2013), and mixed precision on CUDA (Micikevicius et al.,
2018): bf16 autocast, or fp16 autocast with dynamic loss scaling.

Batch sources. `train_batches` and `val_batches` are either a callable
``get_batch(batch_size) -> (x, y)`` (such as `lmbook.batching.TokenBatchSampler`),
or an iterable of ``(x, y)`` such as a ``DataLoader``. An iterable for training is
restarted when it runs out; one for validation is read from its start at every
evaluation. Batches are moved to the device of the model's parameters. A source
with ``state_dict()`` / ``load_state_dict()`` (a dict of tensors) is saved in
checkpoints, so that a resumed run repeats the uninterrupted one exactly.

Callbacks are functions ``callback(trainer, event, info)``. Events: "train_start",
"log" (every ``log_interval`` steps; info is a `Record` as a dict plus
"grad_norm"), "eval" (``{"step", "val_loss"}``), "train_end". A callback may set
``trainer.should_stop = True``.

Checkpoints are folders written by `lmbook.checkpoint` (safetensors for the
model, optimizer, RNG and sampler tensors; JSON for the rest): a crash while saving
leaves the previous checkpoint whole, and nothing is unpickled on load.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from lmbook.checkpoint import (
    check_matches,
    join_optimizer_state,
    model_spec,
    read_checkpoint,
    retie,
    rng_state,
    set_rng_state,
    split_optimizer_state,
    untie,
    write_checkpoint,
)
from lmbook.checks import check_choice, check_float, check_int, tname
from lmbook.utils import set_seed

_PRECISIONS = ("auto", "bf16", "fp16", "no")


def _check_betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"betas must be a pair of floats in [0, 1), got {betas!r}")
    b1 = check_float("betas[0]", betas[0], 0, 1, high_open=True)
    return b1, check_float("betas[1]", betas[1], 0, 1, high_open=True)


@dataclass
class TrainConfig:
    """Everything `Trainer` needs besides the model and the data."""

    max_steps: int = 1000  # optimizer steps in the whole run
    batch_size: int = 32  # passed to get_batch(batch_size)
    lr: float = 3e-4  # peak learning rate, reached at the end of warmup
    min_lr: float = 3e-5  # learning rate at max_steps, the end of the cosine
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps up to lr
    weight_decay: float = 0.1  # AdamW decay of matrices; 0 for biases and norms
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW moment coefficients
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_interval: int = 100  # evaluate every this many steps; 0 never
    eval_steps: int = 20  # validation batches averaged per evaluation
    log_interval: int = 10  # history record and callbacks every this many steps
    mixed_precision: str = "auto"  # "auto", "bf16", "fp16" or "no"; CUDA only
    seed: int = 1337  # set_seed(seed) at the start of a fresh run
    checkpoint_dir: str | None = None  # fit() saves here when set
    checkpoint_interval: int = 500  # steps between checkpoints (and at the end)

    def __post_init__(self):
        check_int("max_steps", self.max_steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, 0, low_open=True)  # finite: inf and nan refused
        check_float("min_lr", self.min_lr, 0, self.lr)
        check_int("warmup_steps", self.warmup_steps, 0)
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps must be <= max_steps={self.max_steps}, "
                f"got {self.warmup_steps}"
            )
        check_float("weight_decay", self.weight_decay, 0)
        check_float("grad_clip", self.grad_clip, 0)
        self.betas = _check_betas(self.betas)
        check_int("eval_interval", self.eval_interval, 0)
        check_int("eval_steps", self.eval_steps, 1)
        check_int("log_interval", self.log_interval, 1)
        check_choice("mixed_precision", self.mixed_precision, _PRECISIONS)
        check_int("seed", self.seed, 0)
        if self.checkpoint_dir is not None:
            if not isinstance(self.checkpoint_dir, str | os.PathLike):
                raise TypeError(
                    "checkpoint_dir must be a str, os.PathLike or None, got "
                    f"{tname(self.checkpoint_dir)}"
                )
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
            if os.path.exists(self.checkpoint_dir) and not os.path.isdir(
                self.checkpoint_dir
            ):
                raise ValueError(
                    f"checkpoint_dir {self.checkpoint_dir!r} is a file; expected a "
                    "folder (it is created if missing)"
                )
        check_int("checkpoint_interval", self.checkpoint_interval, 1)


class Record(NamedTuple):
    """One row of `Trainer.history`; `train_loss` is the mean since the last row."""

    step: int
    train_loss: float
    val_loss: float | None
    lr: float


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): warmup, then cosine.

    ``lr * (step + 1) / warmup_steps`` while ``step < warmup_steps``, then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with ``p`` going from 0 at
    ``warmup_steps`` to 1 at ``max_steps``; ``min_lr`` from then on.
    """
    check_int("step", step, 0)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {tname(config)}")
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if step >= config.max_steps:
        return config.min_lr
    p = (step - config.warmup_steps) / (config.max_steps - config.warmup_steps)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (
        1 + math.cos(math.pi * p)
    )


def configure_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW with two groups: decay for params with dim >= 2, none for the rest.

    Biases and LayerNorm gains (dim < 2) are not decayed. Tied weights appear once:
    ``model.parameters()`` yields a shared tensor a single time.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_float("lr", lr, 0, low_open=True)
    check_float("weight_decay", weight_decay, 0)
    betas = _check_betas(betas)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters with requires_grad=True to train")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


class Trainer:
    """Train `model` on batches from `train_batches` under `config`.

    ``fit()`` runs to ``config.max_steps``; ``history`` holds a `Record` per log.
    ``save_checkpoint(path)`` / ``load_checkpoint(path)`` and `Trainer.resume`
    continue a run exactly where it stopped.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_batches: Callable | Iterable,
        val_batches: Callable | Iterable | None = None,
        callbacks: Iterable[Callable] = (),
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"config must be a TrainConfig, got {type(config).__name__}"
            )
        sources = {"train_batches": train_batches, "val_batches": val_batches}
        for name, src in sources.items():
            ok = callable(src) or isinstance(src, Iterable)
            if not ok and not (name == "val_batches" and src is None):
                raise TypeError(
                    f"{name} must be a callable get_batch(batch_size) or an iterable "
                    f"of (x, y), got {type(src).__name__}"
                )
        callbacks = list(callbacks)
        for i, cb in enumerate(callbacks):
            if not callable(cb):
                raise TypeError(
                    f"callbacks[{i}] must be callable, got {type(cb).__name__}"
                )
        self.optimizer = configure_optimizer(
            model, config.lr, config.weight_decay, config.betas
        )
        self.model, self.config, self.callbacks = model, config, callbacks
        self.train_batches, self.val_batches = train_batches, val_batches
        self.device = next(model.parameters()).device
        self.precision = config.mixed_precision
        if self.device.type != "cuda":
            if self.precision in ("bf16", "fp16"):
                warnings.warn(
                    f"mixed_precision={self.precision!r} needs CUDA; training on "
                    f"{self.device.type} in float32",
                    stacklevel=2,
                )
            self.precision = "no"
        elif self.precision == "auto":
            self.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        amp_device = "cuda" if self.precision == "fp16" else "cpu"
        self.scaler = torch.amp.GradScaler(amp_device, enabled=self.precision == "fp16")
        self.step = 0
        self.history: list[Record] = []
        self.should_stop = False
        self._train_iter = None

    # ---- batches and the forward pass -------------------------------------------
    def _batch(self, source: Any, name: str, it: Any = None) -> tuple:
        if callable(source):
            batch = source(self.config.batch_size)
        else:
            batch = next(it)
        ok = isinstance(batch, tuple | list) and len(batch) == 2
        if not (ok and all(isinstance(t, torch.Tensor) for t in batch)):
            got = type(batch).__name__
            raise TypeError(f"{name} must give (x, y), two tensors, got {got}")
        if any(t.numel() == 0 for t in batch):
            shapes = tuple(tuple(t.shape) for t in batch)
            raise ValueError(
                f"{name} gave an empty batch: (x, y) have shapes {shapes}; every "
                "batch needs B >= 1 (and T >= 1), or the mean loss is NaN"
            )
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def _next_train_batch(self) -> tuple:
        if callable(self.train_batches):
            return self._batch(self.train_batches, "train_batches")
        for fresh in (False, True):
            if self._train_iter is None or fresh:
                self._train_iter = iter(self.train_batches)
            try:
                return self._batch(
                    self.train_batches, "train_batches", self._train_iter
                )
            except StopIteration:
                continue
        raise ValueError("train_batches is an empty iterable; it gave no batch")

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype, enabled=self.precision != "no"):
            out = self.model(x, y)
        if not (isinstance(out, tuple | list) and len(out) == 2) or not (
            isinstance(out[1], torch.Tensor) and out[1].dim() == 0
        ):
            raise TypeError(
                "model(x, y) must return (logits, loss) with loss a 0-dim tensor, "
                f"got {type(out).__name__}"
            )
        return out[1]

    # ---- one step, evaluation, the loop ----------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """One optimizer step on (x, y), each (B, T).

        Returns ``{"loss": 0-dim tensor, "lr": float, "grad_norm": 0-dim tensor or
        None}``; the gradient norm is the one before clipping. The (clipped)
        gradients stay in ``.grad`` until the next step.
        """
        lr = lr_at(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if self.config.grad_clip > 0:
            grad_norm = nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.grad_clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return {"loss": loss.detach(), "lr": lr, "grad_norm": grad_norm}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over ``eval_steps`` validation batches, in eval mode."""
        if self.val_batches is None:
            raise ValueError("evaluate() needs val_batches, but none were given")
        was_training = self.model.training
        self.model.eval()
        it = None if callable(self.val_batches) else iter(self.val_batches)
        losses = []
        try:
            for _ in range(self.config.eval_steps):
                try:
                    x, y = self._batch(self.val_batches, "val_batches", it)
                except StopIteration:
                    break
                losses.append(self._loss(x, y).float())
        finally:
            self.model.train(was_training)
        if not losses:
            raise ValueError("val_batches is an empty iterable; it gave no batch")
        return torch.stack(losses).mean().item()

    def _emit(self, event: str, info: dict) -> None:
        for cb in self.callbacks:
            cb(self, event, info)

    def fit(self, progress: bool = True) -> list[Record]:
        """Train from ``self.step`` to ``config.max_steps``; return `history`.

        A fresh run (step 0) first calls ``set_seed(config.seed)``; a resumed one
        keeps the RNG states of its checkpoint. With ``config.checkpoint_dir`` set,
        a checkpoint is saved every ``checkpoint_interval`` steps and at the end.
        """
        cfg = self.config
        if self.step == 0:
            set_seed(cfg.seed)
        self.should_stop = False
        self._emit("train_start", {"step": self.step})
        total, n = None, 0
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not progress)
        try:
            while self.step < cfg.max_steps and not self.should_stop:
                out = self.train_step(*self._next_train_batch())
                loss = out["loss"].float()
                total, n = (loss if total is None else total + loss), n + 1
                step, last = self.step, self.step == cfg.max_steps
                evaluate = self.val_batches is not None and cfg.eval_interval > 0
                evaluate = evaluate and (step % cfg.eval_interval == 0 or last)
                save = cfg.checkpoint_dir is not None
                save = save and (step % cfg.checkpoint_interval == 0 or last)
                bar.update(1)
                if not (evaluate or save or last or step % cfg.log_interval == 0):
                    continue
                train_loss, total, n = (total / n).item(), None, 0
                if not math.isfinite(train_loss):
                    raise FloatingPointError(
                        f"training loss is {train_loss} at step {step}; "
                        "lower lr or check the data"
                    )
                val_loss = self.evaluate() if evaluate else None
                record = Record(step, train_loss, val_loss, out["lr"])
                self.history.append(record)
                bar.set_postfix(
                    loss=f"{train_loss:.4f}",
                    val=f"{val_loss:.4f}" if val_loss is not None else "-",
                )
                if evaluate:
                    self._emit("eval", {"step": step, "val_loss": val_loss})
                norm = out["grad_norm"]
                info = {
                    **record._asdict(),
                    "grad_norm": None if norm is None else float(norm),
                }
                self._emit("log", info)
                if save:
                    self.save_checkpoint()  # to cfg.checkpoint_dir
        finally:
            bar.close()
        self._emit("train_end", {"step": self.step})
        return self.history

    # ---- checkpoints ------------------------------------------------------------
    def _sources(self) -> list[tuple[str, Any]]:
        pairs = [
            ("train_batches", self.train_batches),
            ("val_batches", self.val_batches),
        ]
        return [(n, s) for n, s in pairs if hasattr(s, "state_dict")]

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Save model, optimizer, step, RNG states and history to folder `path`.

        `path` defaults to ``config.checkpoint_dir``; returns the folder. The
        model's class and config are saved too when it has them (see
        `lmbook.checkpoint.model_spec`), so `lmbook.checkpoint.load_model` can
        rebuild it without this trainer.
        """
        arg = "path" if path is not None else "checkpoint_dir"
        path = path if path is not None else self.config.checkpoint_dir
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"{arg} must be a str or os.PathLike, got {path!r}")
        model_tensors, tied = untie(self.model.state_dict())
        optim, optim_meta = split_optimizer_state(self.optimizer.state_dict())
        rng, rng_meta = rng_state()
        tensors = {"model": model_tensors, "optimizer": optim, "rng": rng}
        for name, src in self._sources():
            tensors[name] = src.state_dict()
        meta = {
            "step": self.step,
            "config": dataclasses.asdict(self.config),
            "history": [list(r) for r in self.history],
            "tied": tied,
            "optimizer": optim_meta,
            "scaler": self.scaler.state_dict(),
            "rng": rng_meta,
        }
        spec = model_spec(self.model)
        if spec is not None:
            meta["model"] = spec
        return write_checkpoint(path, tensors, meta, step=self.step, name=arg)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint saved by `save_checkpoint` into this trainer.

        Everything is checked before anything changes: a missing or extra key, or a
        shape that differs from the model's, raises ``ValueError`` naming it. The
        optimizer's hyperparameters (lr, betas, weight decay) come from this
        trainer's config, not from the checkpoint: see `resume` for overrides.
        """
        tensors, meta = read_checkpoint(path)
        fields = ("step", "config", "history", "tied", "optimizer", "scaler", "rng")
        for key in fields:
            if key not in meta:
                raise ValueError(f"checkpoint {path} lacks {key!r}; not a Trainer's")
        kinds = ["model", "optimizer", "rng"] + [n for n, _ in self._sources()]
        for kind in kinds:
            if kind not in tensors:
                raise ValueError(f"checkpoint {path} has no {kind!r} tensors")
        model_sd = retie(tensors["model"], meta["tied"])
        check_matches(self.model.state_dict(), model_sd, "model")
        optim = join_optimizer_state(
            self.optimizer, tensors["optimizer"], meta["optimizer"]
        )
        # all checks passed: now change the trainer
        for name, src in self._sources():
            src.load_state_dict(tensors[name])
        set_rng_state(tensors["rng"], meta["rng"])
        self.model.load_state_dict(model_sd)
        self.optimizer.load_state_dict(optim)
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        self.step = meta["step"]
        self._apply_config_to_optimizer()
        self.history = [Record(*r) for r in meta["history"]]
        self._train_iter = None

    def _apply_config_to_optimizer(self) -> None:
        """Set lr, betas and weight decay of `configure_optimizer`'s two groups."""
        cfg = self.config
        decay, no_decay = self.optimizer.param_groups
        for group, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            group.update(lr=lr_at(self.step, cfg), betas=cfg.betas, weight_decay=wd)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        model: nn.Module,
        train_batches: Callable | Iterable,
        val_batches: Callable | Iterable | None = None,
        callbacks: Iterable[Callable] = (),
        **overrides: Any,
    ) -> Trainer:
        """A `Trainer` with the checkpoint's config, changed by `overrides`, loaded.

        Overrides are `TrainConfig` fields, e.g. ``max_steps=2000`` or
        ``checkpoint_dir="run2"``; they reach the optimizer too (lr schedule,
        betas, weight decay). Checkpoints keep being saved to the resumed config's
        ``checkpoint_dir``.
        """
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in overrides:
            if key not in fields:
                raise TypeError(
                    f"resume() got {key!r}, which is not a TrainConfig field; "
                    f"expected some of {', '.join(sorted(fields))}"
                )
        _, meta = read_checkpoint(path, load_tensors=False)
        saved = meta.get("config")
        if not isinstance(saved, dict) or not saved.keys() <= fields:
            raise ValueError(f"checkpoint {path} has no TrainConfig; not a Trainer's")
        config = dataclasses.replace(TrainConfig(**saved), **overrides)
        trainer = cls(model, config, train_batches, val_batches, callbacks)
        trainer.load_checkpoint(path)
        return trainer
