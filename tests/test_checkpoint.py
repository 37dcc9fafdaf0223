"""lmbook.checkpoint: folder round trips, tied tensors, optimizer and RNG states,
atomic writes, the previous checkpoint as a fallback, rebuilding the model with
load_model, and corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import os
import random
import stat

import numpy as np
import pytest
import torch

import lmbook.checkpoint
from lmbook import fileio
from lmbook.checkpoint import (
    check_matches,
    join_optimizer_state,
    load_model,
    read_checkpoint,
    retie,
    rng_state,
    set_rng_state,
    split_optimizer_state,
    untie,
    write_checkpoint,
)
from lmbook.gpt import GPT, GPTConfig
from lmbook.rnn import RNNLM
from lmbook.train import TrainConfig, Trainer


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "model": {
            "w": torch.randn(3, 4, generator=g),
            "half": torch.randn(5, generator=g).to(torch.bfloat16),
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
        },
        "rng": {"ids": torch.arange(7), "bytes": torch.arange(9, dtype=torch.uint8)},
    }


def test_write_read_round_trip(tmp_path):
    tensors, meta = _tensors(), {"step": 3, "history": [[1, 0.5, None, 1e-3]]}
    write_checkpoint(tmp_path, tensors, meta, step=3)
    got, got_meta = read_checkpoint(tmp_path)
    assert got_meta == meta
    assert got.keys() == tensors.keys()
    for kind in tensors:
        assert got[kind].keys() == tensors[kind].keys()
        for k, v in tensors[kind].items():
            assert got[kind][k].dtype == v.dtype
            torch.testing.assert_close(got[kind][k], v, rtol=0, atol=0)
    assert read_checkpoint(tmp_path, load_tensors=False) == ({}, meta)


def test_a_new_checkpoint_keeps_only_itself_and_the_previous_one(tmp_path):
    for step in (1, 2, 3):
        write_checkpoint(tmp_path, _tensors(), {"step": step}, step=step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-2:] == ["state.json", "state.prev.json"]
    assert (
        sorted(n.split("-")[1] for n in names[:-2])
        == ["00000002"] * 2 + ["00000003"] * 2
    )
    assert read_checkpoint(tmp_path)[1] == {"step": 3}
    prev = json.loads((tmp_path / "state.prev.json").read_text())
    assert prev["meta"] == {"step": 2}
    assert all((tmp_path / f).is_file() for f in prev["files"].values())


@pytest.mark.parametrize("damage", ["corrupt", "missing", "tensor file gone"])
def test_a_damaged_state_json_falls_back_to_the_previous_checkpoint(tmp_path, damage):
    old = _tensors()
    write_checkpoint(tmp_path, old, {"step": 1}, step=1)
    new = {"model": {"w": torch.ones(2)}, "rng": {"ids": torch.arange(3)}}
    write_checkpoint(tmp_path, new, {"step": 2}, step=2)
    state = tmp_path / "state.json"
    if damage == "corrupt":
        state.write_text('{"format": "lmbook.checkpoint", "ver')
    elif damage == "missing":
        state.unlink()
    else:
        next(tmp_path.glob("model-00000002-*.safetensors")).unlink()
    with pytest.warns(UserWarning, match="loading the previous checkpoint"):
        tensors, meta = read_checkpoint(tmp_path)
    assert meta == {"step": 1}
    for kind, group in old.items():
        for k, v in group.items():
            torch.testing.assert_close(tensors[kind][k], v, rtol=0, atol=0)
    # the next save keeps that whole previous checkpoint, not the damaged one
    write_checkpoint(tmp_path, new, {"step": 3}, step=3)
    (tmp_path / "state.json").write_text("garbage")
    with pytest.warns(UserWarning, match="previous checkpoint"):
        assert read_checkpoint(tmp_path)[1] == {"step": 1}


def test_no_previous_checkpoint_to_fall_back_to(tmp_path):
    write_checkpoint(tmp_path, _tensors(), {"step": 1}, step=1)
    (tmp_path / "state.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_checkpoint(tmp_path)


def test_meta_that_is_not_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_checkpoint(tmp_path, _tensors(), {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_stray_temp_files_of_a_killed_save_are_removed(tmp_path):
    stray = [
        ".model-00000001-0123abcd.safetensors.x1y2.tmp",  # an older lmbook's
        ".state.json.999999999-abcdefgh.tmp",  # atomic_write's, of a dead process
        ".tmpAb3dE9",  # safetensors' own, renamed to atomic_write's when complete
    ]
    for name in stray:
        (tmp_path / name).write_bytes(b"half")
    write_checkpoint(tmp_path, _tensors(), {})
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_untie_keeps_one_name_per_shared_tensor():
    w = torch.randn(4, 4)
    state = {"a": w, "b": w, "row0": w[0], "row1": w[1], "t": w.t(), "c": w.clone()}
    tensors, aliases = untie(state)
    assert aliases == {"b": "a"}  # views with other offsets or strides are kept
    assert set(tensors) == {"a", "row0", "row1", "t", "c"}
    back = retie(tensors, aliases)
    assert back.keys() == state.keys() and back["b"] is back["a"]


def test_check_matches_names_key_and_shapes():
    have = {"x": torch.zeros(2, 3), "y": torch.zeros(4)}
    check_matches(have, {"x": torch.ones(2, 3), "y": torch.ones(4)})
    with pytest.raises(ValueError, match=r"'x'.*shape \(2, 3\).*shape \(3, 2\)"):
        check_matches(have, {"x": torch.zeros(3, 2), "y": torch.zeros(4)})
    with pytest.raises(ValueError, match="lacks key 'y'"):
        check_matches(have, {"x": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="has key 'z', which the model lacks"):
        check_matches(have, {**have, "z": torch.zeros(1)})


def test_rng_state_round_trip():
    tensors, meta = rng_state()
    meta = json.loads(json.dumps(meta))  # as it comes back from state.json
    first = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    set_rng_state(tensors, meta)
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.testing.assert_close(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2:] == again[2:]


def test_optimizer_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = split_optimizer_state(opt.state_dict())
    meta = json.loads(json.dumps(meta))
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    fresh.load_state_dict(join_optimizer_state(fresh, tensors, meta))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, state in a["state"].items():
        for name, v in state.items():
            torch.testing.assert_close(b["state"][pid][name], v)


def test_optimizer_state_of_another_shape():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = split_optimizer_state(opt.state_dict())
    other = torch.optim.AdamW(torch.nn.Linear(5, 2).parameters())
    with pytest.raises(ValueError, match=r"'0.exp_avg'.*\(2, 5\).*\(2, 3\)"):
        join_optimizer_state(other, tensors, meta)


def test_optimizer_state_with_other_groups():
    model = torch.nn.Linear(3, 2)
    tensors, meta = split_optimizer_state(
        torch.optim.AdamW(model.parameters()).state_dict()
    )
    two = torch.optim.AdamW([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(ValueError, match=r"group sizes.*\[1, 1\].*\[2\]"):
        join_optimizer_state(two, tensors, meta)


def test_checkpoint_writes_with_the_shared_atomic_write():
    assert lmbook.checkpoint.atomic_write is fileio.atomic_write


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoint_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_checkpoint(tmp_path / "run", _tensors(), {}, step=1)
        write_checkpoint(tmp_path / "run", _tensors(), {}, step=2)
    finally:
        os.umask(old)
    files = list((tmp_path / "run").iterdir())
    assert len(files) == 6
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {mode}
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o777 & ~umask


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("new but unfinish")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        fileio.atomic_write(path, write)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# --- bad input ---------------------------------------------------------------------


def _state(tmp_path, **changes):
    write_checkpoint(tmp_path, _tensors(), {"step": 1})
    state = json.loads((tmp_path / "state.json").read_text())
    state.update(changes)
    (tmp_path / "state.json").write_text(json.dumps(state))


def test_read_path_of_wrong_type():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        read_checkpoint(3)


def test_write_to_a_file_instead_of_a_folder(tmp_path):
    file = tmp_path / "run"
    file.write_text("notes")
    with pytest.raises(ValueError, match=r"path '.*run' is a file; expected a"):
        write_checkpoint(file, _tensors(), {})
    with pytest.raises(ValueError, match=r"path '.*run' is a file; expected a"):
        read_checkpoint(file)
    with pytest.raises(ValueError, match=r"cannot be created: '.*run' is a file"):
        write_checkpoint(file / "sub", _tensors(), {})
    assert file.read_text() == "notes"


def test_read_corrupt_state_json(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_checkpoint(tmp_path)


def test_read_wrong_format(tmp_path):
    _state(tmp_path, format="something.else")
    with pytest.raises(ValueError, match="format expected 'lmbook.checkpoint'"):
        read_checkpoint(tmp_path)


def test_read_wrong_version(tmp_path):
    _state(tmp_path, version=2)
    with pytest.raises(ValueError, match="version expected 1, got 2"):
        read_checkpoint(tmp_path)


def test_read_file_name_outside_the_folder(tmp_path):
    _state(tmp_path, files={"model": "../model-00000001-0123abcd.safetensors"})
    with pytest.raises(ValueError, match="is not a tensor file"):
        read_checkpoint(tmp_path)


def test_read_missing_tensor_file(tmp_path):
    write_checkpoint(tmp_path, _tensors(), {})
    next(tmp_path.glob("rng-*.safetensors")).unlink()
    with pytest.raises(ValueError, match="rng-.*cannot be read"):
        read_checkpoint(tmp_path)


def test_read_tensor_file_that_is_not_safetensors(tmp_path):
    write_checkpoint(tmp_path, _tensors(), {})
    next(tmp_path.glob("model-*.safetensors")).write_bytes(b"\x80\x04pickle?")
    with pytest.raises(ValueError, match="model-.*cannot be read"):
        read_checkpoint(tmp_path)


def test_write_bad_group_name(tmp_path):
    with pytest.raises(ValueError, match=r"match \[a-z_\]\+, got '../x'"):
        write_checkpoint(tmp_path, {"../x": {}}, {})


def test_retie_to_a_missing_key():
    with pytest.raises(ValueError, match="'b' refers to 'a', which is missing"):
        retie({}, {"b": "a"})


def test_set_rng_state_incomplete():
    tensors, meta = rng_state()
    del tensors["numpy"]
    with pytest.raises(ValueError, match="RNG state is incomplete or corrupt"):
        set_rng_state(tensors, meta)


# --- load_model: a Trainer's checkpoint rebuilds its model alone -------------------


def _tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt":
        cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
        return GPT(cfg)
    return RNNLM(11, 6, num_layers=2, cell="gru", dropout=0.1)


def _trained(kind: str, folder) -> torch.nn.Module:
    """A tiny model after two Trainer steps that saved to `folder`."""
    model = _tiny(kind)
    x = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(max_steps=2, batch_size=3, lr=0.05, warmup_steps=0)
    cfg.checkpoint_dir, cfg.eval_interval = str(folder), 0
    Trainer(model, cfg, lambda b: (x, (x + 1) % 11)).fit(progress=False)
    return model.eval()


@pytest.mark.parametrize("kind", ["gpt", "rnn"])
def test_load_model_rebuilds_the_trained_model(tmp_path, kind):
    trained = _trained(kind, tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(trained) and not loaded.training
    assert loaded is not trained
    if kind == "gpt":
        assert loaded.config == trained.config
        assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied
    else:
        assert loaded.model_args == trained.model_args
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], trained(idx)[0], rtol=0, atol=0)
    init = _tiny(kind).eval()  # the control: training changed the logits
    with torch.no_grad():
        assert not torch.allclose(init(idx)[0], trained(idx)[0])


def test_checkpoint_names_lmbook_models_by_their_public_name(tmp_path):
    _trained("gpt", tmp_path)
    meta = read_checkpoint(tmp_path, load_tensors=False)[1]
    assert meta["model"]["class"] == "GPT"
    assert meta["model"]["config"]["n_layer"] == 2


def _edit_meta(folder, **changes):
    state = json.loads((folder / "state.json").read_text())
    state["meta"].update(changes)
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("name", ["os.system", "lmbook.train.Trainer", "gpt"])
def test_load_model_refuses_a_class_outside_the_allow_list(tmp_path, name):
    _trained("gpt", tmp_path)
    _edit_meta(tmp_path, model={"class": name, "config": {}})
    with pytest.raises(ValueError, match=f"'{name}' is not one that load_model"):
        load_model(tmp_path)


def test_load_model_with_a_config_that_does_not_fit(tmp_path):
    _trained("rnn", tmp_path)
    _edit_meta(tmp_path, model={"class": "RNNLM", "config": {"vocab": 3}})
    with pytest.raises(ValueError, match="model config does not fit RNNLM"):
        load_model(tmp_path)


def test_load_model_of_a_checkpoint_without_a_model_config(tmp_path):
    write_checkpoint(tmp_path, {"model": {"w": torch.zeros(2)}}, {"step": 1})
    with pytest.raises(ValueError, match="does not record its model's class"):
        load_model(tmp_path)
