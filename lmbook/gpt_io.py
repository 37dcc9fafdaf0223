"""Checkpoints of `lmbook.gpt.GPT` on disk, in Hugging Face's format.

A folder with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``), as ``save_pretrained`` writes it in
transformers. Only safetensors are read: pickled ``pytorch_model.bin`` files
can run code when loaded. Needs no `transformers`; the names and layouts come
from `lmbook.gpt_hf`. Writes replace the folder all at once
(`lmbook.fileio.atomic_folder`), so a crash leaves the old or the new version.
``config.json`` carries lmbook's own fields that the Hugging Face config lacks
(``"bias"`` for GPT-2, ``"dropout"`` for Llama), so every `GPTConfig` field
comes back on loading.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmbook.checks import tname
from lmbook.fileio import atomic_folder, check_path, recover_folder
from lmbook.gpt_hf import (
    check_gpt,
    config_from_hf,
    empty_gpt,
    hf_config_dict,
    hf_state_dict,
    load_weights,
)


def save_pretrained(gpt, path) -> None:
    """Write path/config.json and path/model.safetensors in Hugging Face's format.

    ``transformers.AutoModelForCausalLM.from_pretrained(path)`` loads the result
    (a GPT2LMHeadModel or a LlamaForCausalLM, following the block). The
    folder is replaced all at once (`lmbook.fileio.atomic_folder`): a crash at
    any moment leaves the old checkpoint or the new one, never a mix. Other
    files already in path (a tokenizer, a model card) are kept.
    """
    check_gpt(gpt)
    path = check_path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"path {str(path)!r} exists and is a file; expected a folder")
    tensors = {k: v.detach().cpu().contiguous() for k, v in hf_state_dict(gpt).items()}
    config = hf_config_dict(gpt.config, gpt.lm_head.weight.dtype)

    def fill(folder):
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        text = json.dumps(config, indent=2) + "\n"
        (folder / "config.json").write_text(text, encoding="utf-8")

    atomic_folder(path, fill, keep_others=True)


def _safe_shard_name(name, index: str) -> str:
    """A shard file name from an index, refused if it could leave the folder."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"{index}: shard names must be non-empty strings, got {name!r}"
        )
    bad = (
        "/" in name
        or "\\" in name
        or name in (".", "..")
        or ".." in name
        or os.path.isabs(name)
    )
    if bad:
        raise ValueError(
            f"{index}: shard name {name!r} is not a plain file name (no path "
            f"separators or '..'); refusing to read outside the checkpoint folder"
        )
    return name


def _read_local(path: str, cls):
    try:  # finish or undo a save that a crash interrupted
        recover_folder(path)
    except OSError:  # a read-only folder: nothing to repair there
        pass
    if not os.path.isdir(path):
        raise ValueError(f"name_or_path {path!r} is not a folder")
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise ValueError(
            f"{cfg_file} not found: a checkpoint directory needs config.json and "
            f"model.safetensors"
        )
    try:
        with open(cfg_file, encoding="utf-8") as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg_file} is not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_file} must hold a JSON object, got {tname(cfg)}")
    config = config_from_hf(cfg, cfg_file)
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{index} is not a valid safetensors index: {err}"
            ) from err
        files = [os.path.join(path, _safe_shard_name(s, index)) for s in shards]
    else:
        raise ValueError(
            f"{single} not found; lmbook loads safetensors only (pickled "
            f"pytorch_model.bin files can run code when loaded)"
        )
    tensors = {}
    for file in files:
        try:
            tensors.update(load_file(file))
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{file} is not a readable safetensors file: {err}"
            ) from err
    source = files[0] if len(files) == 1 else index
    gpt = empty_gpt(cls, config, "cpu", torch.get_default_dtype())
    return load_weights(gpt, tensors, source).eval()


def from_pretrained(name_or_path, cls):
    """Load a GPT-2 or Llama checkpoint in Hugging Face's format: cls, eval, CPU.

    name_or_path is a local directory holding config.json and model.safetensors
    (or a sharded model.safetensors.index.json), or a Hugging Face Hub name such
    as "gpt2", downloaded (safetensors only) with huggingface_hub when online.
    Weights are converted to torch's default dtype (float32).
    """
    path = os.fspath(check_path(name_or_path, "name_or_path"))
    if os.path.isdir(path) or os.path.isdir(_old_aside(path)):
        return _read_local(path, cls)
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise ValueError(
            f"name_or_path {path!r} is not a directory; pass a directory holding "
            f"config.json and model.safetensors, or a hub name such as 'gpt2'"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            path, allow_patterns=["config.json", "*.safetensors", "*.index.json"]
        )
    except Exception as err:  # offline, unknown repo, missing package, ...
        raise ValueError(
            f"could not download {path!r} from the Hugging Face Hub "
            f"({type(err).__name__}: {err}); no local directory of that name exists "
            f"either. To load files you already have, pass their directory, e.g. "
            f"GPT.from_pretrained('/path/to/gpt2') with config.json and "
            f"model.safetensors inside"
        ) from err
    return _read_local(local, cls)


def _old_aside(path: str) -> str:
    """Where `atomic_folder` parks the old version of path during a swap."""
    head, tail = os.path.split(os.path.normpath(path))
    return os.path.join(head, f".{tail}.old.tmp")
