"""lmbook.attention against torch's F.scaled_dot_product_attention and
nn.MultiheadAttention, plus invariants (hypothesis) and bad input."""

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmbook.attention import (
    MAX_MASK_T,
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)

SHAPES = [(1, 1, 4, 8), (2, 3, 7, 16), (2, 2, 3, 5, 4)]  # (..., T, d)


def _random_mask(shape, seed, p=0.6, keep_diagonal=False):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < p
    if keep_diagonal:  # every query may attend to itself: no fully masked rows
        mask |= torch.eye(shape[-1], dtype=torch.bool)
    return mask


def _mha_pair(C, nh, seed, bias=True, causal=False):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(C, nh, bias=bias, batch_first=True).eval()
    return MultiHeadAttention.from_torch(ref, causal=causal).eval(), ref


# --- scaled_dot_product_attention -------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("masking", ["none", "causal", "random"])
def test_sdpa_matches_torch(shape, seed, masking):
    torch.manual_seed(seed)
    q, k, v = (torch.randn(shape) for _ in range(3))
    T = shape[-2]
    mask = {
        "none": None,
        "causal": causal_mask(T),
        "random": _random_mask(shape[:-1] + (T,), seed),  # may mask whole rows
    }[masking]
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)
    assert weights.shape == shape[:-1] + (T,)


@pytest.mark.parametrize("seed", [0, 3])
def test_sdpa_cross_attention_shapes_match_torch(seed):
    torch.manual_seed(seed)
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 9, 8), torch.randn(2, 9, 3)
    mask = _random_mask((2, 5, 9), seed)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, mask))
    assert out.shape == (2, 5, 3) and weights.shape == (2, 5, 9)


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
def test_sdpa_fully_masked_row_is_zero_with_zero_grads():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 8, requires_grad=True) for _ in range(3))
    mask = causal_mask(4).clone()
    mask[2] = False  # query 2 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.equal(weights[0, 2], torch.zeros(4))
    assert torch.equal(out[0, 2], torch.zeros(8))
    with torch.autograd.detect_anomaly():  # no NaN even inside the backward pass
        out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, 2], torch.zeros(8))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3),
    T_q=st.integers(1, 6),
    T_k=st.integers(1, 6),
    d=st.integers(1, 8),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_sdpa_weight_invariants(B, T_q, T_k, d, p, seed):
    torch.manual_seed(seed)
    q, k, v = torch.randn(B, T_q, d), torch.randn(B, T_k, d), torch.randn(B, T_k, d)
    mask = _random_mask((B, T_q, T_k), seed, p=p)
    _, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert (weights[~mask] == 0).all()  # masked positions are exactly 0
    rows = mask.any(dim=-1)  # (B, T_q): queries with at least one key
    sums = weights.sum(dim=-1)
    torch.testing.assert_close(sums[rows], torch.ones_like(sums[rows]))
    assert (weights[~rows] == 0).all()  # fully masked rows are all zero
    assert (weights >= 0).all()


# --- MultiHeadAttention vs torch.nn.MultiheadAttention ----------------------------

MHA_SHAPES = [(1, 1, 8, 1), (2, 5, 16, 4), (3, 7, 24, 3)]  # (B, T, C, nh)


@pytest.mark.parametrize("B,T,C,nh", MHA_SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch(B, T, C, nh, seed, bias, causal):
    ours, ref = _mha_pair(C, nh, seed, bias=bias, causal=causal)
    x = torch.randn(B, T, C)
    attn_mask = ~causal_mask(T) if causal else None  # torch: True = not allowed
    want, want_avg = ref(x, x, x, attn_mask=attn_mask)
    _, want_heads = ref(x, x, x, attn_mask=attn_mask, average_attn_weights=False)
    out, weights = ours(x, need_weights=True)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(weights, want_heads)  # (B, nh, T, T)
    torch.testing.assert_close(weights.mean(dim=1), want_avg)
    fast, none = ours(x)
    assert none is None
    torch.testing.assert_close(fast, want)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_general_mask_matches_torch(seed, causal):
    B, T, C, nh = 2, 6, 16, 4
    ours, ref = _mha_pair(C, nh, seed, causal=causal)
    x = torch.randn(B, T, C)
    mask = _random_mask((B, nh, T, T), seed, keep_diagonal=True)
    full = mask & causal_mask(T) if causal else mask
    want, _ = ref(x, x, x, attn_mask=~full.reshape(B * nh, T, T))
    _, want_heads = ref(
        x, x, x, attn_mask=~full.reshape(B * nh, T, T), average_attn_weights=False
    )
    out, weights = ours(x, need_weights=True, mask=mask)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(weights, want_heads)
    torch.testing.assert_close(ours(x, mask=mask)[0], want)


def test_torch_loads_our_weights():
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 2)
    ref = nn.MultiheadAttention(16, 2, batch_first=True)
    names = {"in_proj.weight": "in_proj_weight", "in_proj.bias": "in_proj_bias"}
    sd = {names.get(k, k): v for k, v in ours.state_dict().items()}
    ref.load_state_dict(sd)  # strict: every key maps
    x = torch.randn(3, 4, 16)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize("T,C,nh", [(1, 4, 2), (5, 12, 3), (9, 32, 8)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_mask", [False, True])
def test_fast_path_equals_weights_path(T, C, nh, causal, seed, with_mask):
    torch.manual_seed(seed)
    mha = MultiHeadAttention(C, nh, dropout=0.1, causal=causal).eval()
    x = torch.randn(2, T, C)
    mask = _random_mask((2, 1, T, T), seed) if with_mask else None  # may mask rows
    fast, _ = mha(x, mask=mask)
    slow, weights = mha(x, need_weights=True, mask=mask)
    torch.testing.assert_close(fast, slow)
    if causal:
        assert (weights.triu(diagonal=1) == 0).all()


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_torch(need_weights, causal):
    B, T, C, nh = 2, 5, 12, 3
    ours, ref = _mha_pair(C, nh, seed=4, causal=causal)
    ours.train(), ref.train()
    x = torch.randn(B, T, C)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    attn_mask = ~causal_mask(T) if causal else None
    ref(x2, x2, x2, attn_mask=attn_mask)[0].pow(2).sum().backward()
    ours(x1, need_weights=need_weights)[0].pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.in_proj.weight.grad, ref.in_proj_weight.grad)
    torch.testing.assert_close(ours.in_proj.bias.grad, ref.in_proj_bias.grad)
    torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad)


def test_dropout_acts_on_weights_in_training_only():
    torch.manual_seed(0)
    p = 0.5
    mha = MultiHeadAttention(8, 2, dropout=p).eval()
    x = torch.randn(2, 6, 8)
    _, clean = mha(x, need_weights=True)
    mha.train()
    _, dropped = mha(x, need_weights=True)
    kept = dropped != 0
    assert 0 < kept.float().mean() < 1  # some, not all, weights dropped
    torch.testing.assert_close(dropped[kept], clean[kept] / (1 - p))
    a, b = mha(x)[0], mha(x)[0]
    assert not torch.allclose(a, b)  # fast path is stochastic in training
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x, need_weights=True)[0])


def test_from_torch_copies_dtype_and_mode():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(8, 2, dropout=0.25, batch_first=True).double()
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.in_proj.weight.dtype == torch.float64
    assert ours.dropout == 0.25 and ours.training
    ref.in_proj_weight.data.zero_()  # a copy, not shared storage
    assert ours.in_proj.weight.abs().sum() > 0


def test_module_uses_input_device_and_no_buffers():
    mha = MultiHeadAttention(8, 2, causal=True)
    assert list(mha.buffers()) == []  # the causal mask is built on x's device
    x = torch.randn(1, 3, 8, device="meta")
    out, weights = mha.to("meta")(x, need_weights=True)
    assert out.device.type == "meta" and weights.shape == (1, 2, 3, 3)


# --- bad input --------------------------------------------------------------------


def test_bad_d_model_not_divisible():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)


def test_bad_d_model_type():
    with pytest.raises(TypeError, match="d_model must be an int, got float"):
        MultiHeadAttention(16.0, 4)


def test_bad_n_heads_zero():
    with pytest.raises(ValueError, match="n_heads must be >= 1, got 0"):
        MultiHeadAttention(16, 0)


def test_bad_dropout_range():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MultiHeadAttention(16, 4, dropout=1.0)


def test_bad_dropout_type():
    with pytest.raises(TypeError, match="dropout must be a float, got str"):
        MultiHeadAttention(16, 4, dropout="0.1")


def test_bad_causal_type():
    with pytest.raises(TypeError, match="causal must be a bool, got int"):
        MultiHeadAttention(16, 4, causal=1)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=16\)"):
        MultiHeadAttention(16, 4)(torch.randn(5, 16))


def test_bad_input_width():
    with pytest.raises(ValueError, match=r"x must have shape .*got \(2, 5, 8\)"):
        MultiHeadAttention(16, 4)(torch.randn(2, 5, 8))


def test_bad_input_dtype_int():
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        MultiHeadAttention(16, 4)(torch.ones(2, 5, 16, dtype=torch.long))


def test_bad_input_dtype_mismatch():
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the weights"):
        MultiHeadAttention(16, 4)(torch.randn(2, 5, 16, dtype=torch.float64))


def test_bad_input_type():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        MultiHeadAttention(4, 2)([[[0.0] * 4]])


def test_bad_need_weights_type():
    with pytest.raises(TypeError, match="need_weights must be a bool, got str"):
        MultiHeadAttention(4, 2)(torch.randn(1, 2, 4), need_weights="yes")


def test_bad_mha_mask_dtype():
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        MultiHeadAttention(4, 2)(torch.randn(1, 3, 4), mask=torch.ones(3, 3))


def test_bad_mha_mask_shape():
    with pytest.raises(ValueError, match=r"mask of shape \(4, 4\) does not broadcast"):
        MultiHeadAttention(4, 2)(torch.randn(1, 3, 4), mask=causal_mask(4))


def test_bad_sdpa_qk_width():
    with pytest.raises(ValueError, match="q and k must share their last dimension"):
        scaled_dot_product_attention(
            torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 4)
        )


def test_bad_sdpa_kv_length():
    with pytest.raises(ValueError, match="k and v must have the same number of keys"):
        scaled_dot_product_attention(
            torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 2, 4)
        )


def test_bad_sdpa_rank():
    with pytest.raises(ValueError, match=r"q must be \(\.\.\., T, d\), got \(4,\)"):
        scaled_dot_product_attention(
            torch.randn(4), torch.randn(3, 4), torch.randn(3, 4)
        )


def test_bad_sdpa_dtype():
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match="k must be a floating-point tensor"):
        scaled_dot_product_attention(x, x.long(), x)


def test_bad_sdpa_mask_shape():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 3\) does not broadcast"):
        scaled_dot_product_attention(x, x, x, mask=torch.ones(2, 3, dtype=torch.bool))


def test_bad_sdpa_dropout_p():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got -0.1"):
        scaled_dot_product_attention(x, x, x, dropout_p=-0.1)


def test_bad_causal_mask_size():
    with pytest.raises(ValueError, match="T must be >= 1, got 0"):
        causal_mask(0)


def test_bad_causal_mask_type():
    with pytest.raises(TypeError, match="T must be an int, got float"):
        causal_mask(3.0)


def test_causal_mask_refuses_a_mask_too_large_for_memory():
    # 10**6 positions would be a 10**12-byte mask; refused before allocating
    with pytest.raises(
        ValueError, match=r"T must be <= 32768, got 1000000: .*931\.3 GiB"
    ):
        causal_mask(10**6)
    with pytest.raises(ValueError, match=r"got 32769: .*1\.0 GiB.*is_causal=True"):
        causal_mask(MAX_MASK_T + 1)


def test_causal_mask_at_the_limit():
    assert MAX_MASK_T == 2**15
    mask = causal_mask(MAX_MASK_T, device="meta")  # the shape, without the memory
    assert mask.shape == (MAX_MASK_T, MAX_MASK_T) and mask.dtype == torch.bool


def test_bad_sdpa_mixed_dtypes():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 3, 4, dtype=torch.float64)
    match = (
        r"q, k and v must have the same dtype; got q torch.float32, "
        r"k torch.float64, v torch.float32"
    )
    with pytest.raises(TypeError, match=match):
        scaled_dot_product_attention(q, k, q)


def test_bad_sdpa_mixed_devices():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 3, 4, device="meta")
    with pytest.raises(ValueError, match="same device; got q on cpu, k on meta"):
        scaled_dot_product_attention(q, k, k)


@pytest.mark.parametrize(
    ("k_shape", "what"),
    [((3, 8, 5, 4), "batch size"), ((2, 4, 5, 4), "head count")],
)
def test_bad_sdpa_leading_dimensions(k_shape, what):
    q = torch.randn(2, 8, 5, 4)  # (B, nh, T, hs)
    k = torch.randn(k_shape)
    match = (
        r"q, k and v must have the same leading \(batch, head\) dimensions.*"
        rf"got q \(2, 8, 5, 4\), k {re.escape(str(k_shape))}, v"
    )
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(q, k, k)


def test_sdpa_leading_dimensions_broadcast():
    # one key/value head shared by all query heads (multi-query attention)
    torch.manual_seed(0)
    q, kv = torch.randn(2, 8, 5, 4), torch.randn(2, 1, 5, 4)
    out, weights = scaled_dot_product_attention(q, kv, kv)
    ref = F.scaled_dot_product_attention(
        q, kv.expand(2, 8, 5, 4), kv.expand(2, 8, 5, 4)
    )
    torch.testing.assert_close(out, ref)
    assert weights.shape == (2, 8, 5, 5)


def test_bad_from_torch_type():
    with pytest.raises(TypeError, match="mha must be a torch.nn.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))


def test_bad_from_torch_kdim():
    mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True)
    with pytest.raises(ValueError, match="kdim == vdim == embed_dim"):
        MultiHeadAttention.from_torch(mha)


def test_sdpa_mixed_dtypes_allowed_under_autocast():
    torch.manual_seed(0)
    q, k = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    want, _ = scaled_dot_product_attention(q, k, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = scaled_dot_product_attention(q.bfloat16(), k, k)
    torch.testing.assert_close(out.float(), want, rtol=0.05, atol=0.05)


def test_autocast_accepts_lower_precision_input():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, causal=True)
    x = torch.randn(2, 5, 16)
    want, _ = mha(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, _ = mha(x.bfloat16())
        slow, _ = mha(x.bfloat16(), need_weights=True)
    assert fast.dtype == slow.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), want, rtol=0.05, atol=0.05)
    torch.testing.assert_close(slow.float(), want, rtol=0.05, atol=0.05)
