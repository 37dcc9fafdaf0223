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

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.checks import check_bool, check_float, check_int, tname

MAX_MASK_T = 2**15  # causal_mask's limit: a (32768, 32768) mask of bools is 1 GiB


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Lower-triangular boolean mask of shape (T, T); True means "may attend".

    The mask takes T * T bytes, so T is limited to ``MAX_MASK_T`` = 32768 (1 GiB).
    For longer sequences use ``F.scaled_dot_product_attention(..., is_causal=True)``,
    which needs no mask.
    """
    check_int("T", T, low=1)
    if T > MAX_MASK_T:
        raise ValueError(
            f"T must be <= {MAX_MASK_T}, got {T}: a ({T}, {T}) mask would take "
            f"{_bytes(T * T)}; for long sequences use "
            f"F.scaled_dot_product_attention(q, k, v, is_causal=True), which needs "
            f"no mask"
        )
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _check_mask(mask: object, shape: torch.Size, device: torch.device) -> None:
    """Raise unless `mask` is a boolean tensor on `device` broadcastable to `shape`."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else tname(mask)
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

    q: (..., T_q, d), k: (..., T_k, d), v: (..., T_k, d_v), all of one dtype and
    device; their leading dimensions (...) must be equal or broadcast.
    mask: boolean, broadcastable to (..., T_q, T_k); True means "may attend".
    Returns out (..., T_q, d_v) and weights (..., T_q, T_k), the weights after
    dropout. A query whose every key is masked gets all-zero weights (and a zero
    output and zero gradients), not NaN, as ``F.scaled_dot_product_attention`` does.
    """
    _check_qkv(q, k, v)
    check_float("dropout_p", dropout_p, 0, 1, high_open=True)
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


def _check_qkv(q: object, k: object, v: object) -> None:
    """Raise unless q, k, v are floating tensors that attention can combine."""
    named = (("q", q), ("k", k), ("v", v))
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {tname(t)}")
        if t.dim() < 2:
            raise ValueError(f"{name} must be (..., T, d), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    mixed = len({q.dtype, k.dtype, v.dtype}) > 1
    if mixed and not torch.is_autocast_enabled(q.device.type):
        got = ", ".join(f"{n} {t.dtype}" for n, t in named)
        raise TypeError(f"q, k and v must have the same dtype; got {got}")
    if len({q.device, k.device, v.device}) > 1:
        got = ", ".join(f"{n} on {t.device}" for n, t in named)
        raise ValueError(f"q, k and v must be on the same device; got {got}")
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        got = ", ".join(f"{n} {tuple(t.shape)}" for n, t in named)
        raise ValueError(
            "q, k and v must have the same leading (batch, head) dimensions, or "
            f"ones that broadcast, before (T, d); got {got}"
        ) from None
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
        check_int("d_model", d_model, low=1)
        check_int("n_heads", n_heads, low=1)
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; change "
                f"n_heads to a divisor of d_model (or d_model to a multiple of it)"
            )
        check_float("dropout", dropout, 0, 1, high_open=True)
        check_bool("bias", bias)
        check_bool("causal", causal)
        self.d_model, self.n_heads = d_model, n_heads
        self.head_size = d_model // n_heads
        self.dropout, self.causal = float(dropout), causal
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _check_input(self, x: object, need_weights: object) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {tname(x)}")
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
        check_bool("need_weights", need_weights)

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
        p = self.dropout if self.training else 0.0
        y, weights = attend(q, k, v, self.causal, mask, p, need_weights)
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
                f"mha must be a torch.nn.MultiheadAttention, got {tname(mha)}"
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


def attend(q, k, v, causal=False, mask=None, dropout_p=0.0, need_weights=False):
    """Attention of split heads: q (B, nh, T, hs), k and v (B, nh, T_k, hs).

    Returns ``(out (B, nh, T, hs), weights (B, nh, T, T_k) or None)``. The one
    attention computation behind `MultiHeadAttention` and `lmbook.gpt`'s
    ``CausalSelfAttention``. Without weights it runs the fused
    ``F.scaled_dot_product_attention``; with them, lmbook's
    `scaled_dot_product_attention`, which returns them. With ``causal=True`` the
    T queries are the last T of the T_k positions (T < T_k when earlier keys
    come from a cache), and query i may attend to keys 0 .. T_k - T + i.
    ``mask`` (boolean, True = may attend) is combined with the causal mask.
    Internal: arguments are not checked here, but by the modules that call it.
    """
    T, T_k = q.size(-2), k.size(-2)
    if causal and (need_weights or mask is not None or 1 < T < T_k):
        cm = causal_mask(T_k, device=q.device)[T_k - T :]  # (T, T_k)
        mask, causal = (cm if mask is None else mask & cm), False
    elif causal and T == 1:
        causal = False  # the one (newest) query may attend to every key
    if need_weights:
        return scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal
    )
    return out, None
