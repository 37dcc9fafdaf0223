"""lmbook.quantize: group-wise absmax quantization equals PyTorch's own fake
quantization with the same scales, and ONNX Runtime's symmetric int4
(MatMulNBits) up to its choice of scale; round trips stay within half a step;
int4 packing is lossless; QuantLinear computes with the dequantized weight;
every public function rejects bad arguments by name."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from lmbook import GPT, GPTConfig
from lmbook.quantize import (
    QuantLinear,
    bytes_per_weight,
    dequantize,
    model_size_bytes,
    pack_int4,
    quantize_groupwise,
    quantize_model,
    unpack_int4,
)
from tests.conftest import import_or_fail


def _weight(d_out=8, d_in=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_out, d_in, generator=g)


@pytest.mark.parametrize("bits", [8, 4, 3])
@pytest.mark.parametrize("group_size", [None, 16, 32])
def test_equals_torch_fake_quantize_with_the_same_scales(bits, group_size):
    w = _weight()
    q, scale = quantize_groupwise(w, bits, group_size)
    g = group_size or w.shape[1]
    qmax = 2 ** (bits - 1) - 1
    rows = w.reshape(-1, g)  # one group per row: per-channel in torch's terms
    ref = torch.fake_quantize_per_channel_affine(
        rows,
        scale.reshape(-1),
        torch.zeros(rows.shape[0], dtype=torch.int32),
        0,
        -qmax,
        qmax,
    )
    assert_close(dequantize(q, scale), ref.reshape(w.shape))


def test_int8_per_row_equals_torch_quantize_per_channel():
    w = _weight(16, 48)
    q, scale = quantize_groupwise(w, 8)
    ref = torch.quantize_per_channel(
        w, scale[:, 0].double(), torch.zeros(16, dtype=torch.long), 0, torch.qint8
    )
    assert torch.equal(q, ref.int_repr())
    assert_close(dequantize(q, scale), ref.dequantize())


def _matmul_nbits(w: torch.Tensor, block_size: int):
    """ONNX Runtime's symmetric int4 of w (d_out, d_in) in a one-MatMul graph
    y = x @ w.T: the graph, its integers (d_out, d_in) and scales."""
    import_or_fail("onnx")
    nbits = import_or_fail("onnxruntime.quantization.matmul_nbits_quantizer")
    logging.getLogger(nbits.__name__).setLevel(logging.WARNING)
    from onnx import TensorProto, helper, numpy_helper

    d_out, d_in = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_t"], ["y"], name="mm")],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, d_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, d_out])],
        [numpy_helper.from_array(w.T.numpy().copy(), "w_t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    quantizer = nbits.MatMulNBitsQuantizer(
        model, bits=4, block_size=block_size, is_symmetric=True
    )
    quantizer.process()
    model = quantizer.model.model
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    stored = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    packed = torch.from_numpy(stored["w_t_Q4"])  # (d_out, n_blocks, block_size / 2)
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=-1)  # low nibble first
    q = nibbles.reshape(d_out, d_in).to(torch.int8) - 8  # zero point 8
    scale = torch.from_numpy(stored["w_t_scales"]).reshape(d_out, -1)
    return model, q, scale


@pytest.mark.parametrize("block_size", [32, 64, 128])
def test_int4_matches_onnxruntime_matmul_nbits(block_size):
    w = _weight(24, 256, seed=block_size)
    model, ort_q, ort_scale = _matmul_nbits(w, block_size)
    q, scale = quantize_groupwise(w, 4, block_size)
    # ONNX Runtime uses all 16 levels: each block's weight of largest magnitude
    # goes to -8, so its scale is that weight / -8, and |scale| = 7/8 of ours
    # (absmax / 7). Both are one or two float32 roundings of absmax, hence the
    # default float32 tolerance.
    blocks = w.reshape(24, -1, block_size)
    extreme = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))[..., 0]
    assert_close(ort_scale, extreme / -8)
    assert_close(ort_scale.abs(), scale * 7 / 8)
    # Given its scales, its integers are our rounding, clamped to [-8, 7]. It
    # multiplies by 1 / scale where we divide, so a weight on a tie may round the
    # other way: equal for >= 99%, and never more than one level apart.
    step = ort_scale.repeat_interleave(block_size, dim=1)
    rounded = torch.round(w / step).clamp(-8, 7)
    diff = (ort_q - rounded).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() >= 0.99
    w_hat = dequantize(ort_q, ort_scale)
    err, half = (w_hat - w).abs(), step.abs() / 2 + 1e-6
    assert (err <= half)[w / step <= 7.5].all()  # rounded: within half a step
    assert (err <= 2 * half).all()  # clamped from 8 to 7: within one step
    # Its rounding error is smaller than ours, by about the ratio of the steps.
    assert (w_hat - w).norm() < (dequantize(q, scale) - w).norm()
    # The MatMulNBits kernel multiplies by exactly these weights: float32 sums
    # of 256 products, so rtol=1e-4 with atol for outputs near 0.
    ort = import_or_fail("onnxruntime")
    session = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = _weight(5, 256, seed=1)
    y = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    assert_close(y, x @ w_hat.T, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    d_out=st.integers(1, 5),
    n_groups=st.integers(1, 4),
    g=st.sampled_from([1, 2, 8, 32]),
    seed=st.integers(0, 1000),
)
def test_round_trip_within_half_a_step(bits, d_out, n_groups, g, seed):
    w = _weight(d_out, n_groups * g, seed) * 3
    q, scale = quantize_groupwise(w, bits, g)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and q.abs().max() <= qmax
    assert scale.shape == (d_out, n_groups)
    step = scale.repeat_interleave(g, dim=1)
    assert ((dequantize(q, scale) - w).abs() <= step / 2 + 1e-6).all()
    # each group's largest weight is represented exactly at +-qmax
    assert (q.reshape(d_out, n_groups, g).abs().amax(-1) == qmax).all()


def test_zero_group_gets_scale_one_and_zeros():
    w = torch.zeros(2, 8)
    w[1, 4:] = 1.0
    q, scale = quantize_groupwise(w, 4, 4)
    assert scale[0].tolist() == [1.0, 1.0] and not q[0].any()
    assert_close(dequantize(q, scale), w)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-8, 7), min_size=0, max_size=20).map(
        lambda v: v[: len(v) // 2 * 2]
    )
)
def test_pack_unpack_round_trip(values):
    q = torch.tensor(values, dtype=torch.int8).reshape(1, -1)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (1, q.shape[1] // 2)
    assert torch.equal(unpack_int4(packed), q)


def test_pack_layout_low_nibble_first():
    packed = pack_int4(torch.tensor([1, -1, -8, 7], dtype=torch.int8))
    assert packed.tolist() == [0xF1, 0x78]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_quant_linear_uses_the_dequantized_weight(bits, bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 24, bias=bias)
    layer = QuantLinear(linear, bits, 16)
    q, scale = quantize_groupwise(linear.weight, bits, 16)
    x = torch.randn(3, 5, 64)
    assert_close(layer(x), F.linear(x, dequantize(q, scale), linear.bias))
    stored = layer.qweight
    assert stored.dtype == (torch.uint8 if bits == 4 else torch.int8)
    assert stored.shape == (24, 32 if bits == 4 else 64)
    expected = stored.numel() + scale.numel() * 4 + (24 * 4 if bias else 0)
    assert model_size_bytes(layer) == expected


def test_bytes_per_weight_predicts_quant_linear_size():
    layer = QuantLinear(nn.Linear(128, 16, bias=False), 4, 32)
    assert model_size_bytes(layer) == 128 * 16 * bytes_per_weight(4, 32)
    assert bytes_per_weight(8, 64, scale_bits=16) == 1 + 2 / 64
    assert bytes_per_weight(3, 32) == 1 + 4 / 32  # 3 bits stored in a byte


def _tiny_gpt():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return GPT(cfg).eval()


def test_quantize_model_replaces_linears_but_not_lm_head():
    model = _tiny_gpt()
    ids = torch.randint(0, 32, (2, 10))
    with torch.no_grad():
        before = model(ids)[0]
    size = model_size_bytes(model)
    quantize_model(model, 8, 16)
    kinds = {n: type(m) for n, m in model.named_modules()}
    assert kinds["lm_head"] is nn.Linear
    assert kinds["transformer.h.0.attn.c_attn"] is QuantLinear
    assert not any(k is nn.Linear for n, k in kinds.items() if n != "lm_head")
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    with torch.no_grad():
        assert_close(model(ids)[0], before, atol=0.05, rtol=0)
    assert model_size_bytes(model) < 0.6 * size


def test_model_size_counts_tied_weights_once():
    model = _tiny_gpt()
    n = sum(p.numel() for p in model.parameters())  # parameters() dedups too
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert model_size_bytes(model) == 4 * n + buffers


def test_quantize_model_checks_every_layer_before_changing_any():
    model = nn.Sequential(nn.Linear(32, 8), nn.Linear(8, 4))
    with pytest.raises(ValueError, match="group_size must divide"):
        quantize_model(model, 4, 16, skip=())
    assert all(isinstance(m, nn.Linear) for m in model)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: quantize_groupwise([[1.0]], 8), TypeError, "w must be a torch.Tensor"),
        (lambda: quantize_groupwise(torch.ones(4), 8), ValueError, "w must be 2-D"),
        (
            lambda: quantize_groupwise(torch.ones(2, 4, dtype=torch.int8), 8),
            TypeError,
            "floating-point",
        ),
        (
            lambda: quantize_groupwise(torch.ones(2, 4), 1),
            ValueError,
            r"bits must be in \[2, 8\]",
        ),
        (
            lambda: quantize_groupwise(torch.ones(2, 4), 8.0),
            TypeError,
            "bits must be an int",
        ),
        (
            lambda: quantize_groupwise(torch.ones(2, 4), 8, 3),
            ValueError,
            "group_size must divide",
        ),
        (
            lambda: quantize_groupwise(torch.ones(2, 4), 8, 0),
            ValueError,
            "group_size must be >= 1",
        ),
        (
            lambda: dequantize(torch.ones(2, 4), torch.ones(2, 1)),
            TypeError,
            "q must be",
        ),
        (
            lambda: dequantize(torch.ones(2, 4, dtype=torch.int8), torch.ones(2, 3)),
            ValueError,
            "scale must have shape",
        ),
        (lambda: pack_int4(torch.ones(3, dtype=torch.int8)), ValueError, "even"),
        (lambda: pack_int4(torch.tensor([8, 0])), ValueError, r"\[-8, 7\]"),
        (lambda: pack_int4(torch.ones(2)), TypeError, "integer tensor"),
        (lambda: pack_int4([1, 2]), TypeError, "q must be a torch.Tensor"),
        (lambda: unpack_int4(torch.ones(2, dtype=torch.int8)), TypeError, "uint8"),
        (lambda: QuantLinear(nn.Conv1d(2, 2, 1), 8), TypeError, "torch.nn.Linear"),
        (lambda: QuantLinear(nn.Linear(3, 2), 4), ValueError, "even in_features"),
        (lambda: quantize_model("model", 8), TypeError, "model must be"),
        (
            lambda: quantize_model(nn.Sequential(nn.Linear(4, 4)), 8, skip="0"),
            TypeError,
            "skip must be",
        ),
        (
            lambda: quantize_model(nn.Sequential(nn.ReLU()), 8),
            ValueError,
            "no nn.Linear",
        ),
        (lambda: bytes_per_weight(4, 0), ValueError, "group_size"),
        (lambda: bytes_per_weight(4, 32, scale_bits=0), ValueError, "scale_bits"),
        (lambda: model_size_bytes(None), TypeError, "model must be"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
