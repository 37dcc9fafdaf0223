"""GPU checks for lmbook.gpt: HF equivalence, KV cache and a mixed-precision step."""

import pytest
import torch

from lmbook.gpt import GPT, GPTConfig

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
transformers = pytest.importorskip("transformers")

V, L = 101, 64


def tokens(seed, B, T, device):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=gen).to(device)


@pytest.fixture
def device():
    return torch.device("cuda")


@pytest.mark.parametrize("seed", [0, 1])
def test_from_hf_matches_on_cuda(seed, device):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=V,
        n_positions=L,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="eager",
    )
    hf = transformers.GPT2LMHeadModel(config).to(device).eval()
    gpt = GPT.from_hf(hf)
    assert gpt.lm_head.weight.device.type == "cuda"
    idx = tokens(seed, 3, 40, device)
    with torch.no_grad():
        ref = hf(idx, output_attentions=True)
        logits, _ = gpt(idx)
        maps = gpt.attention_maps(idx)
    torch.testing.assert_close(logits, ref.logits, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(maps, ref.attentions, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    back = gpt.to_hf(attn_implementation="eager")
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ref.logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("T,new", [(3, 30), (60, 10)])
def test_cached_and_uncached_greedy_agree_on_cuda(seed, T, new, device):
    torch.manual_seed(seed)
    gpt = GPT(GPTConfig(V, L, n_layer=2, n_head=4, n_embd=64)).to(device).eval()
    idx = tokens(seed, 2, T, device)
    cached = gpt.generate(idx, new, temperature=0)
    assert cached.device.type == "cuda"
    uncached = gpt.generate(idx, new, temperature=0, use_cache=False)
    torch.testing.assert_close(cached, uncached, atol=0, rtol=0)
    gen = torch.Generator(device=device).manual_seed(seed)
    a = gpt.generate(idx, new, top_k=10, generator=gen)
    gen = torch.Generator(device=device).manual_seed(seed)
    b = gpt.generate(idx, new, top_k=10, generator=gen)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_steps(dtype, device):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(V, L, n_layer=2, n_head=4, n_embd=64)).to(device).train()
    opt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
    fp16 = dtype == torch.float16  # bfloat16 needs no loss scaling
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10, enabled=fp16)
    idx = tokens(0, 8, L + 1, device)
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=dtype):
            logits, loss = gpt(idx[:, :-1], idx[:, 1:])
        assert logits.dtype == dtype
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grads = [p.grad for p in gpt.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
