"""The equivalences of test_attention.py and test_rnn.py, on a CUDA device.

GPU kernels (cuDNN RNNs, flash/memory-efficient attention, TF32) differ from the
CPU reference in rounding, so results are compared within a tolerance.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from lmbook.rnn import GRU, LSTM, RNN, RNNLM

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DEV = "cuda"
TOL = {"rtol": 2e-3, "atol": 2e-3}


@pytest.mark.parametrize("masking", ["none", "causal", "random"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sdpa_matches_torch_on_cuda(masking, dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 33, 16, device=DEV, dtype=dtype) for _ in range(3))
    mask = {
        "none": None,
        "causal": causal_mask(33, device=DEV),
        "random": torch.rand(2, 4, 33, 33, device=DEV) < 0.7,
    }[masking]
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    tol = TOL if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(out, ref, **tol)
    assert weights.device.type == "cuda" and weights.dtype == dtype


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch_on_cuda(causal):
    torch.manual_seed(0)
    B, T, C, nh = 2, 17, 32, 4
    ref = nn.MultiheadAttention(C, nh, batch_first=True).to(DEV).eval()
    ours = MultiHeadAttention.from_torch(ref, causal=causal).eval()
    assert ours.in_proj.weight.device.type == "cuda"
    x = torch.randn(B, T, C, device=DEV)
    attn_mask = ~causal_mask(T, device=DEV) if causal else None
    want, _ = ref(x, x, x, attn_mask=attn_mask)
    _, heads = ref(x, x, x, attn_mask=attn_mask, average_attn_weights=False)
    fast, _ = ours(x)
    slow, weights = ours(x, need_weights=True)
    torch.testing.assert_close(fast, want, **TOL)
    torch.testing.assert_close(slow, want, **TOL)
    torch.testing.assert_close(weights, heads, **TOL)


def test_mha_gradients_match_torch_on_cuda():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 2, batch_first=True).to(DEV)
    ours = MultiHeadAttention.from_torch(ref, causal=True)
    x1 = torch.randn(2, 9, 16, device=DEV, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    ours(x1)[0].square().sum().backward()
    ref(x2, x2, x2, attn_mask=~causal_mask(9, device=DEV))[0].square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    torch.testing.assert_close(ours.in_proj.weight.grad, ref.in_proj_weight.grad, **TOL)


def test_sdpa_inputs_on_two_devices_give_a_clear_error():
    q = torch.randn(2, 4, 5, 8, device=DEV)
    k = torch.randn(2, 4, 5, 8)  # on the CPU
    with pytest.raises(ValueError, match=r"same device; got q on cuda:0, k on cpu"):
        scaled_dot_product_attention(q, k, k)
    with pytest.raises(TypeError, match="same dtype; got q torch.float16"):
        scaled_dot_product_attention(q.half(), q, q)


@pytest.mark.parametrize(
    "ours_cls,torch_cls", [(LSTM, nn.LSTM), (RNN, nn.RNN), (GRU, nn.GRU)]
)
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_layers_match_torch_on_cuda(ours_cls, torch_cls, fused, num_layers):
    torch.manual_seed(0)
    ours = ours_cls(8, 16, num_layers, fused=fused).to(DEV)
    ref = torch_cls(8, 16, num_layers, batch_first=True).to(DEV)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 11, 8, device=DEV, requires_grad=True)
    shape = (num_layers, 4, 16)
    h0 = torch.randn(shape, device=DEV)
    state = (h0, torch.randn(shape, device=DEV)) if ours_cls is LSTM else h0
    out, final = ours(x, state)
    want, want_final = ref(x, state)
    torch.testing.assert_close(out, want, **TOL)
    torch.testing.assert_close(final, want_final, **TOL)
    (g_ours,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_ours, g_ref, **TOL)
    ours.load_state_dict(ref.state_dict())  # and back again, on the device


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_rnnlm_fast_equals_slow_on_cuda(cell):
    torch.manual_seed(0)
    model = RNNLM(20, 32, num_layers=2, cell=cell).to(DEV).eval()
    idx = torch.randint(0, 20, (3, 12), device=DEV)
    fast_logits, fast_loss = model(idx, idx)
    model.fast = False
    slow_logits, slow_loss = model(idx, idx)
    assert fast_logits.device.type == "cuda"
    torch.testing.assert_close(fast_logits, slow_logits, **TOL)
    torch.testing.assert_close(fast_loss, slow_loss, **TOL)
