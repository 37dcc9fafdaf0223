"""lmbook.train on a tiny bigram language model (not GPT): the schedule, the
optimizer groups, clipping, evaluation, callbacks, exact resume from checkpoints,
crash-safe saving, and bad input."""

from __future__ import annotations

import copy
import json
import math
import os
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.batching import TokenBatchSampler
from lmbook.train import Record, TrainConfig, Trainer, configure_optimizer, lr_at

V = 16  # vocabulary of the toy model


class Bigram(nn.Module):
    """Embedding -> dropout -> LayerNorm -> linear head: a bigram LM with every kind
    of parameter the optimizer groups care about."""

    def __init__(self, n_embd: int = 8, tie: bool = False, dropout: float = 0.1):
        super().__init__()
        self.wte = nn.Embedding(V, n_embd)
        self.drop = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, V, bias=not tie)
        if tie:
            self.head.weight = self.wte.weight

    def forward(self, x, y=None):
        logits = self.head(self.ln(self.drop(self.wte(x))))  # (B, T, V)
        loss = None if y is None else F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return logits, loss


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the machine may be busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def stream(n: int = 3000) -> torch.Tensor:
    """Tokens with a learnable rule: after t comes (3 t + 1) mod V, 90% of the time."""
    g = torch.Generator().manual_seed(0)
    out = [0]
    for r in torch.rand(n - 1, generator=g).tolist():
        out.append((3 * out[-1] + 1) % V if r < 0.9 else int(r * 1000) % V)
    return torch.tensor(out)


def config(**kw) -> TrainConfig:
    base = dict(
        max_steps=12,
        batch_size=4,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=2,
        eval_interval=3,
        eval_steps=2,
        log_interval=1,
        checkpoint_interval=4,
    )
    return TrainConfig(**{**base, **kw})


def samplers(seed: int = 0) -> tuple[TokenBatchSampler, TokenBatchSampler]:
    data = stream()
    return TokenBatchSampler(data[:2500], 8, seed=seed), TokenBatchSampler(
        data[2500:], 8, seed=seed + 1
    )


def make_trainer(seed: int = 0, model: nn.Module | None = None, **kw) -> Trainer:
    torch.manual_seed(seed)
    return Trainer(model or Bigram(), config(**kw), *samplers())


# --- learning rate schedule and optimizer ------------------------------------------


@pytest.mark.parametrize(
    ("lr", "min_lr", "warmup", "max_steps"),
    [(1e-3, 1e-4, 10, 110), (6e-4, 0.0, 4, 40), (1.0, 0.5, 0, 20), (0.1, 0.1, 5, 15)],
)
def test_lr_schedule_at_key_steps(lr, min_lr, warmup, max_steps):
    cfg = TrainConfig(max_steps=max_steps, lr=lr, min_lr=min_lr, warmup_steps=warmup)
    if warmup:
        assert lr_at(0, cfg) == pytest.approx(lr / warmup)  # warmup start
        assert lr_at(warmup - 1, cfg) == pytest.approx(lr)  # end of warmup
    assert lr_at(warmup, cfg) == pytest.approx(lr)  # start of the cosine
    middle = warmup + (max_steps - warmup) // 2  # even span in every case here
    assert lr_at(middle, cfg) == pytest.approx((lr + min_lr) / 2)
    assert lr_at(max_steps, cfg) == pytest.approx(min_lr)
    assert lr_at(max_steps + 50, cfg) == pytest.approx(min_lr)
    quarter = warmup + (max_steps - warmup) / 4
    if quarter.is_integer():
        expected = min_lr + (lr - min_lr) * (1 + math.cos(math.pi / 4)) / 2
        assert lr_at(int(quarter), cfg) == pytest.approx(expected)
    values = [lr_at(s, cfg) for s in range(warmup, max_steps + 1)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_trainer_uses_the_schedule():
    seen = []
    trainer = make_trainer()
    trainer.callbacks = [lambda t, e, info: e == "log" and seen.append(info["lr"])]
    trainer.fit(progress=False)
    assert seen == pytest.approx([lr_at(s, trainer.config) for s in range(12)])


def test_no_weight_decay_on_biases_and_norms():
    model = Bigram()
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model.wte.weight, model.head.weight])
    assert ids(no_decay["params"]) == ids(
        [model.ln.weight, model.ln.bias, model.head.bias]
    )
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])


def test_tied_weights_are_counted_once():
    model = Bigram(tie=True)
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == 3  # wte (= head), ln x2
    assert sum(p.numel() for p in params) == V * 8 + 2 * 8


def test_weight_decay_is_decoupled_and_skips_no_decay_params():
    # with zero gradients Adam's update is 0, so only decoupled decay moves weights:
    # p <- p * (1 - lr * wd) for decayed params, unchanged for the others
    model = Bigram()
    opt = configure_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    before = copy.deepcopy(model.state_dict())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(model.wte.weight, before["wte.weight"] * 0.95)
    torch.testing.assert_close(model.ln.weight, before["ln.weight"])
    torch.testing.assert_close(model.head.bias, before["head.bias"])


# --- one step: clipping, and agreement with a hand-written step --------------------


@pytest.mark.parametrize("grad_clip", [0.0, 1e-3, 1e3])
@pytest.mark.parametrize("seed", [0, 1])
def test_train_step_clips_and_matches_a_manual_step(grad_clip, seed):
    trainer = make_trainer(seed, grad_clip=grad_clip, lr=0.05)
    ref = copy.deepcopy(trainer.model)
    x, y = trainer.train_batches(4)
    # the reference step, written out: dropout masks drawn from the same RNG state
    rng = torch.get_rng_state()
    ref.train()
    ref(x, y)[1].backward()
    grads = [p.grad.clone() for p in ref.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    scale = min(1.0, grad_clip / (float(norm) + 1e-6)) if grad_clip else 1.0
    torch.set_rng_state(rng)
    out = trainer.train_step(x, y)
    got = [p.grad for p in trainer.model.parameters()]
    for g, r in zip(got, grads, strict=True):
        torch.testing.assert_close(g, r * scale)
    after = torch.linalg.vector_norm(torch.stack([g.norm() for g in got]))
    if grad_clip:
        assert float(after) <= grad_clip * (1 + 1e-5)
        torch.testing.assert_close(out["grad_norm"], norm)
    if grad_clip == 1e-3:
        assert float(norm) > 10 * grad_clip  # so that clipping really happened
    # the parameter update equals torch's AdamW on the clipped gradients
    opt = configure_optimizer(ref, lr_at(0, trainer.config), 0.1, (0.9, 0.95))
    for p, g in zip(ref.parameters(), got, strict=True):
        p.grad = g.clone()
    opt.step()
    for p, q in zip(trainer.model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert trainer.step == 1 and out["lr"] == lr_at(0, trainer.config)


def test_overfits_one_batch():
    torch.manual_seed(0)
    x = torch.randint(0, V, (8, 16))
    y = (3 * x + 1) % V  # a deterministic rule: the loss can go to 0
    cfg = config(max_steps=150, lr=0.05, min_lr=0.05, warmup_steps=0, eval_interval=0)
    trainer = Trainer(Bigram(dropout=0.0), cfg, lambda batch_size: (x, y))
    history = trainer.fit(progress=False)
    assert history[0].train_loss > 2.0  # about log(16) = 2.77 at the start
    assert history[-1].train_loss < 0.05


# --- the loop: evaluation, callbacks, history --------------------------------------


def test_eval_runs_at_the_interval_and_at_the_end():
    trainer = make_trainer(max_steps=10, eval_interval=4, log_interval=5)
    history = trainer.fit(progress=False)
    evaluated = [r.step for r in history if r.val_loss is not None]
    assert evaluated == [4, 8, 10]
    assert [r.step for r in history] == [4, 5, 8, 10]  # logs and evaluations


def test_evaluate_is_the_mean_over_eval_steps_in_eval_mode():
    torch.manual_seed(0)
    batches = [
        (torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8))) for _ in range(5)
    ]
    model = Bigram(dropout=0.5)  # eval mode matters: dropout would change the loss
    trainer = Trainer(model, config(eval_steps=3), *samplers()[:1], val_batches=batches)
    model.train()
    got = trainer.evaluate()
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        expected = sum(model(x, y)[1] for x, y in batches[:3]) / 3
    assert got == pytest.approx(float(expected), rel=1e-6)


def test_iterable_train_batches_restart_when_exhausted():
    torch.manual_seed(0)
    batches = [
        (torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8))) for _ in range(3)
    ]
    seen = []

    class Recorder:
        def __iter__(self):
            for i, b in enumerate(batches):
                seen.append(i)
                yield b

    Trainer(Bigram(), config(max_steps=7, eval_interval=0), Recorder()).fit(False)
    assert seen == [0, 1, 2, 0, 1, 2, 0]


def test_callbacks_get_every_event_in_order():
    events = []
    trainer = make_trainer(max_steps=6, eval_interval=3, log_interval=2)
    trainer.callbacks = [lambda t, event, info: events.append((event, info["step"]))]
    trainer.fit(progress=False)
    assert events == [
        ("train_start", 0),
        ("log", 2),
        ("eval", 3),
        ("log", 3),
        ("log", 4),
        ("eval", 6),
        ("log", 6),
        ("train_end", 6),
    ]


def test_log_info_is_a_record_with_the_mean_loss_and_grad_norm():
    infos = []
    trainer = make_trainer(max_steps=4, eval_interval=0, log_interval=2)
    trainer.callbacks = [lambda t, e, info: e == "log" and infos.append(info)]
    history = trainer.fit(progress=False)
    assert [Record(**{k: i[k] for k in Record._fields}) for i in infos] == history
    assert all(i["grad_norm"] > 0 for i in infos)


def test_callback_can_stop_training():
    def stop(trainer, event, info):
        if event == "log" and info["step"] == 5:
            trainer.should_stop = True

    trainer = make_trainer()
    trainer.callbacks = [stop]
    trainer.fit(progress=False)
    assert trainer.step == 5


def test_non_finite_loss_stops_with_a_clear_error():
    x = torch.zeros(2, 4, dtype=torch.long)

    class Exploding(Bigram):
        def forward(self, x, y=None):
            logits, loss = super().forward(x, y)
            return logits, loss * float("nan")

    trainer = Trainer(Exploding(), config(eval_interval=0), lambda b: (x, x))
    with pytest.raises(FloatingPointError, match="loss is nan at step 1"):
        trainer.fit(progress=False)


def test_fp16_request_on_cpu_warns_and_trains_in_float32():
    with pytest.warns(UserWarning, match="needs CUDA"):
        trainer = make_trainer(mixed_precision="fp16")
    assert trainer.precision == "no" and not trainer.scaler.is_enabled()
    assert make_trainer(mixed_precision="auto").precision == "no"


# --- checkpoints -------------------------------------------------------------------


class Kill(Exception):
    pass


def kill_at(step):
    def callback(trainer, event, info):
        if event == "log" and info["step"] == step:
            raise Kill

    return callback


def test_killed_and_resumed_run_repeats_the_uninterrupted_one(tmp_path):
    full = make_trainer(seed=0)  # uninterrupted, and saving nothing
    full.fit(progress=False)

    ckpt = tmp_path / "run"
    killed = make_trainer(seed=0, checkpoint_dir=str(ckpt))
    killed.callbacks = [kill_at(6)]
    with pytest.raises(Kill):
        killed.fit(progress=False)
    assert json.loads((ckpt / "state.json").read_text())["meta"]["step"] == 4

    torch.manual_seed(123)  # a different initialisation, and other global RNG state
    resumed = Trainer.resume(ckpt, Bigram(), *samplers(seed=99))
    assert resumed.step == 4 and resumed.history == full.history[:4]
    resumed.fit(progress=False)
    assert resumed.history == full.history  # bit for bit on the CPU
    for p, q in zip(resumed.model.parameters(), full.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_resume_would_differ_without_restoring_the_sampler(tmp_path):
    # the control for the test above: the sampler state does matter
    full = make_trainer(seed=0)
    full.fit(progress=False)
    ckpt = tmp_path / "run"
    killed = make_trainer(seed=0, checkpoint_dir=str(ckpt))
    killed.callbacks = [kill_at(6)]
    with pytest.raises(Kill):
        killed.fit(progress=False)
    resumed = Trainer.resume(ckpt, Bigram(), *samplers())
    resumed.train_batches = samplers(seed=99)[0]  # not the checkpointed sampler
    resumed.fit(progress=False)
    assert resumed.history[:4] == full.history[:4]
    assert resumed.history[4:] != full.history[4:]


def test_resume_overrides_config(tmp_path):
    trainer = make_trainer()
    trainer.save_checkpoint(tmp_path)
    resumed = Trainer.resume(tmp_path, Bigram(), *samplers(), max_steps=20)
    assert resumed.config.max_steps == 20 and resumed.config.lr == trainer.config.lr


def test_resume_overrides_reach_the_optimizer(tmp_path):
    trainer = make_trainer(max_steps=4, eval_interval=0)
    trainer.fit(progress=False)
    trainer.save_checkpoint(tmp_path)
    new = dict(weight_decay=0.0, betas=(0.5, 0.6), lr=0.2, min_lr=0.1, max_steps=10)
    resumed = Trainer.resume(tmp_path, Bigram(), *samplers(), **new)
    decay, no_decay = resumed.optimizer.param_groups
    for group in (decay, no_decay):
        assert group["betas"] == (0.5, 0.6) and group["weight_decay"] == 0.0
        assert group["lr"] == lr_at(4, resumed.config)
    # the next step is AdamW's step with the new values, on the restored moments
    ref_model = copy.deepcopy(resumed.model)
    ref = configure_optimizer(ref_model, 0.2, 0.0, (0.5, 0.6))
    ref.load_state_dict(copy.deepcopy(resumed.optimizer.state_dict()))
    x, y = resumed.train_batches(4)
    rng = torch.get_rng_state()
    resumed.train_step(x, y)
    torch.set_rng_state(rng)
    ref.zero_grad()
    ref_model(x, y)[1].backward()
    torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 1.0)
    for group in ref.param_groups:
        group["lr"] = lr_at(4, resumed.config)
    ref.step()
    for p, q in zip(resumed.model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_load_checkpoint_keeps_the_trainers_own_hyperparameters(tmp_path):
    make_trainer(max_steps=4, eval_interval=0).save_checkpoint(tmp_path)
    other = make_trainer(betas=(0.8, 0.85), weight_decay=0.3)
    other.load_checkpoint(tmp_path)
    assert [g["betas"] for g in other.optimizer.param_groups] == [(0.8, 0.85)] * 2
    assert [g["weight_decay"] for g in other.optimizer.param_groups] == [0.3, 0.0]


def test_resume_saves_to_an_overridden_checkpoint_dir(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    make_trainer(max_steps=4, checkpoint_dir=str(old), eval_interval=0).fit(False)
    resumed = Trainer.resume(
        old, Bigram(), *samplers(), checkpoint_dir=str(new), max_steps=6
    )
    resumed.fit(progress=False)
    steps = [
        json.loads((d / "state.json").read_text())["meta"]["step"] for d in (old, new)
    ]
    assert steps == [4, 6]


def test_resume_with_an_unknown_override(tmp_path):
    make_trainer().save_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="'max_step', which is not a TrainConfig"):
        Trainer.resume(tmp_path, Bigram(), *samplers(), max_step=20)


def test_checkpoint_keeps_the_latest_and_the_previous_files(tmp_path):
    trainer = make_trainer(checkpoint_dir=str(tmp_path), eval_interval=0)
    trainer.fit(progress=False)  # saves at 4, 8, 12
    names = {p.name for p in tmp_path.iterdir()}
    tensor_files = names - {"state.json", "state.prev.json"}
    assert len(names) == len(tensor_files) + 2
    steps = sorted(n.split("-")[-2] for n in tensor_files)  # 5 tensor files each
    assert steps == ["00000008"] * 5 + ["00000012"] * 5


def test_corrupt_state_json_resumes_from_the_previous_checkpoint(tmp_path):
    trainer = make_trainer(checkpoint_dir=str(tmp_path), eval_interval=0)
    trainer.callbacks = [kill_at(9)]
    with pytest.raises(Kill):
        trainer.fit(progress=False)  # saved at 4 and 8
    (tmp_path / "state.json").write_bytes(b"\x00" * 100)  # a disk error
    with pytest.warns(UserWarning, match="previous checkpoint"):
        resumed = Trainer.resume(tmp_path, Bigram(), *samplers())
    assert resumed.step == 4
    resumed.fit(progress=False)
    full = make_trainer(eval_interval=0)
    full.fit(progress=False)
    assert resumed.history == full.history


def test_tied_weights_survive_a_checkpoint(tmp_path):
    trainer = make_trainer(model=Bigram(tie=True), max_steps=3)
    trainer.fit(progress=False)
    trainer.save_checkpoint(tmp_path)
    other = make_trainer(seed=5, model=Bigram(tie=True))
    other.load_checkpoint(tmp_path)
    assert other.model.head.weight is other.model.wte.weight
    torch.testing.assert_close(other.model.wte.weight, trainer.model.wte.weight)
    meta = json.loads((tmp_path / "state.json").read_text())["meta"]
    assert meta["tied"] == {"head.weight": "wte.weight"}


def _failing(real, fail_on_call):
    calls = []

    def save(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == fail_on_call:
            with open(filename, "wb") as f:
                f.write(b"half a file")  # a partial write, then the crash
            raise OSError("disk full")
        return real(tensors, filename, *args, **kwargs)

    return save


@pytest.mark.parametrize("fail_on_call", [1, 2, 5])  # model, optimizer, last file
def test_crash_while_saving_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, fail_on_call
):
    import lmbook.checkpoint

    trainer = make_trainer(max_steps=6, eval_interval=0)
    trainer.fit(progress=False)
    trainer.save_checkpoint(tmp_path)
    saved = copy.deepcopy(trainer.model.state_dict())
    trainer.config.max_steps = 8
    trainer.fit(progress=False)
    real = lmbook.checkpoint.save_file
    monkeypatch.setattr(lmbook.checkpoint, "save_file", _failing(real, fail_on_call))
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(tmp_path)
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    other = make_trainer(seed=1)
    other.load_checkpoint(tmp_path)
    assert other.step == 6
    for k, v in other.model.state_dict().items():
        torch.testing.assert_close(v, saved[k])


def test_crash_before_the_commit_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer = make_trainer(max_steps=4, eval_interval=0)
    trainer.fit(progress=False)
    trainer.save_checkpoint(tmp_path)
    trainer.config.max_steps = 6
    trainer.fit(progress=False)
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith("state.json"):
            raise OSError("power cut")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="power cut"):
        trainer.save_checkpoint(tmp_path)
    monkeypatch.undo()
    other = make_trainer(seed=1)
    other.load_checkpoint(tmp_path)
    assert other.step == 4 and len(other.history) == 4


def test_mismatched_shapes_name_the_key_and_both_shapes(tmp_path):
    make_trainer(model=Bigram(n_embd=8)).save_checkpoint(tmp_path)
    other = make_trainer(model=Bigram(n_embd=12))
    before = copy.deepcopy(other.model.state_dict())
    with pytest.raises(ValueError, match=r"'wte.weight'.*\(16, 12\).*\(16, 8\)"):
        other.load_checkpoint(tmp_path)
    for k, v in other.model.state_dict().items():  # nothing was changed
        torch.testing.assert_close(v, before[k])


def test_checkpoint_missing_a_key_of_the_model(tmp_path):
    make_trainer(model=Bigram(tie=True)).save_checkpoint(tmp_path)

    class Bigger(Bigram):
        def __init__(self):
            super().__init__(tie=True)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="lacks key 'extra.bias'"):
        make_trainer(model=Bigger()).load_checkpoint(tmp_path)


def test_checkpoint_with_a_key_the_model_lacks(tmp_path):
    make_trainer(model=Bigram()).save_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="has key 'head.bias', which the model lacks"):
        make_trainer(model=Bigram(tie=True)).load_checkpoint(tmp_path)


def test_truncated_model_file(tmp_path):
    make_trainer().save_checkpoint(tmp_path)
    model_file = next(tmp_path.glob("model-*.safetensors"))
    model_file.write_bytes(model_file.read_bytes()[:50])
    with pytest.raises(ValueError, match="cannot be read"):
        make_trainer().load_checkpoint(tmp_path)


def test_no_checkpoint_in_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no state.json"):
        make_trainer().load_checkpoint(tmp_path)


# --- bad input ---------------------------------------------------------------------


def test_config_max_steps_zero():
    with pytest.raises(ValueError, match="max_steps must be >= 1, got 0"):
        TrainConfig(max_steps=0)


def test_config_batch_size_str():
    with pytest.raises(TypeError, match="batch_size must be an int, got str"):
        TrainConfig(batch_size="32")


def test_config_lr_zero():
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        TrainConfig(lr=0)


def test_config_min_lr_above_lr():
    with pytest.raises(ValueError, match=r"min_lr must be in \[0, 0.001\], got 0.01"):
        TrainConfig(lr=1e-3, min_lr=1e-2)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    "field", ["lr", "min_lr", "weight_decay", "grad_clip", "betas"]
)
def test_config_rejects_non_finite_numbers(field, value):
    kw = {field: (0.9, value) if field == "betas" else value}
    name = "betas[1]" if field == "betas" else field
    with pytest.raises(ValueError, match=rf"{re.escape(name)} must be .*, got"):
        TrainConfig(**kw)


def test_config_warmup_longer_than_run():
    with pytest.raises(
        ValueError, match="warmup_steps must be <= max_steps=10, got 11"
    ):
        TrainConfig(max_steps=10, warmup_steps=11)


def test_config_beta_of_one():
    with pytest.raises(ValueError, match=r"betas\[0\] must be in \[0, 1\), got 1.0"):
        TrainConfig(betas=(1.0, 0.95))


def test_config_betas_not_a_pair():
    with pytest.raises(ValueError, match="betas must be a pair"):
        TrainConfig(betas=0.9)


def test_config_negative_grad_clip():
    with pytest.raises(ValueError, match="grad_clip must be >= 0, got -1.0"):
        TrainConfig(grad_clip=-1.0)


def test_config_unknown_mixed_precision():
    with pytest.raises(ValueError, match="mixed_precision must be one of.*'fp8'"):
        TrainConfig(mixed_precision="fp8")


def test_config_checkpoint_interval_zero():
    with pytest.raises(ValueError, match="checkpoint_interval must be >= 1, got 0"):
        TrainConfig(checkpoint_interval=0)


def test_lr_at_negative_step():
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        lr_at(-1, TrainConfig())


def test_configure_optimizer_with_nothing_to_train():
    model = Bigram().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad=True"):
        configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95))


def test_trainer_model_not_a_module():
    with pytest.raises(TypeError, match="model must be an nn.Module, got function"):
        Trainer(lambda x, y: x, config(), samplers()[0])


def test_trainer_config_not_a_config():
    with pytest.raises(TypeError, match="config must be a TrainConfig, got dict"):
        Trainer(Bigram(), {"lr": 1e-3}, samplers()[0])


def test_trainer_train_batches_of_wrong_type():
    with pytest.raises(TypeError, match="train_batches must be a callable.*got int"):
        Trainer(Bigram(), config(), 5)


def test_trainer_callback_not_callable():
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be callable, got str"):
        Trainer(Bigram(), config(), samplers()[0], callbacks=["plot"])


def test_batch_that_is_not_a_pair():
    trainer = Trainer(Bigram(), config(), lambda b: torch.zeros(b, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"train_batches must give \(x, y\).*Tensor"):
        trainer.fit(progress=False)


def test_model_that_returns_only_logits():
    class LogitsOnly(Bigram):
        def forward(self, x, y=None):
            return super().forward(x)[0]

    trainer = Trainer(LogitsOnly(), config(), samplers()[0])
    with pytest.raises(TypeError, match=r"must return \(logits, loss\)"):
        trainer.fit(progress=False)


def test_empty_iterable_of_batches():
    trainer = Trainer(Bigram(), config(), [])
    with pytest.raises(ValueError, match="train_batches is an empty iterable"):
        trainer.fit(progress=False)


def test_evaluate_without_val_batches():
    with pytest.raises(ValueError, match="evaluate\\(\\) needs val_batches"):
        Trainer(Bigram(), config(), samplers()[0]).evaluate()


def test_save_checkpoint_without_a_path():
    with pytest.raises(TypeError, match="checkpoint_dir must be a str or os.Path"):
        make_trainer().save_checkpoint()


def test_checkpoint_dir_that_is_a_file(tmp_path):
    file = tmp_path / "run"
    file.write_text("notes")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*run' is a file"):
        config(checkpoint_dir=str(file))
    trainer = make_trainer(checkpoint_dir=str(tmp_path / "later"), max_steps=4)
    (tmp_path / "later").write_text("made after the config")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*later' is a file"):
        trainer.fit(progress=False)
    with pytest.raises(ValueError, match=r"path '.*run' is a file"):
        trainer.save_checkpoint(file)
    assert file.read_text() == "notes"


@pytest.mark.parametrize("which", ["train_batches", "val_batches"])
def test_empty_batch_is_refused(which):
    empty = torch.zeros(0, 8, dtype=torch.long)
    good = samplers()[0]
    sources = {"train_batches": good, "val_batches": good}
    sources[which] = lambda batch_size: (empty, empty)
    trainer = Trainer(Bigram(), config(eval_interval=1), **sources)
    with pytest.raises(ValueError, match=f"{which} gave an empty batch.*B >= 1"):
        trainer.fit(progress=False)
