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

from lmbook import gpt_hf, gpt_io
from lmbook.checks import check_int, tname
from lmbook.gpt_blocks import (
    MLP,
    Block,
    CausalSelfAttention,
    KVCache,
    MoE,
    make_norm,
    rope_tables,
)
from lmbook.gpt_config import GPTConfig
from lmbook.sampling import check_sampling, sample, sample_logits

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "Block",
    "CausalSelfAttention",
    "MLP",
    "MoE",
    "sample_logits",
]


class GPT(nn.Module):
    """GPT-2 style language model; ``GPT(config)(idx, targets) -> (logits, loss)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {tname(config)}")
        self.config = config
        parts = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.position == "learned":
            parts["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        parts.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        self.transformer = nn.ModuleDict(parts)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.register_buffer("rope_cos", None, persistent=False)  # (block_size, hs)
        self.register_buffer("rope_sin", None, persistent=False)  # when RoPE is on
        self.init_rope()
        self.tie_weights()
        self.apply(self._init_weights)
        std = 0.02 / math.sqrt(2 * config.n_layer)  # GPT-2's scaled residual init
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=std)

    def tie_weights(self):
        """Share one matrix between the token embedding and the output layer.

        Only when ``config.tie_embeddings`` (GPT-2 ties them; Llama does not).
        """
        if self.config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def init_rope(self):
        """(Re)compute RoPE's cos and sin tables (buffers, not saved) if used."""
        if self.config.position == "rope":
            # on the meta device these are placeholders: call again after to_empty
            cos, sin = rope_tables(self.config, self.transformer.wte.weight.device)
            self.rope_cos, self.rope_sin = cos, sin

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
        skip = {
            id(m.weight)
            for m in self.transformer.values()
            if isinstance(m, nn.Embedding)
        }
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
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.rope_cos is not None:  # rotations of positions pos .. pos + T - 1
            rope = (self.rope_cos[pos : pos + T], self.rope_sin[pos : pos + T])
        else:
            positions = torch.arange(pos, pos + T, device=idx.device)  # (T,)
            x = x + self.transformer.wpe(positions)  # (B, T, C)
        x = self.transformer.drop(x)
        maps = []
        for i, block in enumerate(self.transformer.h):
            kv = None if kv_cache is None else kv_cache.layers[i]
            x, weights = block(x, kv, pos, need_weights, rope)
            maps.append(weights)
        if kv_cache is not None:
            kv_cache.length = pos + T
        return self.transformer.ln_f(x), tuple(maps)

    def forward(self, idx, targets=None, kv_cache=None):
        """idx: (B, T) int64 -> (logits (B, T, vocab_size), loss or None).

        targets: (B, T) int64, the next token of each position (already shifted,
        unlike Hugging Face's ``labels``); positions whose target is -100 are
        ignored by the mean cross-entropy loss. With experts (``n_expert``) the
        loss adds moe_aux_coef times the layers' load-balancing losses, which
        stay in ``self.aux_loss``. kv_cache: a `KVCache`; idx then continues the
        cached positions (see `KVCache`).
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
        if self.config.n_expert:
            self.aux_loss = sum(block.mlp.aux_loss for block in self.transformer.h)
            if loss is not None:
                loss = loss + self.config.moe_aux_coef * self.aux_loss
        return logits, loss

    def _check_cache(self, cache, idx):
        if not isinstance(cache, KVCache):
            raise TypeError(f"kv_cache must be a KVCache, got {tname(cache)}")
        k = cache.keys
        if k.shape[0] != self.config.n_layer or k.shape[2] != self.config.n_kv_head:
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

    # Checkpoints in Hugging Face's format: lmbook.gpt_io and lmbook.gpt_hf.
    @classmethod
    def from_pretrained(cls, name_or_path) -> GPT:
        """Load a Hugging Face GPT-2 or Llama checkpoint: a folder or a hub name.

        Safetensors only; ``transformers`` is not needed. Every `GPTConfig` field
        written by `save_pretrained` comes back. Eval mode, on the CPU.
        """
        return gpt_io.from_pretrained(name_or_path, cls)

    def save_pretrained(self, path) -> None:
        """Write ``config.json`` and ``model.safetensors`` in Hugging Face's format.

        The folder changes all at once: after a crash at any moment it holds the
        old checkpoint or the new one. Other files in it are kept.
        """
        gpt_io.save_pretrained(self, path)

    @classmethod
    def from_hf(cls, model) -> GPT:
        """A GPT with the weights of a ``GPT2LMHeadModel`` or ``LlamaForCausalLM``."""
        return gpt_hf.from_hf(model, cls)

    def to_hf(self, attn_implementation=None):
        """A ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` with this model's weights."""
        return gpt_hf.to_hf(self, attn_implementation=attn_implementation)
