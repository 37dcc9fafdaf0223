"""lmbook.checkpoint: folder round trips, tied tensors, optimizer and RNG states,
atomic writes, and corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lmbook.checkpoint import (
    atomic_write,
    check_matches,
    join_optimizer_state,
    read_checkpoint,
    retie,
    rng_state,
    set_rng_state,
    split_optimizer_state,
    untie,
    write_checkpoint,
)


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


def test_a_new_checkpoint_replaces_the_old_files(tmp_path):
    write_checkpoint(tmp_path, _tensors(), {"step": 1}, step=1)
    write_checkpoint(tmp_path, _tensors(), {"step": 2}, step=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and names[-1] == "state.json"
    assert all("-00000002-" in n for n in names[:2])
    assert read_checkpoint(tmp_path)[1] == {"step": 2}


def test_meta_that_is_not_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_checkpoint(tmp_path, _tensors(), {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_stray_temp_files_of_a_killed_save_are_removed(tmp_path):
    (tmp_path / ".model-00000001-0123abcd.safetensors.x1y2.tmp").write_bytes(b"half")
    write_checkpoint(tmp_path, _tensors(), {})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


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


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("new but unfinish")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        atomic_write(path, write)
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
