"""Checkpoint folders that survive a crash mid-save, and RNG states to put in them.

A checkpoint is a folder holding ``<kind>-<tag>.safetensors`` files (tensors
only, so loading never unpickles anything; see the safetensors format) and
``state.json`` (all other state, and the names of the current tensor files).
Every file is written to a temporary name and renamed with ``os.replace``, which
is atomic on POSIX and Windows. Renaming ``state.json`` is the commit: until then
the previous ``state.json`` still names the previous, untouched tensor files.
`lmbook.train.Trainer` builds its checkpoints on these functions.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = "lmbook.checkpoint"
_TENSOR_FILE = re.compile(r"([a-z_]+)-\d{8,}-[0-9a-f]{8}\.safetensors")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    if os.name == "posix":  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_path(path: object) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def write_checkpoint(
    path: str | os.PathLike,
    tensors: dict[str, dict[str, torch.Tensor]],
    meta: dict[str, Any],
    step: int = 0,
) -> Path:
    """Save ``tensors[kind]`` as ``<kind>-<step>-<random>.safetensors`` and `meta`.

    `meta` must be JSON-serialisable. Tensors are copied to the CPU. When the new
    ``state.json`` is in place, tensor files of older checkpoints are removed.
    """
    path = _check_path(path)
    path.mkdir(parents=True, exist_ok=True)
    for kind in tensors:
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z_]+", kind):
            raise ValueError(f"tensor group names must match [a-z_]+, got {kind!r}")
    tag = f"{step:08d}-{uuid.uuid4().hex[:8]}"
    files = {kind: f"{kind}-{tag}.safetensors" for kind in tensors}
    text = json.dumps({"format": FORMAT, "version": 1, "files": files, "meta": meta})
    for kind, group in tensors.items():
        group = {k: v.detach().cpu().contiguous() for k, v in group.items()}
        atomic_write(path / files[kind], lambda tmp, g=group: save_file(g, tmp))
    atomic_write(path / "state.json", lambda tmp: Path(tmp).write_text(text))
    for old in path.iterdir():  # committed: drop older tensors and stray temp files
        stale = _TENSOR_FILE.fullmatch(old.name) and old.name not in files.values()
        if stale or (old.name.startswith(".") and old.name.endswith(".tmp")):
            old.unlink(missing_ok=True)
    return path


def read_checkpoint(
    path: str | os.PathLike, load_tensors: bool = True
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a folder written by `write_checkpoint`: ``(tensors, meta)``, on the CPU.

    With ``load_tensors=False`` only ``state.json`` is read and `tensors` is empty.

    Raises ``FileNotFoundError`` if there is no ``state.json`` and ``ValueError``
    if any file is corrupt or names a file that is not there.
    """
    path = _check_path(path)
    file = path / "state.json"
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint folder: no state.json")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{file}: format expected {FORMAT!r}, got {got!r}")
    if state.get("version") != 1:
        raise ValueError(f"{file}: version expected 1, got {state.get('version')!r}")
    files, meta = state.get("files"), state.get("meta")
    if not isinstance(files, dict) or not isinstance(meta, dict):
        raise ValueError(f"{file}: 'files' and 'meta' must be JSON objects")
    tensors = {}
    for kind, name in files.items():
        if not isinstance(name, str) or not _TENSOR_FILE.fullmatch(name):
            raise ValueError(f"{file}: files[{kind!r}] = {name!r} is not a tensor file")
        if not load_tensors:
            continue
        try:
            tensors[kind] = load_file(path / name, device="cpu")
        except Exception as err:  # SafetensorError, OSError: a broken checkpoint
            raise ValueError(
                f"checkpoint file {path / name} cannot be read: {err}"
            ) from err
    return tensors, meta


def untie(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Keep one name per shared tensor (safetensors refuses duplicates).

    Returns ``(tensors, aliases)`` with ``aliases[name] = kept_name``; `retie`
    undoes it.
    """
    seen: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for key, t in state.items():
        ptr = t.untyped_storage().data_ptr()
        ident = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() and ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
            tensors[key] = t
    return tensors, aliases


def retie(tensors: dict[str, torch.Tensor], aliases: dict) -> dict[str, torch.Tensor]:
    """Inverse of `untie`: add each alias back, pointing at its kept tensor."""
    out = dict(tensors)
    for alias, key in aliases.items():
        if key not in tensors:
            raise ValueError(f"tied key {alias!r} refers to {key!r}, which is missing")
        out[alias] = tensors[key]
    return out


def check_matches(have: dict, got: dict, what: str = "model") -> None:
    """Raise ``ValueError`` naming the first key or shape in which `got` differs."""
    missing, unexpected = sorted(have.keys() - got.keys()), sorted(got - have.keys())
    if missing:
        raise ValueError(
            f"{what} checkpoint lacks key {missing[0]!r}, which the model has"
        )
    if unexpected:
        raise ValueError(
            f"{what} checkpoint has key {unexpected[0]!r}, which the model lacks"
        )
    for key, t in have.items():
        if tuple(t.shape) != tuple(got[key].shape):
            raise ValueError(
                f"{what} key {key!r}: the model has shape {tuple(t.shape)}, "
                f"the checkpoint has shape {tuple(got[key].shape)}"
            )


def split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten ``optimizer.state_dict()`` into tensors named ``"<param>.<name>"``
    and a JSON-ready dict with the param groups and any non-tensor state."""
    tensors, extra = {}, {}
    for pid, state in state_dict["state"].items():
        for name, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{name}"] = v
            else:
                extra.setdefault(str(pid), {})[name] = v
    return tensors, {"param_groups": state_dict["param_groups"], "extra": extra}


def join_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> dict:
    """Inverse of `split_optimizer_state`, checked against `optimizer`'s params."""
    groups = [dict(g) for g in meta["param_groups"]]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g["params"]) for g in groups] != sizes:
        raise ValueError(
            f"optimizer param group sizes: the model has {sizes}, the checkpoint "
            f"has {[len(g['params']) for g in groups]}"
        )
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        pid, _, name = key.partition(".")
        if not pid.isdigit() or int(pid) >= len(params):
            raise ValueError(f"optimizer key {key!r} names no parameter")
        shape = tuple(params[int(pid)].shape)
        if t.dim() > 0 and tuple(t.shape) != shape:
            raise ValueError(
                f"optimizer key {key!r}: the parameter has shape {shape}, "
                f"the checkpoint has shape {tuple(t.shape)}"
            )
        state.setdefault(int(pid), {})[name] = t
    for pid, more in meta["extra"].items():
        state.setdefault(int(pid), {}).update(more)
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The states of torch (CPU and every CUDA device), NumPy and `random`."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state, py_state = np.random.get_state(), random.getstate()
    tensors["numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    meta = {
        "numpy": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (CUDA states only where devices exist)."""
    try:
        pos, has_gauss, gauss = meta["numpy"]
        version, py_state, py_gauss = meta["python"]
        mt = tensors["numpy"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", mt, pos, has_gauss, gauss))
        random.setstate((version, tuple(py_state), py_gauss))
        torch.set_rng_state(tensors["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"checkpoint RNG state is incomplete or corrupt: {err!r}"
        ) from err
    for key, t in tensors.items():
        if key.startswith("cuda.") and torch.cuda.is_available():
            i = int(key.split(".")[1])
            if i < torch.cuda.device_count():
                torch.cuda.set_rng_state(t, i)
