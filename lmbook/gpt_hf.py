"""Hugging Face GPT-2 interop for `lmbook.gpt.GPT`: convert, load and save.

`GPT` uses the parameter names of OpenAI's GPT-2 (Radford et al., 2019), so a
Hugging Face ``GPT2LMHeadModel`` maps key for key; only the four ``Conv1D``
weights (stored as (in, out), unlike ``nn.Linear``'s (out, in)) are transposed,
as in nanoGPT's ``from_pretrained``. Checkpoints are read and written as
safetensors (``config.json`` + ``model.safetensors``); pickles are never loaded.
`transformers` is needed only by `from_hf`, `to_hf` and hub downloads.

This module does not import `lmbook.gpt` (the model imports it): the functions
that build a model take the class, ``cls``, from `GPT`'s classmethods, and the
others take a model. ``config.json`` carries lmbook's own fields that GPT-2's
config lacks (``"bias"``), so every `GPTConfig` field comes back on loading.
"""

from __future__ import annotations

import json
import math
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmbook.checks import tname
from lmbook.fileio import atomic_folder, check_path, recover_folder
from lmbook.gpt_config import GPTConfig

_CONV1D = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of old checkpoints
# HF activation_function -> GPTConfig.activation. "gelu_new" (GPT-2's default) and
# "gelu_pytorch_tanh" both compute GELU's tanh approximation; "gelu" is the exact one.
_HF_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
_EOT = 50256  # GPT-2's <|endoftext|> id, used as bos/eos when vocab_size is 50257


def _config_from_hf(cfg: dict, source: str) -> GPTConfig:
    """A GPTConfig from a GPT-2 config dict (config.json); unsupported ones raise."""

    def need(ok, key, expected):
        if not ok:
            raise ValueError(
                f"{source}: {key}={cfg.get(key)!r} is not supported by lmbook's GPT "
                f"(expected {expected})"
            )

    need(cfg.get("model_type", "gpt2") == "gpt2", "model_type", "'gpt2'")
    need(
        cfg.get("activation_function", "gelu_new") in _HF_ACTIVATIONS,
        "activation_function",
        " or ".join(map(repr, _HF_ACTIVATIONS)),
    )
    n_embd = cfg.get("n_embd", 768)
    need(cfg.get("n_inner") in (None, 4 * n_embd), "n_inner", "None or 4 * n_embd")
    need(cfg.get("scale_attn_weights", True) is True, "scale_attn_weights", "true")
    need(
        cfg.get("scale_attn_by_inverse_layer_idx", False) is False,
        "scale_attn_by_inverse_layer_idx",
        "false",
    )
    need(cfg.get("add_cross_attention", False) is False, "add_cross_attention", "false")
    need(cfg.get("tie_word_embeddings", True) is True, "tie_word_embeddings", "true")
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    need(
        isinstance(eps, float) and math.isclose(eps, 1e-5), "layer_norm_epsilon", "1e-5"
    )
    drops = {k: cfg.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(drops.values())) != 1:
        raise ValueError(
            f"{source}: lmbook's GPT has one dropout rate but got {drops}; make the "
            f"three equal"
        )
    bias = cfg.get("bias", True)  # lmbook's field; GPT-2 always has biases
    need(isinstance(bias, bool), "bias", "true or false")
    try:
        return GPTConfig(
            bias=bias,
            vocab_size=cfg.get("vocab_size", 50257),
            block_size=cfg.get("n_positions", cfg.get("n_ctx", 1024)),
            n_layer=cfg.get("n_layer", 12),
            n_head=cfg.get("n_head", 12),
            n_embd=n_embd,
            dropout=float(drops["resid_pdrop"]),
            activation=_HF_ACTIVATIONS[cfg.get("activation_function", "gelu_new")],
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err


def _hf_config_dict(config: GPTConfig, dtype: torch.dtype) -> dict:
    """The config.json of a GPT2LMHeadModel with the shape of config."""
    eot = _EOT if config.vocab_size == _EOT + 1 else None
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_inner": None,
        "activation_function": _TO_HF_ACTIVATION[config.activation],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bias": config.bias,  # lmbook's; transformers keeps it as an extra attribute
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": str(dtype).removeprefix("torch."),
    }


def _hf_state_dict(gpt) -> dict[str, torch.Tensor]:
    """gpt's weights under GPT-2's names and (in, out) Conv1D layout, no lm_head.

    A model built with bias=False gets zero biases, which compute the same thing.
    """
    out = {}
    for name, p in gpt.state_dict().items():
        if name == "lm_head.weight":
            continue
        out[name] = p.t() if name.endswith(_CONV1D) else p
    if not gpt.config.bias:
        for name, module in gpt.named_modules():
            if isinstance(module, torch.nn.Linear | torch.nn.LayerNorm):
                if name != "lm_head":
                    n = module.weight.size(0)
                    out[f"{name}.bias"] = module.weight.new_zeros(n)
    return out


def _empty_gpt(cls, config: GPTConfig, device, dtype):
    """An uninitialised cls(config) (no random init cost), ready for weights."""
    with torch.device("meta"):
        gpt = cls(config)
    gpt = gpt.to_empty(device=device).to(dtype)
    gpt.tie_weights()
    return gpt


def _load_weights(gpt, tensors: dict, source: str):
    """Copy GPT-2-named tensors into gpt after checking keys and shapes.

    A model without biases takes a checkpoint whose biases are all zero (what
    `save_pretrained` writes for it); a nonzero one is an error. An ``lm_head``
    different from the token embedding is an error too: the model ties them.
    """
    found = {}
    for key, t in tensors.items():
        if key.endswith(_IGNORED):
            continue
        found[key.removeprefix("transformer.") if key != "lm_head.weight" else key] = t
    lm_head = found.pop("lm_head.weight", None)
    want = {k.removeprefix("transformer."): v for k, v in _hf_state_dict(gpt).items()}
    missing = sorted(set(want) - set(found))
    if missing:
        raise ValueError(f"{source}: missing weight(s) {missing[:5]}")
    unexpected = sorted(set(found) - set(want))
    if unexpected:
        raise ValueError(f"{source}: unexpected weight(s) {unexpected[:5]}")
    for key, t in [*found.items(), ("wte.weight", lm_head)]:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{source}: {key} must be a floating-point tensor")
        if t.shape != want[key].shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(t.shape)} but the config needs "
                f"{tuple(want[key].shape)}"
            )
    if lm_head is not None and not torch.equal(lm_head, found["wte.weight"]):
        raise ValueError(
            f"{source}: lm_head.weight differs from transformer.wte.weight, but "
            f"lmbook's GPT ties them (one matrix); this checkpoint has an untied "
            f"output layer"
        )
    params = dict(gpt.named_parameters())
    with torch.no_grad():
        for key, t in found.items():
            if f"transformer.{key}" not in params:  # a bias the model does not have
                if torch.count_nonzero(t):
                    raise ValueError(
                        f"{source}: {key} is nonzero but config.json says bias=false"
                    )
                continue
            want[key].copy_(t)  # want's tensors are views of gpt's parameters
    return gpt


def from_hf(model, cls):
    """A cls (lmbook's GPT) with the weights, device and dtype of a HF model.

    model must be a ``transformers.GPT2LMHeadModel``.
    """
    try:
        from transformers import GPT2LMHeadModel
    except ImportError:  # then model cannot be a GPT2LMHeadModel
        GPT2LMHeadModel = None
    if GPT2LMHeadModel is None or not isinstance(model, GPT2LMHeadModel):
        raise TypeError(
            f"model must be a transformers.GPT2LMHeadModel, got {tname(model)}"
        )
    config = _config_from_hf(model.config.to_dict(), "model.config")
    sd = model.state_dict()
    w = sd["transformer.wte.weight"]
    gpt = _empty_gpt(cls, config, w.device, w.dtype)
    return _load_weights(gpt, sd, "model").train(model.training)


def _check_gpt(gpt):
    config = getattr(gpt, "config", None)
    if not isinstance(gpt, torch.nn.Module) or not isinstance(config, GPTConfig):
        raise TypeError(f"gpt must be an lmbook GPT, got {tname(gpt)}")


def to_hf(gpt, attn_implementation: str | None = None):
    """A transformers GPT2LMHeadModel with gpt's weights, device, dtype and mode.

    attn_implementation is passed to transformers ("eager", "sdpa", ...).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    _check_gpt(gpt)
    w = gpt.lm_head.weight
    cfg = _hf_config_dict(gpt.config, w.dtype)
    for key in ("architectures", "model_type", "dtype", "bias"):
        cfg.pop(key)
    with torch.device(w.device):
        hf = GPT2LMHeadModel(GPT2Config(**cfg, attn_implementation=attn_implementation))
    hf = hf.to(w.dtype)
    sd = _hf_state_dict(gpt)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    hf.load_state_dict(sd, strict=True)
    return hf.train(gpt.training)


_WRITTEN = ("model.safetensors", "config.json")
_STALE = ("model.safetensors.index.json",)  # a sharded copy would shadow nothing,
# but would confuse a reader of the folder: an older sharded save is dropped


def save_pretrained(gpt, path) -> None:
    """Write path/config.json and path/model.safetensors in Hugging Face's format.

    ``transformers.GPT2LMHeadModel.from_pretrained(path)`` loads the result. The
    folder is replaced all at once (`lmbook.fileio.atomic_folder`): a crash at
    any moment leaves the old checkpoint or the new one, never a mix. Other
    files already in path (a tokenizer, a model card) are kept.
    """
    _check_gpt(gpt)
    path = check_path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"path {str(path)!r} exists and is a file; expected a folder")
    tensors = {k: v.detach().cpu().contiguous() for k, v in _hf_state_dict(gpt).items()}
    config = _hf_config_dict(gpt.config, gpt.lm_head.weight.dtype)

    def fill(folder):
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        text = json.dumps(config, indent=2) + "\n"
        (folder / "config.json").write_text(text, encoding="utf-8")
        if path.is_dir():  # a sharded save of the old version would mislead
            for name in _STALE:
                (folder / name).touch()  # placeholder, removed below

    atomic_folder(path, fill, keep_others=True)
    for name in _STALE:
        stale = path / name
        if stale.exists() and stale.stat().st_size == 0:
            stale.unlink()


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
    config = _config_from_hf(cfg, cfg_file)
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
    gpt = _empty_gpt(cls, config, "cpu", torch.get_default_dtype())
    return _load_weights(gpt, tensors, source).eval()


def from_pretrained(name_or_path, cls):
    """Load a GPT-2 checkpoint in Hugging Face's format as a cls, eval mode, CPU.

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
