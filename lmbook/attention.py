"""Scaled dot-product and multi-head attention.

Follows "Attention Is All You Need" (Vaswani et al., 2017):
``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` and
``MultiHead(X) = Concat(head_1, ..., head_h) W^O``. The parameter layout (one fused
``in_proj`` for Q, K, V and an ``out_proj``) is that of ``torch.nn.MultiheadAttention``,
so weights copy across unchanged; nanoGPT's ``CausalSelfAttention`` is the model for
the fast path through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Lower-triangular boolean mask of shape (T, T); True means "may attend"."""
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def _check_dropout(name: str, p: object) -> None:
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(p).__name__}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")


def _check_mask(mask: object, shape: torch.Size, device: torch.device) -> None:
    """Raise unless `mask` is a boolean tensor on `device` broadcastable to `shape`."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {got}")
    try:
        ok = torch.broadcast_shapes(mask.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the "
            f"scores' shape {tuple(shape)} (..., T_q, T_k)"
        )
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but the inputs are on {device}")


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v, returning ``(out, weights)``.

    q: (..., T_q, d), k: (..., T_k, d), v: (..., T_k, d_v).
    mask: boolean, broadcastable to (..., T_q, T_k); True means "may attend".
    Returns out (..., T_q, d_v) and weights (..., T_q, T_k), the weights after
    dropout. A query whose every key is masked gets all-zero weights (and a zero
    output and zero gradients), not NaN, as ``F.scaled_dot_product_attention`` does.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must be (..., T, d), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension d; got q {tuple(q.shape)} "
            f"and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of keys T_k; got k {tuple(k.shape)} "
            f"and v {tuple(v.shape)}"
        )
    _check_dropout("dropout_p", dropout_p)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if mask is not None:
        _check_mask(mask, scores.shape, scores.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        # a row with no allowed key would be softmax(-inf, ..., -inf) = 0/0; give
        # it finite scores, then zero its weights, so values and gradients stay 0
        empty = ~mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
        scores = scores.masked_fill(empty, 0.0)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
    if mask is not None:
        weights = weights.masked_fill(empty, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over (B, T, C) inputs.

    ``forward(x, need_weights=False, mask=None)`` returns ``(out, weights)``:
    out (B, T, C) and weights (B, nh, T, T) per head, or None. Without weights it
    runs ``F.scaled_dot_product_attention`` (fused kernels); with them it runs
    lmbook's :func:`scaled_dot_product_attention`, which returns them. The two
    paths compute the same function. ``mask`` is boolean, broadcastable to
    (B, nh, T, T), True = may attend; with ``causal=True`` it is combined with the
    causal mask. Dropout (on the attention weights) is active in training mode.

    Parameters: ``in_proj`` Linear(C, 3C) for Q, K, V stacked in that order and
    ``out_proj`` Linear(C, C), the layout of ``torch.nn.MultiheadAttention``
    (its ``in_proj_weight``/``in_proj_bias`` are our ``in_proj.weight``/``.bias``);
    see :meth:`from_torch`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        for name, val in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(val, bool) or not isinstance(val, int):
                raise TypeError(f"{name} must be an int, got {type(val).__name__}")
            if val < 1:
                raise ValueError(f"{name} must be >= 1, got {val}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; change "
                f"n_heads to a divisor of d_model (or d_model to a multiple of it)"
            )
        _check_dropout("dropout", dropout)
        for name, val in (("bias", bias), ("causal", causal)):
            if not isinstance(val, bool):
                raise TypeError(f"{name} must be a bool, got {type(val).__name__}")
        self.d_model, self.n_heads = d_model, n_heads
        self.head_size = d_model // n_heads
        self.dropout, self.causal = float(dropout), causal
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _check_input(self, x: object, need_weights: object) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must have shape (B, T, d_model={self.d_model}), got "
                f"{tuple(x.shape)}"
            )
        w = self.in_proj.weight
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"x has dtype {x.dtype} but the weights are {w.dtype}")
        if x.device != w.device:
            raise ValueError(f"x is on {x.device} but the weights are on {w.device}")
        if not isinstance(need_weights, bool):
            raise TypeError(
                f"need_weights must be a bool, got {type(need_weights).__name__}"
            )

    def forward(
        self,
        x: torch.Tensor,
        need_weights: bool = False,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (out (B, T, C), weights (B, nh, T, T) or None)."""
        self._check_input(x, need_weights)
        B, T, C = x.shape
        nh, hs = self.n_heads, self.head_size
        if mask is not None:
            _check_mask(mask, torch.Size((B, nh, T, T)), x.device)
        q, k, v = self.in_proj(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        p, causal = (self.dropout if self.training else 0.0), self.causal
        if causal and (need_weights or mask is not None):
            cm = causal_mask(T, device=x.device)  # (T, T)
            mask = cm if mask is None else mask & cm
        weights = None
        if need_weights:
            y, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.out_proj(y), weights

    @classmethod
    def from_torch(
        cls, mha: nn.MultiheadAttention, causal: bool = False
    ) -> MultiHeadAttention:
        """A copy of `mha`'s weights, dropout and bias setting, on its device/dtype.

        Note torch's ``attn_mask`` is True where attention is *not* allowed, the
        opposite of lmbook's ``mask``: pass ``mask=~attn_mask``.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(
                f"mha must be a torch.nn.MultiheadAttention, got {type(mha).__name__}"
            )
        if mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError(
                "mha must be plain self-attention: kdim == vdim == embed_dim, "
                "add_bias_kv=False and add_zero_attn=False"
            )
        w = mha.in_proj_weight
        bias = mha.in_proj_bias is not None
        m = cls(mha.embed_dim, mha.num_heads, mha.dropout, bias=bias, causal=causal)
        m = m.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            m.in_proj.weight.copy_(w)
            m.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                m.in_proj.bias.copy_(mha.in_proj_bias)
                m.out_proj.bias.copy_(mha.out_proj.bias)
        return m.train(mha.training)
