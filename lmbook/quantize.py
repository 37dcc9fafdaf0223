"""Weight-only quantization: group-wise symmetric integers, by hand.

Each row of a weight matrix W (d_out, d_in) is cut into groups of ``group_size``
consecutive input weights; a group is stored as integers q in
[-(2^(b-1) - 1), 2^(b-1) - 1] and one float scale, absmax(group) / (2^(b-1) - 1),
and read back as q * scale ("absmax" quantization, as in LLM.int8(), Dettmers et
al., 2022; groups as in GPTQ, Frantar et al., 2023, and AWQ, Lin et al., 2024,
which keep one outlier from costing the precision of a whole row). Activations
stay in floating point. 4-bit integers are packed two to a byte, so the sizes
measured here are the sizes a file would have.

`QuantLinear` holds the integers and scales of one ``nn.Linear`` and
dequantizes them on every call: it saves memory, not time (a fast kernel would
multiply with the integers directly). `quantize_model` replaces a model's Linear
layers in place; `model_size_bytes` counts what a model keeps in memory.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.checks import check_int, tname

__all__ = [
    "QuantLinear",
    "bytes_per_weight",
    "dequantize",
    "model_size_bytes",
    "pack_int4",
    "quantize_groupwise",
    "quantize_model",
    "unpack_int4",
]


def _check_bits(bits) -> int:
    return check_int("bits", bits, 2, 8)


def _check_group(group_size, d_in: int) -> int:
    """The group size to use: group_size, or d_in (one group per row) if None."""
    if group_size is None:
        return d_in
    check_int("group_size", group_size, low=1)
    if d_in % group_size:
        raise ValueError(
            f"group_size must divide the input dimension {d_in}, got {group_size}"
        )
    return group_size


def _check_matrix(name: str, w, floating: bool = True) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {tname(w)}")
    if w.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D (d_out, d_in), got shape {tuple(w.shape)}"
        )
    if floating and not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {w.dtype}")
    if not floating and (w.is_floating_point() or w.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {w.dtype}")
    return w


def quantize_groupwise(
    w: torch.Tensor, bits: int, group_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization of w (d_out, d_in) in groups along d_in.

    Returns q (d_out, d_in), int8 with values in [-qmax, qmax], qmax = 2^(bits-1) - 1,
    and scale (d_out, d_in // group_size) in w's dtype, so that
    ``dequantize(q, scale)`` is within scale / 2 of w. group_size None: one group
    per row (per-channel quantization). An all-zero group gets scale 1.
    """
    _check_matrix("w", w)
    bits = _check_bits(bits)
    g = _check_group(group_size, w.shape[1])
    qmax = 2 ** (bits - 1) - 1
    groups = w.detach().reshape(w.shape[0], -1, g)  # (d_out, n_groups, g)
    absmax = groups.abs().amax(dim=-1)  # (d_out, n_groups)
    scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    q = torch.round(groups / scale[..., None]).clamp(-qmax, qmax)
    return q.to(torch.int8).reshape(w.shape), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """q (d_out, d_in) integers times their group's scale (d_out, n_groups)."""
    _check_matrix("q", q, floating=False)
    _check_matrix("scale", scale)
    d_out, d_in = q.shape
    if scale.shape[0] != d_out or d_in % scale.shape[1]:
        raise ValueError(
            f"scale must have shape ({d_out}, n_groups) with n_groups dividing "
            f"{d_in}, got {tuple(scale.shape)}"
        )
    groups = q.reshape(d_out, scale.shape[1], -1).to(scale.dtype)
    return (groups * scale[..., None]).reshape(d_out, d_in)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two int4 values (in [-8, 7]) per byte: q (..., 2n) -> uint8 (..., n).

    Element 2i goes in the low four bits of byte i, element 2i + 1 in the high four.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {tname(q)}")
    if q.is_floating_point() or q.dtype == torch.bool:
        raise TypeError(f"q must be an integer tensor, got {q.dtype}")
    if q.dim() < 1 or q.shape[-1] % 2:
        raise ValueError(f"q's last dimension must be even, got shape {tuple(q.shape)}")
    if q.numel() and (q.min() < -8 or q.max() > 7):
        raise ValueError(
            f"q must hold int4 values in [-8, 7], got values in "
            f"[{q.min().item()}, {q.max().item()}]"
        )
    u = (q.to(torch.int16) & 0xF).to(torch.uint8)  # two's complement nibbles
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4`: uint8 (..., n) -> int8 (..., 2n) in [-8, 7]."""
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {tname(packed)}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got {packed.dtype}")
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=-1).to(torch.int8)
    nibbles = torch.where(nibbles > 7, nibbles - 16, nibbles)  # sign of the nibble
    return nibbles.flatten(-2)


def bytes_per_weight(bits: int, group_size: int, scale_bits: int = 32) -> float:
    """Storage per weight: bits / 8 for the integer plus a share of its scale."""
    _check_bits(bits)
    check_int("group_size", group_size, low=1)
    check_int("scale_bits", scale_bits, low=1)
    stored_bits = 4 if bits == 4 else 8  # int4 packed, other widths in a byte
    return stored_bits / 8 + scale_bits / 8 / group_size


class QuantLinear(nn.Module):
    """A weight-only quantized ``nn.Linear``: y = x dequantize(q, scale)^T + b.

    The integers are a buffer ``qweight`` (int8, or uint8 packed two per byte when
    bits == 4) and the scales a buffer ``scale`` (d_out, d_in // group_size);
    the bias, if any, stays in floating point. The weight is rebuilt on each call.
    """

    def __init__(self, linear: nn.Linear, bits: int, group_size: int | None = None):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {tname(linear)}")
        self.bits = _check_bits(bits)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = _check_group(group_size, self.in_features)
        if bits == 4 and self.in_features % 2:
            raise ValueError(
                f"bits=4 packs two weights per byte and needs an even in_features, "
                f"got {self.in_features}"
            )
        q, scale = quantize_groupwise(linear.weight, bits, self.group_size)
        self.register_buffer("qweight", pack_int4(q) if bits == 4 else q)
        self.register_buffer("scale", scale)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def weight(self) -> torch.Tensor:
        """The dequantized weight, (out_features, in_features)."""
        q = unpack_int4(self.qweight) if self.bits == 4 else self.qweight
        return dequantize(q, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bits={self.bits}, group_size={self.group_size}"
        )


def quantize_model(
    model: nn.Module,
    bits: int,
    group_size: int | None = None,
    skip: tuple[str, ...] = ("lm_head",),
) -> nn.Module:
    """Replace every ``nn.Linear`` of model by a `QuantLinear`, in place.

    Layers whose name (or its last part) is in skip keep their float weights; by
    default the output layer, which usually shares the embedding's matrix.
    Returns model. Raises if nothing was quantized or a group size does not fit.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    _check_bits(bits)
    if group_size is not None:
        check_int("group_size", group_size, low=1)
    if isinstance(skip, str) or not all(isinstance(s, str) for s in skip):
        raise TypeError(f"skip must be a tuple of module names, got {skip!r}")
    chosen = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and name not in skip
        and name.rsplit(".", 1)[-1] not in skip
    ]
    if not chosen:
        raise ValueError("model has no nn.Linear layer to quantize (after skip)")
    for _, linear in chosen:
        _check_group(group_size, linear.in_features)  # all checked before changing
    for name, linear in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear(linear, bits, group_size))
    return model


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of model's parameters and buffers, each shared tensor counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    seen, total = set(), 0
    tensors = [*model.parameters(), *model.buffers()]
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total
