"""Checkpoint folders that survive a crash mid-save, and RNG states to put in them.

A checkpoint is a folder holding ``<kind>-<tag>.safetensors`` files (tensors
only, so loading never unpickles anything; see the safetensors format) and
``state.json`` (all other state, and the names of the current tensor files).
Every file is written with `lmbook.fileio.atomic_write`. Renaming ``state.json``
into place is the commit: until then it still names the previous, untouched
tensor files. The previous complete checkpoint stays too, as
``state.prev.json`` and its tensor files, until the next one is committed, and
`read_checkpoint` falls back to it (with a warning) when ``state.json`` is
missing or corrupt. A checkpoint also records its model's class and config, so
that `load_model` can rebuild the model alone, as nanoGPT's ``model_args`` do.
`lmbook.train.Trainer` builds its checkpoints on these functions.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import re
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lmbook.checks import check_int, tname
from lmbook.fileio import atomic_write, check_path, remove_stale_temps

FORMAT = "lmbook.checkpoint"
STATE, PREVIOUS = "state.json", "state.prev.json"
_TENSOR_FILE = re.compile(r"([a-z_]+)-\d{8,}-[0-9a-f]{8}\.safetensors")
_SAFETENSORS_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6,12}")  # save_file's own temp file
# The models `load_model` may rebuild: name -> (module, class, config class or None
# when the class takes keyword arguments). Only these are ever imported; a class
# named in a checkpoint file is looked up here, never imported by its name.
_MODELS = {
    "GPT": ("lmbook.gpt", "GPT", "GPTConfig"),
    "RNNLM": ("lmbook.rnn", "RNNLM", None),
}


def _folder(path: object, name: str, create: bool = False) -> Path:
    """`path` as a checkpoint folder's Path; a ValueError naming `name` if a file."""
    path = check_path(path, name)
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{name} {str(path)!r} is a file; expected a checkpoint folder"
        )
    if create and not path.is_dir():
        above = next(p for p in path.parents if p.exists() or p == p.parent)
        if above.exists() and not above.is_dir():
            raise ValueError(
                f"{name} {str(path)!r} cannot be created: {str(above)!r} is a file, "
                "not a folder"
            )
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_checkpoint(
    path: str | os.PathLike,
    tensors: dict[str, dict[str, torch.Tensor]],
    meta: dict[str, Any],
    step: int = 0,
    *,
    name: str = "path",
) -> Path:
    """Save ``tensors[kind]`` as ``<kind>-<step>-<random>.safetensors`` and `meta`.

    `meta` must be JSON-serialisable. Tensors are copied to the CPU. When the new
    ``state.json`` is in place, the previous one is kept as ``state.prev.json``
    with its tensor files; older tensor files are removed. `name` is the
    argument's name in error messages.
    """
    path = check_path(path, name)
    check_int("step", step, 0)
    for kind in tensors:
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z_]+", kind):
            raise ValueError(f"tensor group names must match [a-z_]+, got {kind!r}")
    tag = f"{step:08d}-{uuid.uuid4().hex[:8]}"
    files = {kind: f"{kind}-{tag}.safetensors" for kind in tensors}
    text = json.dumps({"format": FORMAT, "version": 1, "files": files, "meta": meta})
    path = _folder(path, name, create=True)
    for kind, group in tensors.items():
        group = {k: v.detach().cpu().contiguous() for k, v in group.items()}
        atomic_write(path / files[kind], lambda tmp, g=group: save_file(g, tmp))
    current = _complete_state(path, STATE)
    if current is not None:  # keep it until the new one is committed
        atomic_write(path / PREVIOUS, current[0])
    atomic_write(path / STATE, text)  # the commit
    previous = _complete_state(path, PREVIOUS)
    keep = set(files.values()) | (set(previous[1]) if previous else set())
    for old in path.iterdir():  # and what a killed save left
        stale = _TENSOR_FILE.fullmatch(old.name) and old.name not in keep
        if stale or _SAFETENSORS_TMP.fullmatch(old.name):
            old.unlink(missing_ok=True)
    remove_stale_temps(path)
    return path


def _parse_state(file: Path, text: str) -> tuple[dict[str, str], dict[str, Any]]:
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else tname(state)
        raise ValueError(f"{file}: format expected {FORMAT!r}, got {got!r}")
    if state.get("version") != 1:
        raise ValueError(f"{file}: version expected 1, got {state.get('version')!r}")
    files, meta = state.get("files"), state.get("meta")
    if not isinstance(files, dict) or not isinstance(meta, dict):
        raise ValueError(f"{file}: 'files' and 'meta' must be JSON objects")
    for kind, name in files.items():
        if not isinstance(name, str) or not _TENSOR_FILE.fullmatch(name):
            raise ValueError(f"{file}: files[{kind!r}] = {name!r} is not a tensor file")
    return files, meta


def _complete_state(folder: Path, which: str) -> tuple[str, list[str]] | None:
    """(text, tensor file names) of a valid state file whose files all exist."""
    try:
        text = (folder / which).read_text(encoding="utf-8")
        files, _ = _parse_state(folder / which, text)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    names = list(files.values())
    return (text, names) if all((folder / n).is_file() for n in names) else None


def _read(folder: Path, which: str, load_tensors: bool) -> tuple[dict, dict]:
    file = folder / which
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from err
    files, meta = _parse_state(file, text)
    tensors = {}
    for kind, name in files.items() if load_tensors else ():
        try:
            tensors[kind] = load_file(folder / name, device="cpu")
        except Exception as err:  # SafetensorError, OSError: a broken checkpoint
            raise ValueError(
                f"checkpoint file {folder / name} cannot be read: {err}"
            ) from err
    return tensors, meta


def read_checkpoint(
    path: str | os.PathLike, load_tensors: bool = True, *, name: str = "path"
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a folder written by `write_checkpoint`: ``(tensors, meta)``, on the CPU.

    With ``load_tensors=False`` only ``state.json`` is read and `tensors` is empty.
    When ``state.json`` is missing or corrupt (or names a broken tensor file), the
    previous checkpoint is read instead, with a warning.

    Raises ``FileNotFoundError`` if there is no checkpoint in the folder and
    ``ValueError`` if it is corrupt (and no previous one is whole).
    """
    folder = _folder(path, name)
    if not (folder / STATE).is_file() and not (folder / PREVIOUS).is_file():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder: no {STATE}")
    try:
        return _read(folder, STATE, load_tensors)
    except (FileNotFoundError, ValueError) as err:
        if not (folder / PREVIOUS).is_file():
            raise
        try:
            out = _read(folder, PREVIOUS, load_tensors)
        except (FileNotFoundError, ValueError) as err2:
            raise ValueError(f"{err}; the previous checkpoint too: {err2}") from err
        warnings.warn(
            f"{err}; loading the previous checkpoint ({PREVIOUS}) instead",
            stacklevel=2,
        )
        return out


# ---- the model's class and config, to rebuild it ----------------------------------
def model_spec(model: torch.nn.Module) -> dict[str, Any] | None:
    """``{"class", "config"}`` that `load_model` rebuilds `model` from, or None.

    The config is ``model.config`` when it is a dataclass (`lmbook.GPT`'s
    `GPTConfig`), else ``model.model_args``, a dict of constructor arguments
    (`lmbook.RNNLM`'s). lmbook's models are named by their public name ("GPT"),
    others by module and class; None when there is no JSON-ready config.
    """
    cfg = getattr(model, "config", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    else:
        cfg = getattr(model, "model_args", None)
    if not isinstance(cfg, dict):
        return None
    try:
        json.dumps(cfg)
    except (TypeError, ValueError):  # a value JSON cannot hold: not rebuildable
        return None
    cls = type(model)
    name = f"{cls.__module__}.{cls.__qualname__}"
    for short, (module, cls_name, _) in _MODELS.items():
        if getattr(sys.modules.get(module), cls_name, None) is cls:
            name = short
    return {"class": name, "config": cfg}


def load_model(path: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model of a `Trainer` checkpoint folder and load its weights.

    Only lmbook's models (``"GPT"``, ``"RNNLM"``) are rebuilt: the class named in
    the checkpoint is looked up in that fixed list, never imported by its name.
    Returns the model on the CPU, in eval mode, in the dtype it was saved in.
    """
    tensors, meta = read_checkpoint(path)
    spec = meta.get("model")
    ok = isinstance(spec, dict) and isinstance(spec.get("config"), dict)
    if not ok or not isinstance(spec.get("class"), str):
        raise ValueError(
            f"checkpoint {path} does not record its model's class and config; "
            "build the model yourself and load it with Trainer.load_checkpoint"
        )
    if spec["class"] not in _MODELS:
        raise ValueError(
            f"checkpoint {path}: model class {spec['class']!r} is not one that "
            f"load_model rebuilds; expected one of {', '.join(map(repr, _MODELS))}"
        )
    module_name, cls_name, config_name = _MODELS[spec["class"]]
    module = importlib.import_module(module_name)  # a fixed name from _MODELS
    cls, cfg = getattr(module, cls_name), spec["config"]
    try:
        model = cls(getattr(module, config_name)(**cfg)) if config_name else cls(**cfg)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"checkpoint {path}: its model config does not fit {cls_name}: {err}"
        ) from err
    tied = meta.get("tied", {})
    if "model" not in tensors or not isinstance(tied, dict):
        raise ValueError(f"checkpoint {path} has no 'model' tensors (or bad 'tied')")
    state = retie(tensors["model"], tied)
    check_matches(model.state_dict(), state, "model")
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    model.load_state_dict(state)
    return model.eval()


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
