"""Hugging Face interop for `lmbook.gpt.GPT`: configs and weights, both layouts.

A GPT with GPT-2's block maps to ``transformers.GPT2LMHeadModel``: lmbook uses
the parameter names of OpenAI's GPT-2 (Radford et al., 2019), so only the four
``Conv1D`` weights (stored as (in, out), unlike ``nn.Linear``'s (out, in)) are
transposed, as in nanoGPT's ``from_pretrained``. A GPT with Llama's block
(RMSNorm, RoPE, SwiGLU, optional grouped-query attention) maps to
``transformers.LlamaForCausalLM``: the fused ``c_attn`` splits into ``q_proj``,
``k_proj`` and ``v_proj``, and the SwiGLU ``c_fc`` into ``gate_proj`` and
``up_proj``. RoPE uses Hugging Face's rotate-half layout, so no weight is
permuted. Other mixes of switches have no Hugging Face class.

This module does not import `lmbook.gpt` (the model imports it): functions
that build a model take the class, ``cls``, from `GPT`'s classmethods.
`transformers` is imported only by `from_hf` and `to_hf`; the checkpoint files
(`lmbook.gpt_io`) need only safetensors.
"""

from __future__ import annotations

import torch

from lmbook.checks import tname
from lmbook.gpt_config import GPTConfig

_CONV1D = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
IGNORED = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")  # buffers
# HF activation_function -> GPTConfig.activation. "gelu_new" (GPT-2's default) and
# "gelu_pytorch_tanh" both compute GELU's tanh approximation; "gelu" is the exact one.
_HF_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
_EOT = 50256  # GPT-2's <|endoftext|> id, used as bos/eos when vocab_size is 50257
CLASSES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}


def layout(config: GPTConfig) -> str:
    """ "gpt2" or "llama": the Hugging Face model type of config's block."""
    if config.is_gpt2:
        return "gpt2"
    if config.is_llama:
        return "llama"
    raise ValueError(
        "this GPTConfig mixes switches that no Hugging Face class has (norm="
        f"{config.norm!r}, position={config.position!r}, activation="
        f"{config.activation!r}, n_expert={config.n_expert}); only GPT-2's block "
        "and Llama's (rmsnorm, rope, swiglu, no experts) can be exported"
    )


def config_from_hf(cfg: dict, source: str) -> GPTConfig:
    """A GPTConfig from a config dict (config.json); unsupported ones raise."""

    def need(ok, key, expected):
        if not ok:
            raise ValueError(
                f"{source}: {key}={cfg.get(key)!r} is not supported by lmbook's GPT "
                f"(expected {expected})"
            )

    kind = cfg.get("model_type", "gpt2")
    need(kind in CLASSES, "model_type", " or ".join(map(repr, CLASSES)))
    try:
        if kind == "llama":
            return _llama_config(cfg, need)
        return _gpt2_config(cfg, need, source)
    except (TypeError, ValueError) as err:
        if str(err).startswith(source):
            raise
        raise ValueError(f"{source}: {err}") from err


def _gpt2_config(cfg, need, source):
    need(
        cfg.get("activation_function", "gelu_new") in _HF_ACTIVATIONS,
        "activation_function",
        " or ".join(map(repr, _HF_ACTIVATIONS)),
    )
    need(cfg.get("scale_attn_weights", True) is True, "scale_attn_weights", "true")
    need(
        cfg.get("scale_attn_by_inverse_layer_idx", False) is False,
        "scale_attn_by_inverse_layer_idx",
        "false",
    )
    need(cfg.get("add_cross_attention", False) is False, "add_cross_attention", "false")
    need(cfg.get("tie_word_embeddings", True) is True, "tie_word_embeddings", "true")
    drops = {k: cfg.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(drops.values())) != 1:
        raise ValueError(
            f"{source}: lmbook's GPT has one dropout rate but got {drops}; make the "
            f"three equal"
        )
    bias = cfg.get("bias", True)  # lmbook's field; GPT-2 always has biases
    need(isinstance(bias, bool), "bias", "true or false")
    return GPTConfig(
        bias=bias,
        vocab_size=cfg.get("vocab_size", 50257),
        block_size=cfg.get("n_positions", cfg.get("n_ctx", 1024)),
        n_layer=cfg.get("n_layer", 12),
        n_head=cfg.get("n_head", 12),
        n_embd=cfg.get("n_embd", 768),
        n_inner=cfg.get("n_inner"),
        norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
        dropout=float(drops["resid_pdrop"]),
        activation=_HF_ACTIVATIONS[cfg.get("activation_function", "gelu_new")],
    )


def _llama_config(cfg, need):
    need(cfg.get("hidden_act", "silu") == "silu", "hidden_act", "'silu'")
    need(cfg.get("pretraining_tp", 1) in (1, None), "pretraining_tp", "1")
    rope = cfg.get("rope_parameters") or {}
    need(
        rope.get("rope_type", "default") == "default",
        "rope_parameters",
        "rope_type 'default'",
    )
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    need(
        cfg.get("attention_bias", False) == cfg.get("mlp_bias", False),
        "mlp_bias",
        "the value of attention_bias (lmbook has one bias switch)",
    )
    hidden, heads = cfg.get("hidden_size", 4096), cfg.get("num_attention_heads", 32)
    need(cfg.get("head_dim") in (None, hidden // heads), "head_dim", "None or C / nh")
    return GPTConfig(
        vocab_size=cfg.get("vocab_size", 32000),
        block_size=cfg.get("max_position_embeddings", 2048),
        n_layer=cfg.get("num_hidden_layers", 32),
        n_head=heads,
        n_embd=hidden,
        n_kv_head=cfg.get("num_key_value_heads") or heads,
        n_inner=cfg.get("intermediate_size", 11008),
        dropout=float(cfg.get("dropout", cfg.get("attention_dropout", 0.0))),
        bias=bool(cfg.get("attention_bias", False)),
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=cfg.get("rms_norm_eps", 1e-6),
        position="rope",
        rope_theta=float(theta),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )


def hf_config_dict(config: GPTConfig, dtype: torch.dtype) -> dict:
    """The config.json of the Hugging Face model with config's shape and block."""
    dtype = str(dtype).removeprefix("torch.")
    if layout(config) == "llama":
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": config.vocab_size,
            "max_position_embeddings": config.block_size,
            "num_hidden_layers": config.n_layer,
            "num_attention_heads": config.n_head,
            "num_key_value_heads": config.n_kv_head,
            "hidden_size": config.n_embd,
            "intermediate_size": config.n_inner,
            "hidden_act": "silu",
            "rms_norm_eps": config.norm_eps,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": config.rope_theta,
            },
            "attention_bias": config.bias,
            "mlp_bias": config.bias,
            "attention_dropout": config.dropout,
            "dropout": config.dropout,  # lmbook's: it also drops residuals
            "tie_word_embeddings": config.tie_embeddings,
            "initializer_range": 0.02,
            "bos_token_id": None,
            "eos_token_id": None,
            "dtype": dtype,
        }
    eot = _EOT if config.vocab_size == _EOT + 1 else None
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "n_inner": None if config.n_inner == 4 * config.n_embd else config.n_inner,
        "activation_function": _TO_HF_ACTIVATION[config.activation],
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bias": config.bias,  # lmbook's; transformers keeps it as an extra attribute
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": dtype,
    }


def hf_state_dict(gpt) -> dict[str, torch.Tensor]:
    """gpt's weights under Hugging Face's names, as views of gpt's parameters.

    GPT-2: Conv1D weights transposed, no lm_head (tied), and zero biases for a
    model built with bias=False (they compute the same thing). Llama: c_attn and
    c_fc split into their projections; lm_head only when untied.
    """
    if layout(gpt.config) == "llama":
        return _llama_state_dict(gpt)
    out = {}
    for name, p in gpt.state_dict(keep_vars=True).items():
        if name == "lm_head.weight":
            continue
        out[name] = p.t() if name.endswith(_CONV1D) else p
    if not gpt.config.bias:
        for name, module in gpt.named_modules():
            if isinstance(module, torch.nn.Linear | torch.nn.LayerNorm):
                if name != "lm_head":
                    out[f"{name}.bias"] = module.weight.new_zeros(module.weight.size(0))
    return out


def _llama_state_dict(gpt) -> dict[str, torch.Tensor]:
    c, tr = gpt.config, gpt.transformer
    out = {
        "model.embed_tokens.weight": tr.wte.weight,
        "model.norm.weight": tr.ln_f.weight,
    }
    if not c.tie_embeddings:
        out["lm_head.weight"] = gpt.lm_head.weight
    kinds = ("weight", "bias") if c.bias else ("weight",)
    for i, block in enumerate(tr.h):
        pre = f"model.layers.{i}."
        out[pre + "input_layernorm.weight"] = block.ln_1.weight
        out[pre + "post_attention_layernorm.weight"] = block.ln_2.weight
        attn, mlp = block.attn, block.mlp
        for kind in kinds:
            q, k, v = getattr(attn.c_attn, kind).split(attn.split, dim=0)
            gate, up = getattr(mlp.c_fc, kind).chunk(2, dim=0)
            named = dict(
                q_proj=q, k_proj=k, v_proj=v, o_proj=getattr(attn.c_proj, kind)
            )
            for proj, t in named.items():
                out[f"{pre}self_attn.{proj}.{kind}"] = t
            named = dict(
                gate_proj=gate, up_proj=up, down_proj=getattr(mlp.c_proj, kind)
            )
            for proj, t in named.items():
                out[f"{pre}mlp.{proj}.{kind}"] = t
    return out


def empty_gpt(cls, config: GPTConfig, device, dtype):
    """An uninitialised cls(config) (no random init cost), ready for weights."""
    with torch.device("meta"):
        gpt = cls(config)
    gpt = gpt.to_empty(device=device).to(dtype)
    gpt.tie_weights()
    gpt.init_rope()  # RoPE's tables are computed, not loaded
    return gpt


def load_weights(gpt, tensors: dict, source: str):
    """Copy Hugging Face-named tensors into gpt after checking keys and shapes.

    A GPT-2-layout model without biases takes a checkpoint whose biases are all
    zero (what `save_pretrained` writes for it); a nonzero one is an error. An
    ``lm_head`` different from the token embedding is an error when the model
    ties them.
    """
    gpt2 = layout(gpt.config) == "gpt2"

    def key_of(name):  # OpenAI's GPT-2 files lack the "transformer." prefix
        return name.removeprefix("transformer.") if gpt2 else name

    found = {key_of(k): t for k, t in tensors.items() if not k.endswith(IGNORED)}
    want = {key_of(k): v for k, v in hf_state_dict(gpt).items()}
    lm_head = None
    if gpt.config.tie_embeddings:
        lm_head = found.pop("lm_head.weight", None)
    missing = sorted(set(want) - set(found))
    if missing:
        raise ValueError(f"{source}: missing weight(s) {missing[:5]}")
    unexpected = sorted(set(found) - set(want))
    if unexpected:
        raise ValueError(f"{source}: unexpected weight(s) {unexpected[:5]}")
    for key, t in found.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{source}: {key} must be a floating-point tensor")
        if t.shape != want[key].shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(t.shape)} but the config needs "
                f"{tuple(want[key].shape)}"
            )
    emb = "wte.weight" if gpt2 else "model.embed_tokens.weight"
    if lm_head is not None and not (
        lm_head.shape == found[emb].shape and torch.equal(lm_head, found[emb])
    ):
        raise ValueError(
            f"{source}: lm_head.weight differs from {'transformer.' * gpt2}{emb}, "
            f"but the config ties them (one matrix); this checkpoint has an untied "
            f"output layer"
        )
    params = {id(p) for p in gpt.parameters()}
    with torch.no_grad():
        for key, t in found.items():
            target = want[key]
            if gpt2 and not gpt.config.bias and key.endswith(".bias"):
                if torch.count_nonzero(t):
                    raise ValueError(
                        f"{source}: {key} is nonzero but config.json says bias=false"
                    )
                continue
            assert target._base is not None or id(target) in params, key
            target.copy_(t)  # a view of one of gpt's parameters
    return gpt


def _hf_classes():
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    return {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}


def from_hf(model, cls):
    """A cls (lmbook's GPT) with the weights, device and dtype of a HF model.

    model is a ``transformers.GPT2LMHeadModel`` or ``LlamaForCausalLM``.
    """
    try:
        classes = tuple(_hf_classes().values())
    except ImportError:  # then model cannot be one of them
        classes = ()
    if not classes or not isinstance(model, classes):
        raise TypeError(
            "model must be a transformers.GPT2LMHeadModel or LlamaForCausalLM, got "
            f"{tname(model)}"
        )
    config = config_from_hf(model.config.to_dict(), "model.config")
    sd = model.state_dict()
    w = model.get_input_embeddings().weight
    gpt = empty_gpt(cls, config, w.device, w.dtype)
    return load_weights(gpt, sd, "model").train(model.training)


def check_gpt(gpt, name="gpt"):
    """Raise unless gpt looks like an lmbook GPT (a Module with a GPTConfig)."""
    config = getattr(gpt, "config", None)
    if not isinstance(gpt, torch.nn.Module) or not isinstance(config, GPTConfig):
        raise TypeError(f"{name} must be an lmbook GPT, got {tname(gpt)}")


def to_hf(gpt, attn_implementation: str | None = None):
    """The Hugging Face model with gpt's weights, device, dtype and train mode.

    A ``GPT2LMHeadModel`` or a ``LlamaForCausalLM``, following gpt's block.
    attn_implementation is passed to transformers ("eager", "sdpa", ...).
    """
    from transformers import AutoConfig

    check_gpt(gpt)
    kind = layout(gpt.config)
    w = gpt.lm_head.weight
    cfg = hf_config_dict(gpt.config, w.dtype)
    for key in ("architectures", "model_type", "dtype", "bias", "dropout"):
        cfg.pop(key, None)
    hf_config = AutoConfig.for_model(
        kind, **cfg, attn_implementation=attn_implementation
    )
    with torch.device(w.device):
        hf = _hf_classes()[kind](hf_config)
    hf = hf.to(w.dtype)
    sd = {k: v.detach() for k, v in hf_state_dict(gpt).items()}
    if gpt.config.tie_embeddings:
        emb = (
            "transformer.wte.weight" if kind == "gpt2" else "model.embed_tokens.weight"
        )
        sd["lm_head.weight"] = sd[emb]
    hf.load_state_dict(sd, strict=False if kind == "llama" else True)
    missing = set(hf.state_dict()) - set(sd)
    if any(not k.endswith(IGNORED) for k in missing):
        raise AssertionError(f"weights not set in the Hugging Face model: {missing}")
    return hf.train(gpt.training)
