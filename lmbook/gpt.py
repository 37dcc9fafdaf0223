"""GPT: a decoder-only transformer language model with GPT-2's layout.

Follows "Improving Language Understanding by Generative Pre-Training" (Radford et
al., 2018) and "Language Models are Unsupervised Multitask Learners" (GPT-2,
Radford et al., 2019): pre-LayerNorm blocks, GELU (Hendrycks & Gimpel, 2016; exact
by default, as in nanoGPT, or GPT-2's tanh approximation), learned positions, tied
input/output embeddings and residual projections initialised with std
0.02 / sqrt(2 * n_layer). Attention is "Attention Is All You Need" (Vaswani et al.,
2017). Sampling offers top-k (Fan et al., 2018) and nucleus top-p (Holtzman et al.,
2020) filtering; generation keeps a key/value cache (Pope et al., 2022, "Efficiently
Scaling Transformer Inference"). The code layout follows Karpathy's minGPT and
nanoGPT, and parameter names match GPT-2's, so Hugging Face checkpoints map one to
one (see `lmbook.gpt_hf`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import causal_mask, scaled_dot_product_attention

_GPT2 = dict(vocab_size=50257, block_size=1024, activation="gelu_tanh")
_ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}  # -> F.gelu(approximate=...)
_PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, **_GPT2),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, **_GPT2),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, **_GPT2),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, **_GPT2),  # 1558M
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192),  # minGPT's small shapes:
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128),  # vocab_size and block_size
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48),  # must be given
}


@dataclass
class GPTConfig:
    """Shape of a GPT. Named shapes: `GPTConfig.from_preset`.

    ``activation`` picks the GELU of the MLP. "gelu" is the exact x * Phi(x)
    (``torch.nn.GELU()``, nanoGPT's choice). "gelu_tanh" is the tanh approximation
    that GPT-2 was trained with; the GPT-2 presets and checkpoints loaded from
    Hugging Face use it, so their outputs match. The two differ by at most about
    5e-4 per activation, and PyTorch's CPU kernel for the exact form is faster.
    """

    vocab_size: int  # number of token ids; ids run from 0 to vocab_size - 1
    block_size: int  # longest sequence (context length) the model accepts
    n_layer: int  # number of transformer blocks
    n_head: int  # attention heads per block; each has n_embd // n_head dims
    n_embd: int  # width of the residual stream (embedding size)
    dropout: float = 0.0  # dropout on embeddings, attention weights and residuals
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2: True)
    activation: str = "gelu"  # "gelu": exact x * Phi(x); "gelu_tanh": GPT-2's formula

    def __post_init__(self):
        for f in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_number(f, getattr(self, f), int, low=1)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd} and "
                f"n_head={self.n_head}; change n_embd to a multiple of n_head "
                f"(e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))}) "
                f"or pick an n_head that divides {self.n_embd}"
            )
        _check_number("dropout", self.dropout, float, low=0.0, high=1.0)
        if not isinstance(self.bias, bool):
            raise TypeError(f"bias must be a bool, got {_tname(self.bias)}")
        if not isinstance(self.activation, str):
            raise TypeError(f"activation must be a str, got {_tname(self.activation)}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(map(repr, _ACTIVATIONS))}, "
                f"got {self.activation!r}"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A named shape, e.g. ``from_preset("gpt2")`` (124M parameters).

        The GPT-2 presets ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl") default to
        vocab_size=50257 and block_size=1024. minGPT's small shapes ("gpt-mini",
        "gpt-micro", "gpt-nano") have no default vocabulary or context, so pass
        both: ``from_preset("gpt-nano", vocab_size=65, block_size=128)``. Any
        other field (e.g. ``dropout``) may be overridden too.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {_tname(name)}")
        if name not in _PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; known presets: {', '.join(_PRESETS)}"
            )
        kwargs = {**_PRESETS[name], **overrides}
        missing = [f for f in ("vocab_size", "block_size") if f not in kwargs]
        if missing:
            raise ValueError(
                f"preset {name!r} needs {' and '.join(missing)}, e.g. "
                f"GPTConfig.from_preset({name!r}, vocab_size=65, block_size=128)"
            )
        return cls(**kwargs)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with GPT-2's fused c_attn projection."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, kv=None, pos=0, need_weights=False):
        """x: (B, T, C) -> (y (B, T, C), weights (B, nh, T, T_k) or None).

        kv: optional cache ``(k, v)``, each (B, nh, L, hs); this call's keys and
        values are written at positions pos .. pos + T - 1 and attention reads
        positions 0 .. pos + T - 1.
        """
        B, T, C = x.size()
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if kv is not None:
            kv[0][:, :, pos : pos + T] = k
            kv[1][:, :, pos : pos + T] = v
            k, v = kv[0][:, :, : pos + T], kv[1][:, :, : pos + T]  # (B, nh, T_k, hs)
        T_k = k.size(2)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            mask = causal_mask(T_k, device=x.device)[T_k - T :]  # (T, T_k)
            y, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p)
        elif T == 1:  # one new query may attend to every cached key
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        elif T == T_k:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            mask = causal_mask(T_k, device=x.device)[T_k - T :]  # (T, T_k)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = _ACTIVATIONS[config.activation]  # "none" or "tanh"

    def forward(self, x):
        """x: (B, T, C) -> (B, T, C)."""
        h = F.gelu(self.c_fc(x), approximate=self.approximate)  # (B, T, 4C)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv=None, pos=0, need_weights=False):
        """x: (B, T, C) -> (x (B, T, C), attention weights or None)."""
        a, weights = self.attn(self.ln_1(x), kv, pos, need_weights)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights


class GPT(nn.Module):
    """GPT-2 style language model; ``GPT(config)(idx, targets) -> (logits, loss)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {_tname(config)}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        self.apply(self._init_weights)
        std = 0.02 / math.sqrt(2 * config.n_layer)  # GPT-2's scaled residual init
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=std)

    def tie_weights(self):
        """Share one matrix between the token embedding and the output layer."""
        self.lm_head.weight = self.transformer.wte.weight

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Number of parameters, the tied embedding counted once.

        With ``non_embedding=True`` the token and position embeddings are left
        out, as in Kaplan et al. (2020); for GPT-2 124M this gives about 85M.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            n -= self.transformer.wpe.weight.numel()
        return n

    def _check_ids(self, ids, name="idx", ignore=None):
        """Raise unless ids is a (B, T) int64 tensor of ids in [0, V) (or ignore)."""
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {_tname(ids)}")
        if ids.dtype != torch.long:
            raise TypeError(
                f"{name} must hold token ids as torch.int64, got {ids.dtype}; "
                f"use {name}.long()"
            )
        if ids.dim() != 2 or ids.size(1) < 1:
            raise ValueError(
                f"{name} must have shape (B, T) with T >= 1, got {tuple(ids.shape)}"
            )
        V = self.config.vocab_size
        if (((ids < 0) & (ids != ignore)) | (ids >= V)).any():
            extra = "" if ignore is None else f" or {ignore} (ignored)"
            raise ValueError(
                f"{name} holds token ids outside [0, vocab_size={V}){extra}: "
                f"min {int(ids.min())}, max {int(ids.max())}"
            )

    def _hidden(self, idx, cache=None, pos=0, need_weights=False):
        """idx: (B, T) -> (final hidden states (B, T, C), per-layer weights)."""
        T = idx.size(1)
        if pos + T > self.config.block_size:
            raise ValueError(
                f"idx has T={T} tokens but block_size is {self.config.block_size}; "
                f"crop it, e.g. idx[:, -{self.config.block_size}:]"
            )
        positions = torch.arange(pos, pos + T, device=idx.device)  # (T,)
        tok = self.transformer.wte(idx)  # (B, T, C)
        x = self.transformer.drop(tok + self.transformer.wpe(positions))  # (B, T, C)
        maps = []
        for i, block in enumerate(self.transformer.h):
            kv = None if cache is None else (cache[0][i], cache[1][i])
            x, weights = block(x, kv, pos, need_weights)
            maps.append(weights)
        return self.transformer.ln_f(x), tuple(maps)

    def forward(self, idx, targets=None):
        """idx: (B, T) int64 -> (logits (B, T, vocab_size), loss or None).

        targets: (B, T) int64, the next token of each position (already shifted,
        unlike Hugging Face's ``labels``); positions whose target is -100 are
        ignored by the mean cross-entropy loss.
        """
        self._check_ids(idx)
        if targets is not None:
            self._check_ids(targets, "targets", ignore=-100)
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, got "
                    f"{tuple(targets.shape)}"
                )
        x, _ = self._hidden(idx)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx) -> tuple[torch.Tensor, ...]:
        """Attention weights of every layer: a tuple of n_layer (B, nh, T, T) tensors.

        The layout of Hugging Face's ``outputs.attentions``. Computed in eval mode
        (no dropout); the module's train/eval mode is restored afterwards.
        """
        self._check_ids(idx)
        was_training = self.training
        self.eval()
        try:
            _, maps = self._hidden(idx, need_weights=True)
        finally:
            self.train(was_training)
        return maps

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens,
        temperature=1.0,
        top_k=None,
        top_p=None,
        use_cache=True,
        generator=None,
    ) -> torch.Tensor:
        """Append max_new_tokens sampled tokens: idx (B, T) -> (B, T + max_new_tokens).

        temperature=0 picks the most likely token (greedy); top_k / top_p
        restrict sampling to the k most likely tokens / the smallest set whose
        probability reaches p; generator (a torch.Generator on idx's device) makes
        sampling reproducible. The model sees at most the last block_size tokens,
        as in nanoGPT: a longer prompt is cropped, and once the KV cache is full
        (use_cache=True) every further step re-encodes the last block_size
        tokens, so cached and uncached generation pick the same tokens. Runs in
        eval mode (no dropout) and restores the module's mode afterwards.
        """
        self._check_ids(idx)
        _check_number("max_new_tokens", max_new_tokens, int, low=0)
        _check_sampling(temperature, top_k, top_p, generator)
        if generator is not None and generator.device.type != idx.device.type:
            raise ValueError(
                f"generator is on {generator.device} but idx is on {idx.device}; "
                f"create it with torch.Generator(device=idx.device)"
            )
        was_training = self.training
        self.eval()
        try:
            out = self._generate(
                idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator
            )
            return out.clone()  # a normal tensor, usable in autograd, not inference
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def _generate(self, idx, max_new, temperature, top_k, top_p, use_cache, gen):
        B, T0 = idx.shape
        L = self.config.block_size
        out = torch.empty(B, T0 + max_new, dtype=torch.long, device=idx.device)
        out[:, :T0] = idx
        cache, pos = None, 0
        if use_cache and max_new > 0:
            size = min(L, T0 + max_new - 1)  # the last new token is never fed back
            nh, hs = self.config.n_head, self.config.n_embd // self.config.n_head
            shape = (self.config.n_layer, B, nh, size, hs)
            w = self.lm_head.weight
            cache = (w.new_empty(shape), w.new_empty(shape))  # keys, values
            layers = self._decode_layers(cache)
        for t in range(T0, T0 + max_new):
            if cache is not None and 0 < pos < cache[0].size(3):
                logits = self._decode_step(out[:, t - 1], layers, pos)  # (B, V)
                pos += 1
            else:  # no cache, first step, or full cache: encode the last L tokens
                window = out[:, max(0, t - L) : t]  # (B, <=L)
                x, _ = self._hidden(window, cache, 0)  # (B, T, C)
                logits = self.lm_head(x[:, -1, :])  # (B, vocab_size)
                pos = window.size(1)
            out[:, t] = _sample(logits, temperature, top_k, top_p, gen)
        return out

    def _decode_layers(self, cache):
        """Per block: its parameters and its KV-cache slices, for _decode_step."""
        layers = []
        for block, k, v in zip(self.transformer.h, cache[0], cache[1], strict=True):
            attn, mlp, ln_1, ln_2 = block.attn, block.mlp, block.ln_1, block.ln_2
            layers.append(
                (
                    (ln_1.weight, ln_1.bias, ln_1.eps),
                    (attn.c_attn.weight, attn.c_attn.bias),
                    (attn.c_proj.weight, attn.c_proj.bias),
                    (ln_2.weight, ln_2.bias, ln_2.eps),
                    (mlp.c_fc.weight, mlp.c_fc.bias),
                    (mlp.c_proj.weight, mlp.c_proj.bias),
                    mlp.approximate,
                    k,  # (B, nh, L, hs)
                    v,  # (B, nh, L, hs)
                )
            )
        return layers

    def _decode_step(self, token, layers, pos):
        """Logits (B, V) for the position after ``token`` (B,), which sits at pos.

        What ``forward`` computes for that one position, given the keys and values
        of positions 0 .. pos - 1 in the cache (this step adds those of pos);
        ``layers`` comes from ``_decode_layers``. One token does little arithmetic
        but reads every weight once, so the step is bound by memory bandwidth, and
        the Python cost of module calls and reshapes would be a tenth of its time.
        Hence this lean form on the modules' own parameters, with one query
        attending to every cached key. Eval mode only (no dropout); the tests check
        it against ``forward``.
        """
        tr, C, nh = self.transformer, self.config.n_embd, self.config.n_head
        B, hs, T_k = token.size(0), C // nh, pos + 1
        x = tr.wte.weight[token] + tr.wpe.weight[pos]  # (B, C)
        for ln_1, c_attn, c_proj, ln_2, c_fc, mlp_proj, approximate, k, v in layers:
            qkv = F.linear(F.layer_norm(x, (C,), *ln_1), *c_attn)  # (B, 3C)
            k.select(2, pos).copy_(qkv[:, C : 2 * C].view(B, nh, hs))  # cache key
            v.select(2, pos).copy_(qkv[:, 2 * C :].view(B, nh, hs))  # and value
            q = qkv[:, :C].view(B, nh, 1, hs)  # one query per head
            y = F.scaled_dot_product_attention(q, k[:, :, :T_k], v[:, :, :T_k])
            y = y.view(B, C)  # (B, nh, 1, hs) -> heads side by side
            x = x + F.linear(y, *c_proj)
            h = F.linear(F.layer_norm(x, (C,), *ln_2), *c_fc)  # (B, 4C)
            x = x + F.linear(F.gelu(h, approximate=approximate), *mlp_proj)  # (B, C)
        x = F.layer_norm(x, (C,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
        return F.linear(x, self.lm_head.weight)  # (B, vocab_size)

    # Hugging Face interop lives in lmbook.gpt_hf; these are thin wrappers.
    @classmethod
    def from_hf(cls, model) -> GPT:
        """A GPT with the weights of a ``transformers.GPT2LMHeadModel``."""
        from lmbook.gpt_hf import from_hf

        return from_hf(model)

    def to_hf(self, attn_implementation=None):
        """A ``transformers.GPT2LMHeadModel`` with this model's weights."""
        from lmbook.gpt_hf import to_hf

        return to_hf(self, attn_implementation=attn_implementation)

    @classmethod
    def from_pretrained(cls, name_or_path) -> GPT:
        """Load a Hugging Face GPT-2 checkpoint: a local directory or a hub name."""
        from lmbook.gpt_hf import from_pretrained

        return from_pretrained(name_or_path)

    def save_pretrained(self, path) -> None:
        """Write ``config.json`` and ``model.safetensors`` in Hugging Face's format."""
        from lmbook.gpt_hf import save_pretrained

        save_pretrained(self, path)


def _tname(value) -> str:
    return type(value).__name__


def _check_number(name, value, kind, low=None, high=None, low_open=False):
    """Raise unless value is a kind (int or float) in [low, high) ((low, high])."""
    kinds = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {kind.__name__}, got {_tname(value)}")
    if low_open:
        ok, rng = low < value <= high, f"({low}, {high}]"
    else:
        ok = (low is None or value >= low) and (high is None or value < high)
        ok = ok and math.isfinite(value)
        rng = f"[{low}, {'inf' if high is None else high})"
    if not ok:
        raise ValueError(f"{name} must be in {rng}, got {value}")


def _check_sampling(temperature, top_k, top_p, generator):
    _check_number("temperature", temperature, float, low=0.0)
    if top_k is not None:
        _check_number("top_k", top_k, int, low=1)
    if top_p is not None:
        _check_number("top_p", top_p, float, low=0.0, high=1.0, low_open=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {_tname(generator)}"
        )


def sample_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Draw one token id per row of logits (B, V) -> (B,) int64.

    temperature=0 is greedy (argmax). top_k keeps the k largest logits (ties with
    the k-th are kept too); top_p keeps the smallest set of most likely tokens
    whose probability sum reaches top_p (the most likely token is always kept).
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = getattr(logits, "dtype", type(logits).__name__)
        raise TypeError(f"logits must be a floating-point tensor, got {got}")
    if logits.dim() != 2 or logits.size(-1) < 1:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
    _check_sampling(temperature, top_k, top_p, generator)
    return _sample(logits, temperature, top_k, top_p, generator)


def _sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature  # (B, V)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)  # (B, V)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of better tokens
        drop_sorted = mass_before >= top_p  # the set already reached top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocab order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
