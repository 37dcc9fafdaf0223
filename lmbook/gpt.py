"""GPT: a decoder-only transformer language model with GPT-2's layout.

Follows "Improving Language Understanding by Generative Pre-Training" (Radford et
al., 2018) and "Language Models are Unsupervised Multitask Learners" (GPT-2,
Radford et al., 2019): pre-LayerNorm blocks, GELU (Hendrycks & Gimpel, 2016; exact
by default, as in nanoGPT, or GPT-2's tanh approximation), learned positions, tied
input/output embeddings and residual projections initialised with std
0.02 / sqrt(2 * n_layer). Attention is "Attention Is All You Need" (Vaswani et al.,
2017), computed by `lmbook.attention.attend`. Generation keeps a key/value cache
(Pope et al., 2022, "Efficiently Scaling Transformer Inference") that is passed
through the same modules as training, as Hugging Face's ``past_key_values`` is,
so hooks and wrapped layers (LoRA, quantized Linear) see every call. The code
layout follows Karpathy's minGPT and nanoGPT, and parameter names match GPT-2's,
so Hugging Face checkpoints map one to one (see `lmbook.gpt_hf`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook import gpt_hf
from lmbook.attention import attend
from lmbook.checks import check_int, tname
from lmbook.gpt_config import ACTIVATIONS, GPTConfig
from lmbook.sampling import check_sampling, sample, sample_logits

__all__ = ["GPT", "GPTConfig", "KVCache", "sample_logits"]


class KVCache:
    """Keys and values of the positions seen so far, for every layer.

    Preallocated as two (n_layer, B, nh, max_len, hs) tensors; ``layers[i]`` is
    layer i's (keys, values) pair of views and ``length`` the number of positions
    stored. Pass it to ``GPT.forward(idx, kv_cache=cache)``: the new positions
    continue from ``length``, their keys and values are written, and ``length``
    grows by T.
    """

    def __init__(self, config, batch_size, max_len, device=None, dtype=None):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {tname(config)}")
        check_int("batch_size", batch_size, low=1)
        check_int("max_len", max_len, low=1, high=config.block_size)
        nh, hs = config.n_head, config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, nh, max_len, hs)
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.layers = [(self.keys[i], self.values[i]) for i in range(config.n_layer)]
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with GPT-2's fused c_attn projection.

    The computation of `lmbook.attention.MultiHeadAttention` (both call
    `lmbook.attention.attend`), under GPT-2's parameter names so that checkpoints
    map key for key, and with a key/value cache.
    """

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
            kv[0].narrow(2, pos, T).copy_(k)
            kv[1].narrow(2, pos, T).copy_(v)
            k, v = kv[0].narrow(2, 0, pos + T), kv[1].narrow(2, 0, pos + T)
        p = self.dropout if self.training else 0.0
        y, weights = attend(
            q, k, v, causal=True, dropout_p=p, need_weights=need_weights
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.approximate = ACTIVATIONS[config.activation]  # "none" or "tanh"

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
            raise TypeError(f"config must be a GPTConfig, got {tname(config)}")
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

    def num_parameters(
        self,
        only_trainable: bool = False,
        exclude_embeddings: bool = False,
        *,
        non_embedding: bool | None = None,
    ) -> int:
        """Number of parameters, the tied embedding counted once.

        As Hugging Face's method of the same name: everything by default (124M
        for GPT-2 small). ``exclude_embeddings=True`` (or Kaplan et al.'s name
        for it, ``non_embedding=True``) leaves out the token and position
        embeddings, as scaling laws count N: about 85M for GPT-2 small.
        """
        if non_embedding is not None:
            exclude_embeddings = non_embedding
        seen, n = set(), 0
        skip = {id(self.transformer.wte.weight), id(self.transformer.wpe.weight)}
        for p in self.parameters():  # parameters() yields a shared tensor once
            if only_trainable and not p.requires_grad:
                continue
            if exclude_embeddings and id(p) in skip:
                continue
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    def _check_ids(self, ids, name="idx", ignore=None):
        """Raise unless ids is a (B, T) int64 tensor, B, T >= 1, of ids in [0, V).

        The range check reads the ids, which would make a CUDA device wait for
        the host; it runs for CPU tensors only. On other devices an out-of-range
        id stops the embedding lookup instead (`generate` checks once per call).
        """
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {tname(ids)}")
        if ids.dtype != torch.long:
            raise TypeError(
                f"{name} must hold token ids as torch.int64, got {ids.dtype}; "
                f"use {name}.long()"
            )
        if ids.dim() != 2 or ids.size(0) < 1 or ids.size(1) < 1:
            raise ValueError(
                f"{name} must have shape (B, T) with B >= 1 and T >= 1, got "
                f"{tuple(ids.shape)}"
            )
        if ids.device.type == "cpu":
            self._check_range(ids, name, ignore)

    def _check_range(self, ids, name, ignore=None):
        V = self.config.vocab_size
        if (((ids < 0) & (ids != ignore)) | (ids >= V)).any():
            extra = "" if ignore is None else f" or {ignore} (ignored)"
            raise ValueError(
                f"{name} holds token ids outside [0, vocab_size={V}){extra}: "
                f"min {int(ids.min())}, max {int(ids.max())}"
            )

    def _hidden(self, idx, kv_cache=None, need_weights=False):
        """idx: (B, T) -> (final hidden states (B, T, C), per-layer weights)."""
        T = idx.size(1)
        pos = 0 if kv_cache is None else kv_cache.length
        L = self.config.block_size
        limit = L if kv_cache is None else kv_cache.max_len
        if pos + T > limit:
            if kv_cache is None:
                raise ValueError(
                    f"idx has T={T} tokens but block_size is {limit}; crop it, "
                    f"e.g. idx[:, -{limit}:]"
                )
            raise ValueError(
                f"idx has T={T} tokens after {pos} cached ones but the cache holds "
                f"{limit}; start a new KVCache (at most block_size={L})"
            )
        positions = torch.arange(pos, pos + T, device=idx.device)  # (T,)
        tok = self.transformer.wte(idx)  # (B, T, C)
        x = self.transformer.drop(tok + self.transformer.wpe(positions))  # (B, T, C)
        maps = []
        for i, block in enumerate(self.transformer.h):
            kv = None if kv_cache is None else kv_cache.layers[i]
            x, weights = block(x, kv, pos, need_weights)
            maps.append(weights)
        if kv_cache is not None:
            kv_cache.length = pos + T
        return self.transformer.ln_f(x), tuple(maps)

    def forward(self, idx, targets=None, kv_cache=None):
        """idx: (B, T) int64 -> (logits (B, T, vocab_size), loss or None).

        targets: (B, T) int64, the next token of each position (already shifted,
        unlike Hugging Face's ``labels``); positions whose target is -100 are
        ignored by the mean cross-entropy loss. kv_cache: a `KVCache`; idx then
        continues the cached positions (see `KVCache`).
        """
        self._check_ids(idx)
        if targets is not None:
            self._check_ids(targets, "targets", ignore=-100)
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, got "
                    f"{tuple(targets.shape)}"
                )
        if kv_cache is not None:
            self._check_cache(kv_cache, idx)
        x, _ = self._hidden(idx, kv_cache)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss

    def _check_cache(self, cache, idx):
        if not isinstance(cache, KVCache):
            raise TypeError(f"kv_cache must be a KVCache, got {tname(cache)}")
        k = cache.keys
        if cache.keys.shape[0] != self.config.n_layer or k.shape[2] != (
            self.config.n_head
        ):
            raise ValueError(
                f"kv_cache was made for another model shape: keys {tuple(k.shape)}"
            )
        if cache.batch_size != idx.size(0) or k.device != idx.device:
            raise ValueError(
                f"kv_cache holds batch {cache.batch_size} on {k.device}, but idx "
                f"is {tuple(idx.shape)} on {idx.device}"
            )

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
        tokens, so cached and uncached generation pick the same tokens. Both run
        through the same modules. Runs in eval mode (no dropout) and restores the
        module's mode afterwards.
        """
        self._check_ids(idx)
        if idx.device.type != "cpu":
            self._check_range(idx, "idx")  # one device sync per call
        check_int("max_new_tokens", max_new_tokens, low=0)
        check_sampling(temperature, top_k, top_p, generator, self.config.vocab_size)
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
        cache = None
        if use_cache and max_new > 0:
            size = min(L, T0 + max_new - 1)  # the last new token is never fed back
            w = self.lm_head.weight
            cache = KVCache(self.config, B, size, device=w.device, dtype=w.dtype)
        for t in range(T0, T0 + max_new):
            if cache is not None and 0 < cache.length < cache.max_len:
                x, _ = self._hidden(out[:, t - 1 : t], cache)  # (B, 1, C)
            else:  # no cache, first step, or full cache: encode the last L tokens
                if cache is not None:
                    cache.length = 0
                x, _ = self._hidden(out[:, max(0, t - L) : t], cache)  # (B, T, C)
            logits = self.lm_head(x[:, -1, :])  # (B, vocab_size)
            out[:, t] = sample(logits, temperature, top_k, top_p, gen)
        return out

    # Checkpoints in Hugging Face's format; the code lives in lmbook.gpt_hf.
    @classmethod
    def from_pretrained(cls, name_or_path) -> GPT:
        """Load a Hugging Face GPT-2 checkpoint: a local folder or a hub name.

        Safetensors only; ``transformers`` is not needed. Every `GPTConfig` field
        written by `save_pretrained` comes back. Eval mode, on the CPU.
        """
        return gpt_hf.from_pretrained(name_or_path, cls)

    def save_pretrained(self, path) -> None:
        """Write ``config.json`` and ``model.safetensors`` in Hugging Face's format.

        The folder changes all at once: after a crash at any moment it holds the
        old checkpoint or the new one. Other files in it are kept.
        """
        gpt_hf.save_pretrained(self, path)

    @classmethod
    def from_hf(cls, model) -> GPT:
        """A GPT with the weights of a ``transformers.GPT2LMHeadModel``."""
        return gpt_hf.from_hf(model, cls)

    def to_hf(self, attn_implementation=None):
        """A ``transformers.GPT2LMHeadModel`` with this model's weights."""
        return gpt_hf.to_hf(self, attn_implementation=attn_implementation)
