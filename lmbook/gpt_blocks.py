"""The parts of a GPT block: attention with a KV cache, the MLP, norms, RoPE, MoE.

`lmbook.gpt.GPT` stacks `Block`s. Each part follows a `GPTConfig` switch: the
defaults build GPT-2's block (Radford et al., 2019); the switches build Llama's
(Touvron et al., 2023): RMSNorm (Zhang & Sennrich, 2019), rotary position
embeddings in Hugging Face's rotate-half layout (Su et al., 2021), SwiGLU
(Shazeer, 2020) and grouped-query attention (Ainslie et al., 2023). `MoE` is a
top-k mixture of experts with the load-balancing loss of the Switch Transformer
(Fedus et al., 2022), routed as in Mixtral (Jiang et al., 2024). Parameter names
stay GPT-2's (``c_attn``, ``c_fc``, ``c_proj``) in every layout; `lmbook.gpt_hf`
maps them to Hugging Face's.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import attend
from lmbook.checks import check_int, tname
from lmbook.gpt_config import ACTIVATIONS, GPTConfig

__all__ = ["KVCache", "CausalSelfAttention", "MLP", "MoE", "Block", "make_norm"]


def make_norm(config: GPTConfig) -> nn.Module:
    """The block's normalisation: LayerNorm (GPT-2) or RMSNorm (Llama)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_tables(config: GPTConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's angles, each (block_size, hs), in float32.

    Position p rotates dimension pair i (dims i and i + hs/2, the rotate-half
    layout) by the angle p * theta^(-2i/hs), as Hugging Face's Llama does.
    """
    hs = config.head_size
    inv_freq = config.rope_theta ** -(
        torch.arange(0, hs, 2, dtype=torch.float32, device=device) / hs
    )  # (hs/2,)
    p = torch.arange(config.block_size, dtype=torch.float32, device=device)
    angles = torch.outer(p, inv_freq)  # (block_size, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (block_size, hs)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate x (B, nh, T, hs) by the angles of its T positions: cos, sin (T, hs)."""
    x1, x2 = x.chunk(2, dim=-1)  # the two halves, (B, nh, T, hs/2) each
    rotated = torch.cat([-x2, x1], dim=-1)  # (B, nh, T, hs)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class KVCache:
    """Keys and values of the positions seen so far, for every layer.

    Preallocated as two (n_layer, B, n_kv_head, max_len, hs) tensors;
    ``layers[i]`` is layer i's (keys, values) pair of views and ``length`` the
    number of positions stored. Pass it to ``GPT.forward(idx, kv_cache=cache)``:
    the new positions continue from ``length``, their keys and values are
    written, and ``length`` grows by T. With grouped-query attention the cache
    holds only the n_kv_head shared heads: that is what GQA saves.
    """

    def __init__(self, config, batch_size, max_len, device=None, dtype=None):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {tname(config)}")
        check_int("batch_size", batch_size, low=1)
        check_int("max_len", max_len, low=1, high=config.block_size)
        shape = (
            config.n_layer,
            batch_size,
            config.n_kv_head,
            max_len,
            config.head_size,
        )
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.layers = [(self.keys[i], self.values[i]) for i in range(config.n_layer)]
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with GPT-2's fused c_attn projection.

    The computation of `lmbook.attention.MultiHeadAttention` (both call
    `lmbook.attention.attend`), under GPT-2's parameter names so that checkpoints
    map key for key, with a key/value cache, optional RoPE, and grouped-query
    attention: n_kv_head key/value heads, each shared by n_head // n_kv_head
    query heads (c_attn's rows are then n_embd queries, then the keys, then the
    values, each n_kv_head * hs).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        hs = config.head_size
        self.split = (config.n_embd, self.n_kv_head * hs, self.n_kv_head * hs)
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, sum(self.split), bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, kv=None, pos=0, need_weights=False, rope=None):
        """x: (B, T, C) -> (y (B, T, C), weights (B, nh, T, T_k) or None).

        kv: optional cache ``(k, v)``, each (B, n_kv_head, L, hs); this call's
        keys and values are written at positions pos .. pos + T - 1 and attention
        reads positions 0 .. pos + T - 1. rope: (cos, sin) of those T positions.
        """
        B, T, C = x.size()
        nh, nkv, hs = self.n_head, self.n_kv_head, C // self.n_head
        q, k, v = self.c_attn(x).split(
            self.split, dim=2
        )  # (B, T, C), 2 x (B, T, nkv*hs)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv is not None:
            kv[0].narrow(2, pos, T).copy_(k)
            kv[1].narrow(2, pos, T).copy_(v)
            k, v = kv[0].narrow(2, 0, pos + T), kv[1].narrow(2, 0, pos + T)
        if nkv != nh:  # query head j reads key/value head j // (nh // nkv)
            k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, T_k, hs)
            v = v.repeat_interleave(nh // nkv, dim=1)  # (B, nh, T_k, hs)
        p = self.dropout if self.training else 0.0
        y, weights = attend(
            q, k, v, causal=True, dropout_p=p, need_weights=need_weights
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> n_inner -> C.

    GELU (GPT-2): c_proj(gelu(c_fc(x))). SwiGLU (Llama): c_fc computes the gate
    and the up projection side by side, [gate | up], and the block returns
    c_proj(silu(gate) * up).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.activation == "swiglu"
        width = 2 * config.n_inner if self.swiglu else config.n_inner
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(config.n_inner, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = ACTIVATIONS[config.activation]  # "none", "tanh" or None

    def forward(self, x):
        """x: (..., C) -> (..., C)."""
        h = self.c_fc(x)  # (..., n_inner), or (..., 2 n_inner) for SwiGLU
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)  # (..., n_inner) each
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.approximate)
        return self.dropout(self.c_proj(h))


class MoE(nn.Module):
    """Mixture of experts: each token goes to the top n_expert_active of n_expert
    MLPs, weighted by the router's softmax renormalised over the chosen ones.

    After each forward, ``aux_loss`` holds the Switch Transformer's
    load-balancing loss E * sum_e f_e P_e: f_e is the fraction of routing slots
    that went to expert e and P_e its mean router probability. It is 1 when the
    load is uniform and grows as the router favours a few experts.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.k = config.n_expert_active
        self.router = nn.Linear(config.n_embd, config.n_expert, bias=False)
        self.experts = nn.ModuleList([MLP(config) for _ in range(config.n_expert)])
        self.aux_loss = None

    def forward(self, x):
        """x: (B, T, C) -> (B, T, C)."""
        B, T, C = x.shape
        x = x.reshape(B * T, C)  # (N, C): each token routed on its own
        probs = torch.softmax(self.router(x).float(), dim=-1)  # (N, E)
        top_p, top_e = probs.topk(self.k, dim=-1)  # (N, k)
        top_p = (top_p / top_p.sum(dim=-1, keepdim=True)).to(x.dtype)  # (N, k)
        out = torch.zeros_like(x)  # (N, C)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(top_e == e)  # the tokens routed to e
            if token.numel():
                y = expert(x[token]) * top_p[token, slot, None]  # (n_e, C)
                out.index_add_(0, token, y)
        E = len(self.experts)
        f = torch.bincount(top_e.flatten(), minlength=E).float() / top_e.numel()
        self.aux_loss = E * (f * probs.mean(dim=0)).sum()
        return out.view(B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.n_expert else MLP(config)

    def forward(self, x, kv=None, pos=0, need_weights=False, rope=None):
        """x: (B, T, C) -> (x (B, T, C), attention weights or None)."""
        a, weights = self.attn(self.ln_1(x), kv, pos, need_weights, rope)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights
