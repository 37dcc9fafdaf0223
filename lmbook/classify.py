"""Sentence classification with a pretrained encoder: the helpers of Part V.

A held-out split without leaks (`occurs_in`), mean pooling of an encoder's hidden
states as Sentence-BERT does (Reimers & Gurevych, 2019), a logistic-regression
probe trained to convergence, fine-tuning through Hugging Face's ``Trainer``
(Wolf et al., 2020) on a CPU, and an accuracy that reports the predictions lying
within rounding noise of the decision boundary (`robust_accuracy`). The chapter
applies them to SST-2 (Socher et al., 2013) with MiniLM (Wang et al., 2020),
BERT's architecture (Devlin et al., 2019), fine-tuned fully or with LoRA
(Hu et al., 2022).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmbook.checks import check_bool, check_float, check_int, tname

RESULTS = "bench/results/classification.json"  # bench/bench_classification.py
RESULTS_URL = "https://raw.githubusercontent.com/lmbook/lmbook/main/" + RESULTS

__all__ = [
    "Accuracy",
    "count_parameters",
    "encode",
    "fine_tune",
    "fit_logistic_regression",
    "load_bench_results",
    "mean_pool",
    "occurs_in",
    "robust_accuracy",
    "sst2_split",
]


def _texts(name: str, texts: object) -> list[str]:
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be an iterable of str, got {tname(texts)}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {tname(text)}")
    return texts


def occurs_in(texts: Iterable[str], reference: Iterable[str]) -> list[bool]:
    """For each text, whether it occurs inside one of the reference texts.

    Texts are compared as whole words (split on white space), so ``"fun"`` occurs
    in ``"great fun ."`` but not in ``"funny"``; a text equal to a reference text
    occurs in it. An empty text occurs nowhere. Returns one bool per text.
    """
    texts = _texts("texts", texts)
    reference = _texts("reference", reference)
    # one line per reference text, padded with spaces: a match never spans two
    haystack = "\n".join(f" {' '.join(t.split())} " for t in reference)
    found = []
    for text in texts:
        words = text.split()
        found.append(bool(words) and f" {' '.join(words)} " in haystack)
    return found


def sst2_split(n_train: int, n_held_out: int, seed: int = 0, test_size: float = 0.1):
    """SST-2's training rows split into ``(train, held_out)`` ``datasets.Dataset``s.

    A seeded ``train_test_split`` keeps `test_size` of the rows apart; `train` is
    the first n_train rows of the rest, `held_out` the first n_held_out rows kept
    apart that do not occur (`occurs_in`) inside one of those training rows.
    Columns: ``sentence`` (str) and ``label`` (1 positive, 0 negative).
    """
    import datasets

    from lmbook.data import load_sst2

    check_int("n_train", n_train, 1)
    check_int("n_held_out", n_held_out, 1)
    check_int("seed", seed, 0, 2**32 - 1)
    check_float("test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
    rows = load_sst2()
    sentences, labels = zip(*rows, strict=True)
    data = datasets.Dataset.from_dict(
        {"sentence": list(sentences), "label": list(labels)}
    )
    parts = data.train_test_split(test_size=test_size, seed=seed)
    if n_train > len(parts["train"]):
        raise ValueError(
            f"n_train must be <= {len(parts['train'])} (the rows left for "
            f"training), got {n_train}"
        )
    train = parts["train"].select(range(n_train))
    leaks = occurs_in(parts["test"]["sentence"], train["sentence"])
    keep = [i for i, leak in enumerate(leaks) if not leak]
    if n_held_out > len(keep):
        raise ValueError(
            f"n_held_out must be <= {len(keep)} (the held-out rows that do not "
            f"occur in the {n_train} training rows), got {n_held_out}"
        )
    return train, parts["test"].select(keep[:n_held_out])


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the hidden states over the real tokens, padding excluded.

    hidden: (B, T, C); attention_mask: (B, T), 1 for tokens and 0 for padding.
    Returns (B, C), as sentence-transformers' mean pooling.
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise TypeError(f"hidden must be a (B, T, C) tensor, got {_shape(hidden)}")
    if (
        not isinstance(attention_mask, torch.Tensor)
        or attention_mask.shape != hidden.shape[:2]
    ):
        raise ValueError(
            f"attention_mask must be a tensor of shape {tuple(hidden.shape[:2])} "
            f"(B, T of hidden), got {_shape(attention_mask)}"
        )
    keep = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1e-9)  # (B, C)


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    dataset,
    data_collator,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a sequence classifier over a tokenized dataset, in eval mode.

    Returns ``(logits, pooled)`` in the dataset's order: logits (N, K) of the
    model's head and pooled (N, C), the mean over the real tokens of the last
    hidden states (`mean_pool`). Batches are formed from rows of similar length,
    so that little padding is computed; the model's training mode is restored.
    progress: show a tqdm progress bar over the batches.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    columns = getattr(dataset, "column_names", None)
    if not isinstance(columns, list) or "input_ids" not in columns:
        raise TypeError(
            "dataset must be a tokenized datasets.Dataset with an 'input_ids' "
            f"column, got {tname(dataset)}"
        )
    if not callable(data_collator):
        raise TypeError(f"data_collator must be callable, got {tname(data_collator)}")
    check_int("batch_size", batch_size, 1)
    check_bool("progress", progress)
    if len(dataset) == 0:
        raise ValueError("dataset must have at least one row, got 0")
    inputs = dataset.select_columns(
        [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in columns]
    )
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]["input_ids"]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, pooled = [], []
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, disable=not progress, leave=False):
            rows = [inputs[i] for i in order[start : start + batch_size]]
            batch = {k: v.to(device) for k, v in data_collator(rows).items()}
            out = model(**batch, output_hidden_states=True)
            logits.append(out.logits.float().cpu())  # (b, K)
            hidden = out.hidden_states[-1]  # (b, T, C)
            pooled.append(mean_pool(hidden, batch["attention_mask"]).float().cpu())
    finally:
        model.train(was_training)
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order)] = torch.arange(len(order))  # row i is at where[i]
    return torch.cat(logits)[where], torch.cat(pooled)[where]


def _shape(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return tname(x)


def fit_logistic_regression(
    X: torch.Tensor, y: torch.Tensor, l2: float = 1e-3, max_iter: int = 500
) -> torch.nn.Linear:
    """A linear classifier on fixed features, trained to convergence.

    X: (N, D) floating point; y: (N,) class ids 0..K-1. Minimises the mean
    cross-entropy plus ``l2 * |W|^2`` with full-batch L-BFGS, starting from zero
    weights (the problem is convex, so no seed is needed). Returns an
    ``nn.Linear(D, K)`` in X's dtype; use float64 for results that are stable
    across CPUs.
    """
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        raise TypeError(f"X must be a 2-D floating-point tensor, got {_shape(X)}")
    if (
        not isinstance(y, torch.Tensor)
        or y.shape != X.shape[:1]
        or y.dtype != torch.long
    ):
        raise ValueError(
            f"y must be a long tensor of shape ({X.shape[0]},) (one class id per "
            f"row of X), got {_shape(y)}"
            + (f" of dtype {y.dtype}" if isinstance(y, torch.Tensor) else "")
        )
    if len(y) == 0 or int(y.min()) < 0:
        raise ValueError("y must hold at least one class id, all >= 0")
    check_float("l2", l2, 0.0)
    check_int("max_iter", max_iter, 1)
    clf = torch.nn.Linear(X.shape[1], int(y.max()) + 1, dtype=X.dtype)
    torch.nn.init.zeros_(clf.weight)
    torch.nn.init.zeros_(clf.bias)
    opt = torch.optim.LBFGS(
        clf.parameters(),
        max_iter=max_iter,
        tolerance_grad=1e-9,  # stop close to the optimum, not where the path
        tolerance_change=1e-12,  # happens to slow down: stable across CPUs
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf(X), y) + l2 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return clf


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameters of model."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


@dataclass(frozen=True)
class Accuracy:
    """An accuracy that knows which predictions are too close to call.

    A prediction is *near* the boundary when its top two logits differ by less
    than `tol`: rounding differences between CPUs could flip it. The accuracy is
    then only known to lie in ``[low, high]``; it prints as one number when the
    two agree to the digits shown, and as a range ``low–high`` otherwise
    (``f"{acc:>13.1%}"``: width and alignment apply to the whole text).
    """

    correct: int  # right predictions, near ones included
    near_correct: int  # right, but within tol of the boundary
    near_wrong: int  # wrong, but within tol of the boundary
    n: int  # examples
    min_margin: float  # smallest gap between the top two logits
    tol: float

    @property
    def low(self) -> float:
        """Accuracy if every near prediction flipped to wrong."""
        return (self.correct - self.near_correct) / self.n

    @property
    def high(self) -> float:
        """Accuracy if every near prediction flipped to right."""
        return (self.correct + self.near_wrong) / self.n

    @property
    def value(self) -> float:
        """The accuracy measured on this machine."""
        return self.correct / self.n

    def __format__(self, spec: str) -> str:
        # [[fill]align][width] apply to the whole text, the rest to each number
        layout, number = re.fullmatch(r"((?:.?[<>^])?\d*)(.*)", spec).groups()
        number = number or ".1%"
        low, high = format(self.low, number), format(self.high, number)
        return format(low if low == high else f"{low}\u2013{high}", layout)

    def __str__(self) -> str:
        return format(self, "")


def robust_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, tol: float = 1e-3
) -> Accuracy:
    """Accuracy of argmax predictions, with the ones within tol of a tie counted.

    logits: (N, K) with K >= 2; labels: (N,) class ids. See `Accuracy`.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise TypeError(f"logits must be an (N, K) tensor, got {_shape(logits)}")
    if logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must have N >= 1 rows and K >= 2 classes, got shape "
            f"{tuple(logits.shape)}"
        )
    if not isinstance(labels, torch.Tensor) or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must be a tensor of shape ({logits.shape[0]},) (one per row "
            f"of logits), got {_shape(labels)}"
        )
    check_float("tol", tol, 0.0)
    top2 = logits.detach().double().topk(2, dim=-1)
    margin = top2.values[:, 0] - top2.values[:, 1]  # (N,)
    right = top2.indices[:, 0] == labels.to(top2.indices.device)
    near = margin < tol
    return Accuracy(
        correct=int(right.sum()),
        near_correct=int((near & right).sum()),
        near_wrong=int((near & ~right).sum()),
        n=len(labels),
        min_margin=float(margin.min()),
        tol=float(tol),
    )


def fine_tune(
    model: torch.nn.Module,
    train_dataset,
    data_collator,
    *,
    learning_rate: float,
    batch_size: int = 32,
    epochs: float = 1.0,
    seed: int = 0,
    use_cpu: bool = True,
    activation_checkpointing: bool = False,
    output_dir: str | os.PathLike | None = None,
):
    """Train model on train_dataset with Hugging Face's Trainer, by default on the CPU.

    train_dataset: a tokenized ``datasets.Dataset`` with ``input_ids`` and
    ``label`` columns; data_collator pads each batch (``DataCollatorWithPadding``).
    AdamW with a linear warmup over the first 10% of the steps and a linear decay
    (the shape of BERT's schedule); batches of similar lengths, so that little
    padding is computed. use_cpu=False lets Trainer choose a GPU where there is one;
    activation_checkpointing=True recomputes activations in the backward pass
    instead of storing them (less memory, more time).
    Nothing is saved or reported (output_dir: a temporary folder if None).
    Returns ``(trainer, seconds)``, the wall time of the training.
    """
    from transformers import Trainer, TrainingArguments

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    columns = getattr(train_dataset, "column_names", None)
    if not isinstance(columns, list) or not {"input_ids", "label"} <= set(columns):
        raise TypeError(
            "train_dataset must be a tokenized datasets.Dataset with 'input_ids' "
            f"and 'label' columns, got {tname(train_dataset)}"
            + (f" with columns {columns}" if isinstance(columns, list) else "")
        )
    if not callable(data_collator):
        raise TypeError(
            "data_collator must be callable (e.g. DataCollatorWithPadding), got "
            f"{tname(data_collator)}"
        )
    check_float("learning_rate", learning_rate, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_float("epochs", epochs, 0.0, low_open=True)
    check_int("seed", seed, 0, 2**32 - 1)
    check_bool("use_cpu", use_cpu)
    check_bool("activation_checkpointing", activation_checkpointing)
    if output_dir is not None and not isinstance(output_dir, str | os.PathLike):
        raise TypeError(f"output_dir must be a path or None, got {tname(output_dir)}")
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=os.fspath(output_dir or tmp),
            use_cpu=use_cpu,  # True: never a GPU, even where there is one
            per_device_train_batch_size=batch_size,
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            warmup_steps=0.1,  # a float below 1: a fraction of the steps
            lr_scheduler_type="linear",
            weight_decay=0.01,
            train_sampling_strategy="group_by_length",
            activation_checkpointing=activation_checkpointing,
            seed=seed,
            eval_strategy="no",  # evaluated once, at the end, by the caller
            save_strategy="no",
            logging_strategy="no",
            report_to="none",  # no TensorBoard, W&B, ...
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=data_collator,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return trainer, seconds


def load_bench_results(path: str | os.PathLike | None = None) -> dict:
    """The results of ``bench/bench_classification.py``, as the JSON dict it wrote.

    From `path`, else from the repository's ``bench/results/classification.json``
    when the package runs from a clone, else (e.g. on Colab) from its copy on
    GitHub.
    """
    if path is None:
        local = Path(__file__).resolve().parents[1] / RESULTS
        if not local.is_file():
            import urllib.request

            with urllib.request.urlopen(RESULTS_URL, timeout=30) as response:
                return json.loads(response.read().decode("utf-8"))
        path = local
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {tname(path)}")
    return json.loads(Path(path).read_text(encoding="utf-8"))
