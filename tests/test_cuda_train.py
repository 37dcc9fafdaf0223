"""lmbook.train on CUDA: bf16 and fp16 (with loss scaling) mixed-precision steps,
a short fit that learns, a resume that repeats the run (CUDA RNG included), and a
checkpoint that rebuilds its model on the CPU with load_model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.batching import TokenBatchSampler
from lmbook.checkpoint import load_model
from lmbook.gpt import GPT, GPTConfig
from lmbook.train import TrainConfig, Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
V = 32
PRECISIONS = ["bf16", "fp16"]


class Bigram(nn.Module):
    """Embedding -> dropout -> LayerNorm -> head; records its logits' dtype."""

    def __init__(self, n_embd: int = 32):
        super().__init__()
        self.wte = nn.Embedding(V, n_embd)
        self.drop = nn.Dropout(0.1)
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, V)
        self.logits_dtype = None

    def forward(self, x, y=None):
        logits = self.head(self.ln(self.drop(self.wte(x))))  # (B, T, V)
        self.logits_dtype = logits.dtype
        loss = (
            None
            if y is None
            else F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        )
        return logits, loss


def _needs(precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")


def _data(device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    out = [0]
    for r in torch.rand(4000, generator=g).tolist():
        out.append((5 * out[-1] + 3) % V if r < 0.9 else int(r * 1000) % V)
    return torch.tensor(out, device=device)


def _trainer(precision: str, seed: int = 0, **kw) -> Trainer:
    device = torch.device("cuda")
    torch.manual_seed(seed)
    model = Bigram().to(device)
    cfg = dict(
        max_steps=60,
        batch_size=16,
        lr=3e-2,
        min_lr=3e-3,
        warmup_steps=5,
        eval_interval=20,
        eval_steps=2,
        log_interval=1,
        mixed_precision=precision,
    )
    data = _data(device)
    train = TokenBatchSampler(data[:3500], 16, seed=seed)
    val = TokenBatchSampler(data[3500:], 16, seed=seed + 1)
    return Trainer(model, TrainConfig(**{**cfg, **kw}), train, val)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_mixed_precision_step(precision):
    _needs(precision)
    trainer = _trainer(precision)
    assert trainer.precision == precision
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    x, y = trainer.train_batches(16)
    assert x.is_cuda and y.is_cuda
    out = trainer.train_step(x, y)
    assert torch.isfinite(out["loss"]) and torch.isfinite(out["grad_norm"])
    assert (
        trainer.model.logits_dtype
        == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    )
    for p, b in zip(trainer.model.parameters(), before, strict=True):
        assert p.dtype == torch.float32  # master weights stay in float32
        assert not torch.equal(p, b), "a parameter was not updated"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_short_fit_lowers_the_loss(precision):
    _needs(precision)
    history = _trainer(precision).fit(progress=False)
    evals = [r.val_loss for r in history if r.val_loss is not None]
    assert history[0].train_loss > 3.0  # about log(32) = 3.47 at the start
    assert history[-1].train_loss < history[0].train_loss - 1.0
    assert evals[-1] < evals[0]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_resume_on_cuda_repeats_the_run(tmp_path, precision):
    _needs(precision)
    full = _trainer(precision, max_steps=20)
    full.fit(progress=False)

    killed = _trainer(
        precision, max_steps=20, checkpoint_dir=str(tmp_path), checkpoint_interval=8
    )

    def kill(trainer, event, info):
        if event == "log" and info["step"] == 12:
            raise KeyboardInterrupt

    killed.callbacks = [kill]
    with pytest.raises(KeyboardInterrupt):
        killed.fit(progress=False)

    fresh = _trainer(precision, seed=7, max_steps=20)
    resumed = Trainer.resume(
        tmp_path, fresh.model, fresh.train_batches, fresh.val_batches
    )
    assert resumed.step == 8
    if precision == "fp16":  # the loss scale is restored too
        saved = json.loads((tmp_path / "state.json").read_text())["meta"]["scaler"]
        assert resumed.scaler.get_scale() == saved["scale"]
    resumed.fit(progress=False)
    got = torch.tensor([r.train_loss for r in resumed.history])
    want = torch.tensor([r.train_loss for r in full.history])
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    for p, q in zip(resumed.model.parameters(), full.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_load_model_rebuilds_a_model_trained_on_cuda(tmp_path, precision):
    _needs(precision)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg).to("cuda")
    train = TokenBatchSampler(_data(torch.device("cuda")), 16, seed=0)
    config = TrainConfig(
        max_steps=6,
        batch_size=8,
        warmup_steps=0,
        eval_interval=0,
        mixed_precision=precision,
        checkpoint_dir=str(tmp_path),
    )
    Trainer(model, config, train).fit(progress=False)
    loaded = load_model(tmp_path)
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    idx = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(1))
    trained = model.cpu().eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], trained(idx)[0], rtol=0, atol=0)
