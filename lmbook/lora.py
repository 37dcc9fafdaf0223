"""LoRA: low-rank adapters on the Linear layers of a frozen model.

"LoRA: Low-Rank Adaptation of Large Language Models" (Hu et al., 2022) freezes
a pretrained weight W (d_out, d_in) and learns its change as a product of two
thin matrices, W' = W + (alpha / r) B A with A (r, d_in) and B (d_out, r):
r (d_in + d_out) trainable numbers instead of d_in d_out. B starts at zero, so
the adapted model starts as the base model. Initialisation, scaling, dropout and
parameter names follow Hugging Face's peft (``lora_A``, ``lora_B``,
``base_layer``, ``lora_dropout``); ``use_rslora`` scales by alpha / sqrt(r), as
"A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA" (Kalajdzievski,
2023) proposes.

lmbook's GPT fuses projections that Hugging Face's Llama keeps apart, so
`apply_lora` accepts both vocabularies. On an lmbook GPT (``GPT.to_hf()``
exports it as ``LlamaForCausalLM``):

    Hugging Face name   lmbook module       LoRA on
    q_proj              attn.c_attn         rows 0 .. C (the queries)
    k_proj              attn.c_attn         the next n_kv_head * hs rows
    v_proj              attn.c_attn         the last n_kv_head * hs rows
    o_proj              attn.c_proj         all rows
    gate_proj           mlp.c_fc (SwiGLU)   rows 0 .. n_inner
    up_proj             mlp.c_fc (SwiGLU)   rows n_inner .. 2 n_inner
    down_proj           mlp.c_proj          all rows

A Hugging Face name puts one adapter on its slice of the fused layer, which
computes exactly what peft's adapter on the separate layer computes;
`peft_state_dict` gives the adapters under peft's names. lmbook's own names
(``"c_attn"``, ``"attn.c_proj"``, ...) adapt whole fused layers, as peft does
with GPT-2's ``c_attn``. The wrapped layers sit inside the model, so training,
generation with the KV cache and hooks all run through them.
"""

from __future__ import annotations

import contextlib
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.checks import check_bool, check_float, check_int, tname

__all__ = [
    "LoRALinear",
    "apply_lora",
    "count_parameters",
    "lora_disabled",
    "lora_layers",
    "merge_lora",
    "peft_state_dict",
]

DEFAULT = "default"  # the part name of an adapter on a whole layer (peft's)
ATTN_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PARTS = ("gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus trainable low-rank updates of its weight.

    ``y = base_layer(x) + (alpha / r) * B(A(dropout(x)))``, A initialised like
    ``nn.Linear`` (Kaiming-uniform, a = sqrt(5)) and B to zero, as in peft.
    parts maps a name to the rows ``(start, stop)`` of the output that one
    adapter updates, for layers that fuse several projections (see `apply_lora`);
    by default one adapter, ``"default"``, covers every row. ``merge()`` adds
    the updates into the base weight, ``unmerge()`` subtracts them again.
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        *,
        parts: dict[str, tuple[int, int]] | None = None,
        use_rslora: bool = False,
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {tname(base)}")
        check_int("r", r, low=1)
        alpha = check_float("alpha", alpha, 0.0, low_open=True)
        dropout = check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        check_bool("use_rslora", use_rslora)
        d_out, d_in = base.out_features, base.in_features
        parts = {DEFAULT: (0, d_out)} if parts is None else _check_parts(parts, d_out)
        self.base_layer = base.requires_grad_(False)
        self.in_features, self.out_features = d_in, d_out
        self.r, self.alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.parts = parts
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        kw = dict(bias=False, device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.ModuleDict({n: nn.Linear(d_in, r, **kw) for n in parts})
        self.lora_B = nn.ModuleDict(
            {n: nn.Linear(r, stop - start, **kw) for n, (start, stop) in parts.items()}
        )
        self.merged = False  # True while the updates are inside base_layer.weight
        self.disabled = False  # True inside `lora_disabled`: the base layer alone
        self.reset_parameters()

    def reset_parameters(self):
        """A as nn.Linear's default (Kaiming-uniform, a = sqrt(5)), B = 0."""
        for name in self.parts:
            nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[name].weight)

    def delta_weight(self) -> torch.Tensor:
        """The update of the weight, (out_features, in_features): (alpha/r) B A."""
        w = self.base_layer.weight
        delta = torch.zeros_like(w)
        for name, (start, stop) in self.parts.items():
            BA = self.lora_B[name].weight @ self.lora_A[name].weight  # (rows, d_in)
            delta[start:stop] += self.scaling * BA
        return delta

    def forward(self, x):
        """x: (..., in_features) -> (..., out_features)."""
        y = self.base_layer(x)
        if self.merged or self.disabled:
            return y
        for name, (start, stop) in self.parts.items():
            h = self.lora_A[name](self.lora_dropout(x))  # (..., r)
            delta = self.lora_B[name](h) * self.scaling  # (..., stop - start)
            if stop - start != self.out_features:  # a slice of a fused layer
                delta = F.pad(delta, (start, self.out_features - stop))
            y = y + delta
        return y

    @torch.no_grad()
    def merge(self):
        """Add the update into the base weight: one plain matmul at inference."""
        if self.merged:
            raise RuntimeError("this LoRALinear is already merged; unmerge() first")
        self.base_layer.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """Subtract the update again (exact up to floating-point rounding)."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged; merge() first")
        self.base_layer.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        parts = ", ".join(f"{n}={s}:{e}" for n, (s, e) in self.parts.items())
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}, {parts}"


def _check_parts(parts, d_out):
    if not isinstance(parts, dict) or not parts:
        raise TypeError(
            f"parts must be a non-empty dict of name -> (start, stop), got {parts!r}"
        )
    taken = []
    for name, rows in parts.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"parts: names must be identifiers, got {name!r}")
        ok = isinstance(rows, tuple) and len(rows) == 2
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in rows)
        if not ok or not 0 <= rows[0] < rows[1] <= d_out:
            raise ValueError(
                f"parts[{name!r}] must be a pair of ints (start, stop) with "
                f"0 <= start < stop <= out_features={d_out}, got {rows!r}"
            )
        if any(rows[0] < e and s < rows[1] for s, e in taken):
            raise ValueError(f"parts[{name!r}] = {rows} overlaps another part")
        taken.append(rows)
    return dict(parts)


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """Every `LoRALinear` in model with its qualified name, in module order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _is_gpt(model) -> bool:
    from lmbook.gpt_config import GPTConfig

    return isinstance(getattr(model, "config", None), GPTConfig) and hasattr(
        model, "transformer"
    )


def _matches(name: str, target: str) -> bool:
    """peft's rule: the target is the whole name or a suffix after a dot."""
    return name == target or name.endswith("." + target)


def _gpt_plan(gpt, targets) -> tuple[dict, set]:
    """{module name: parts or None (whole layer)} for an lmbook GPT."""
    from lmbook.gpt_blocks import MLP, CausalSelfAttention

    plan, used = {}, set()

    def add(name, part, rows=None):
        if name in plan and (plan[name] is None) != (part is None):
            raise ValueError(
                f"target_modules adapt {name} both as a whole and by a Hugging "
                f"Face part name; choose one vocabulary per layer"
            )
        plan[name] = None if part is None else {**plan.get(name, {}), part: rows}

    for name, m in gpt.named_modules():
        if isinstance(m, CausalSelfAttention):
            q, kv, _ = m.split
            rows = dict(q_proj=(0, q), k_proj=(q, q + kv), v_proj=(q + kv, q + 2 * kv))
            for part, r in rows.items():
                if part in targets:
                    add(f"{name}.c_attn", part, r)
                    used.add(part)
            if "o_proj" in targets:
                add(f"{name}.c_proj", None)
                used.add("o_proj")
        if isinstance(m, MLP) and m.swiglu:
            n = m.c_proj.in_features
            for part, r in dict(gate_proj=(0, n), up_proj=(n, 2 * n)).items():
                if part in targets:
                    add(f"{name}.c_fc", part, r)
                    used.add(part)
            if "down_proj" in targets:
                add(f"{name}.c_proj", None)
                used.add("down_proj")
    own = [t for t in targets if t not in ATTN_PARTS + MLP_PARTS]
    for name, m in gpt.transformer.h.named_modules(prefix="transformer.h"):
        for t in own:
            if isinstance(m, nn.Linear) and _matches(name, t):
                add(name, None)
                used.add(t)
    return plan, used


def apply_lora(
    model: nn.Module,
    target_modules: list[str],
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    *,
    use_rslora: bool = False,
) -> nn.Module:
    """Wrap the targeted Linear layers of model in `LoRALinear`, in place.

    Every parameter of model is frozen; only the adapters train. A target is a
    module name or a suffix of one after a dot, as in peft's ``target_modules``
    (``["q_proj", "v_proj"]`` on a Hugging Face Llama). On an lmbook GPT it may
    also be a Hugging Face Llama name, which adapts its slice of a fused layer
    (table in this module's docstring); the output layer is never adapted.
    Returns model. Raises if a target matches nothing.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    if isinstance(target_modules, str) or not isinstance(target_modules, list | tuple):
        raise TypeError(
            f"target_modules must be a list of module names, got "
            f"{tname(target_modules)}"
        )
    if not target_modules or not all(isinstance(t, str) and t for t in target_modules):
        raise ValueError(
            f"target_modules must be a non-empty list of non-empty strings, got "
            f"{target_modules!r}"
        )
    check_int("r", r, low=1)
    check_float("alpha", alpha, 0.0, low_open=True)
    check_float("dropout", dropout, 0.0, 1.0, high_open=True)
    if lora_layers(model):
        raise ValueError(
            "model already has LoRA layers; merge_lora(model) first, or start from "
            "a fresh model"
        )
    targets = list(dict.fromkeys(target_modules))
    if _is_gpt(model):
        if any(t == "lm_head" or t.endswith(".lm_head") for t in targets):
            raise ValueError(
                "target_modules: lm_head is not supported on an lmbook GPT (it "
                "shares its weight with the token embedding)"
            )
        plan, used = _gpt_plan(model, set(targets))
        choices = "q_proj ... down_proj, c_attn, c_proj, c_fc"
    else:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        plan = {n: None for n in linear if any(_matches(n, t) for t in targets)}
        used = {t for t in targets if any(_matches(n, t) for n in plan)}
        choices = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in linear}))
    missing = [t for t in targets if t not in used]
    if missing:
        raise ValueError(
            f"target_modules {missing} match no Linear layer of the model; "
            f"names it has: {choices}"
        )
    model.requires_grad_(False)
    for name, parts in plan.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        lora = LoRALinear(base, r, alpha, dropout, parts=parts, use_rslora=use_rslora)
        setattr(parent, child, lora)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters, shared tensors counted once.

    The numbers of peft's ``PeftModel.get_nb_trainable_parameters()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    params = list(model.parameters())  # yields a shared tensor once
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def _require_lora(model) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers; call apply_lora first")
    return layers


def merge_lora(model: nn.Module, unload: bool = True) -> nn.Module:
    """Merge every adapter into its base weight, in place; returns model.

    unload=True (peft's ``merge_and_unload``) then puts the plain ``nn.Linear``
    layers back, so the model has its original modules and names (and can be
    saved or exported); unload=False keeps the wrappers, merged, for `unmerge`.
    """
    check_bool("unload", unload)
    for name, layer in _require_lora(model):
        if not layer.merged:
            layer.merge()
        if unload:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, layer.base_layer)
    return model


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """Within the block model computes without its adapters: the base model.

    peft's ``disable_adapter()``: with fresh adapters this is the frozen
    reference model that DPO needs, at no extra memory.
    """
    layers = [m for _, m in _require_lora(model)]
    if any(m.merged for m in layers):
        raise RuntimeError("cannot disable merged adapters; unmerge them first")
    before = [m.disabled for m in layers]
    for m in layers:
        m.disabled = True
    try:
        yield model
    finally:
        for m, b in zip(layers, before, strict=True):
            m.disabled = b


_LLAMA_NAMES = {
    ("attn.c_attn", "q_proj"): "self_attn.q_proj",
    ("attn.c_attn", "k_proj"): "self_attn.k_proj",
    ("attn.c_attn", "v_proj"): "self_attn.v_proj",
    ("attn.c_proj", DEFAULT): "self_attn.o_proj",
    ("mlp.c_fc", "gate_proj"): "mlp.gate_proj",
    ("mlp.c_fc", "up_proj"): "mlp.up_proj",
    ("mlp.c_proj", DEFAULT): "mlp.down_proj",
}


def peft_state_dict(gpt) -> dict[str, torch.Tensor]:
    """The adapters of an lmbook GPT under peft's names, as detached tensors.

    The names are those of ``get_peft_model_state_dict`` for
    ``get_peft_model(gpt.to_hf(), LoraConfig(...))`` (or of the same checkpoint
    loaded with ``AutoModelForCausalLM``): pass the dict to
    ``peft.set_peft_model_state_dict``. Llama layout: adapters must use the
    Hugging Face part names; GPT-2 layout: lmbook's names, which are GPT-2's.
    """
    from lmbook.gpt_hf import layout

    if not _is_gpt(gpt):
        raise TypeError(f"gpt must be an lmbook GPT, got {tname(gpt)}")
    llama = layout(gpt.config) == "llama"
    out = {}
    for name, layer in _require_lora(gpt):
        m = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", name)
        for part in layer.parts:
            if llama:
                key = _LLAMA_NAMES.get((m.group(2), part)) if m else None
                if key is None:
                    raise ValueError(
                        f"{name} ({part}) has no counterpart in Hugging Face's "
                        f"Llama; adapt it with the names q_proj ... down_proj"
                    )
                key = f"base_model.model.model.layers.{m.group(1)}.{key}"
            else:
                if part != DEFAULT:
                    raise ValueError(
                        f"{name} has part {part!r}, which GPT-2's fused layers do "
                        f"not have in Hugging Face; adapt whole layers (c_attn)"
                    )
                key = f"base_model.model.{name}"
            out[f"{key}.lora_A.weight"] = layer.lora_A[part].weight.detach()
            out[f"{key}.lora_B.weight"] = layer.lora_B[part].weight.detach()
    return out
