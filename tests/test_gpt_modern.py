"""The modern block's switches in lmbook.gpt, checked against Hugging Face's Llama.

RMSNorm, RoPE (rotate-half), SwiGLU, grouped-query attention and untied
embeddings together are Llama's block: logits, cached greedy decoding and the
files on disk must equal transformers' LlamaForCausalLM. Each part is also
checked on its own against the transformers module that implements it.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.models.llama import modeling_llama

from lmbook.gpt import GPT, MLP, GPTConfig, KVCache, MoE
from lmbook.gpt_blocks import apply_rope, make_norm, rope_tables

V, L = 97, 32


def llama(seed=0, **kw):
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("llama-nano", vocab_size=V, block_size=L, **kw)
    gpt = GPT(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # nonzero norms and biases, so every weight matters
        for p in gpt.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return gpt


def tokens(seed, B, T):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


VARIANTS = [
    dict(),  # llama-nano: 4 query heads sharing 2 key/value heads, untied
    dict(n_kv_head=4),  # plain multi-head attention
    dict(n_kv_head=1, bias=True),  # multi-query attention, with biases
    dict(tie_embeddings=True, rope_theta=500000.0),
]


@pytest.mark.parametrize("kw", VARIANTS)
def test_llama_layout_equals_transformers(kw, tmp_path):
    gpt = llama(1, **kw)
    hf = gpt.to_hf(attn_implementation="eager").eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    idx = tokens(1, 2, 20)
    with torch.no_grad():
        ours = gpt(idx)[0]
        # float32 sums over <= 128 terms in other orders: rtol 1e-4
        torch.testing.assert_close(ours, hf(idx).logits, atol=1e-5, rtol=1e-4)
        assert GPT.from_hf(hf).config == gpt.config
        gpt.save_pretrained(tmp_path)
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(loaded(idx).logits, ours, atol=1e-5, rtol=1e-4)
        again = GPT.from_pretrained(tmp_path)
        assert again.config == gpt.config
        torch.testing.assert_close(again(idx)[0], ours, atol=0, rtol=0)


@pytest.mark.parametrize("kw", VARIANTS[:3])
def test_llama_cached_greedy_equals_transformers_generate(kw):
    gpt = llama(2, **kw)
    hf = gpt.to_hf().eval()
    prompt = tokens(2, 2, 5)
    cached = gpt.generate(prompt, 27, temperature=0)
    assert torch.equal(cached, gpt.generate(prompt, 27, temperature=0, use_cache=False))
    theirs = hf.generate(prompt, max_new_tokens=27, do_sample=False, pad_token_id=0)
    assert torch.equal(cached, theirs)


def test_rope_equals_transformers_rotary():
    config = GPTConfig(V, L, 1, 2, 32, position="rope", rope_theta=1000.0)
    cos, sin = rope_tables(config)
    hf_rope = modeling_llama.LlamaRotaryEmbedding(
        LlamaConfig(
            hidden_size=32,
            num_attention_heads=2,
            max_position_embeddings=L,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        )
    )
    q, k = torch.randn(2, 2, L, 16), torch.randn(2, 2, L, 16)
    hf_cos, hf_sin = hf_rope(q, torch.arange(L)[None])
    torch.testing.assert_close(cos, hf_cos[0], atol=1e-6, rtol=1e-5)
    q_hf, k_hf = modeling_llama.apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_the_offset():
    config = GPTConfig(V, L, 1, 1, 8, position="rope")
    cos, sin = rope_tables(config)
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, L, 8), torch.randn(1, 1, 1, 8)
    q, k = apply_rope(q, cos, sin), apply_rope(k.expand(1, 1, L, 8), cos, sin)
    scores = q[0, 0] @ k[0, 0].T  # (L, L): query at m, key at n
    for offset in (0, 3, 7):
        diag = scores.diagonal(-offset)  # every (m, m - offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-4, rtol=1e-4)


def test_rmsnorm_and_swiglu_equal_llama_modules():
    config = GPTConfig.from_preset("llama-nano", vocab_size=V, block_size=L)
    norm = make_norm(config)
    hf_norm = modeling_llama.LlamaRMSNorm(48, eps=config.norm_eps)
    with torch.no_grad():
        norm.weight.normal_()
        hf_norm.weight.copy_(norm.weight)
    x = torch.randn(3, 5, 48)
    torch.testing.assert_close(norm(x), hf_norm(x))
    mlp = MLP(config)
    hf_cfg = LlamaConfig(
        hidden_size=48, num_attention_heads=4, intermediate_size=config.n_inner
    )
    hf_mlp = modeling_llama.LlamaMLP(hf_cfg)
    gate, up = mlp.c_fc.weight.chunk(2)
    with torch.no_grad():
        hf_mlp.gate_proj.weight.copy_(gate)
        hf_mlp.up_proj.weight.copy_(up)
        hf_mlp.down_proj.weight.copy_(mlp.c_proj.weight)
    torch.testing.assert_close(mlp(x), hf_mlp(x))
    assert config.n_inner == 128  # 8/3 * 48, so 3 matrices cost what GELU's 2 do


def test_grouped_query_attention_equals_repeated_heads():
    """GQA is MHA whose key/value heads are copies within each group."""
    gqa = llama(3, n_kv_head=2)
    mha = GPT(GPTConfig(**{**vars(gqa.config), "n_kv_head": 4})).eval()
    sd = gqa.state_dict()
    C, hs = 48, 12
    for i in range(gqa.config.n_layer):
        w = sd[f"transformer.h.{i}.attn.c_attn.weight"]
        q, k, v = w.split([C, 2 * hs, 2 * hs])
        k, v = (
            t.view(2, hs, C).repeat_interleave(2, dim=0).reshape(-1, C) for t in (k, v)
        )
        sd[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([q, k, v])
    mha.load_state_dict(sd)
    idx = tokens(3, 2, 12)
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=1e-5, rtol=1e-4)
    cache = KVCache(gqa.config, batch_size=2, max_len=L)
    assert cache.keys.shape == (3, 2, 2, L, hs)  # n_kv_head heads: GQA's saving


def test_one_expert_is_the_dense_mlp():
    config = GPTConfig(V, L, 1, 2, 16, n_expert=1, n_expert_active=1)
    moe, dense = MoE(config), MLP(config)
    dense.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(moe(x), dense(x))
    torch.testing.assert_close(moe.aux_loss, torch.tensor(1.0))  # E f P = 1 * 1 * 1


def test_moe_routes_to_the_top_k_and_computes_the_switch_loss():
    torch.manual_seed(4)
    config = GPTConfig(V, L, 1, 2, 16, n_expert=4, n_expert_active=2)
    moe = MoE(config)
    x = torch.randn(1, 6, 16)
    out = moe(x)
    probs = torch.softmax(moe.router(x[0]), dim=-1)  # (6, 4)
    expected, counts = [], torch.zeros(4)
    for n in range(6):  # token by token, as the equations say
        p, e = probs[n].topk(2)
        w = p / p.sum()
        expected.append(sum(w[j] * moe.experts[e[j]](x[0, n]) for j in range(2)))
        counts[e] += 1
    torch.testing.assert_close(out[0], torch.stack(expected), atol=1e-6, rtol=1e-5)
    f, P = counts / counts.sum(), probs.mean(dim=0)
    torch.testing.assert_close(moe.aux_loss, 4 * (f * P).sum())


def test_moe_loss_includes_the_balancing_term_and_generation_agrees():
    torch.manual_seed(5)
    gpt = GPT(GPTConfig(V, L, 2, 2, 16, n_expert=4, moe_aux_coef=0.5)).eval()
    idx = tokens(5, 2, 10)
    logits, loss = gpt(idx, idx)
    ce = torch.nn.functional.cross_entropy(logits.view(-1, V), idx.view(-1))
    aux = sum(block.mlp.aux_loss for block in gpt.transformer.h)
    torch.testing.assert_close(loss, ce + 0.5 * aux)
    cached = gpt.generate(idx[:, :4], 12, temperature=0)
    assert torch.equal(
        cached, gpt.generate(idx[:, :4], 12, temperature=0, use_cache=False)
    )


def test_rope_model_has_no_position_table():
    gpt = llama(6)
    assert "transformer.wpe.weight" not in gpt.state_dict()  # no position table
    assert gpt.num_parameters() == sum(p.numel() for p in gpt.parameters())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(norm="batchnorm"), ValueError, "norm must be one of 'layernorm', "),
        (dict(position="alibi"), ValueError, "position must be one of 'learned', "),
        (dict(activation="relu"), ValueError, "activation must be one of 'gelu', "),
        (dict(n_kv_head=3), ValueError, "n_head must be divisible by n_kv_head"),
        (dict(n_kv_head=0), ValueError, "n_kv_head must be >= 1, got 0"),
        (dict(n_embd=12, n_head=4, position="rope"), ValueError, "must be even, got 3"),
        (dict(n_expert=2, n_expert_active=3), ValueError, "n_expert_active must be"),
        (dict(n_expert=-1), ValueError, "n_expert must be >= 0, got -1"),
        (dict(rope_theta=0.5), ValueError, "rope_theta must be >= 1.0, got 0.5"),
        (dict(norm_eps=0.0), ValueError, r"norm_eps must be in \(0.0, 1.0\]"),
        (dict(tie_embeddings=1), TypeError, "tie_embeddings must be a bool, got int"),
        (dict(n_inner=0), ValueError, "n_inner must be >= 1, got 0"),
    ],
)
def test_config_rejects_bad_switches(kwargs, error, match):
    base = dict(vocab_size=V, block_size=L, n_layer=1, n_head=4, n_embd=32)
    with pytest.raises(error, match=match):
        GPTConfig(**{**base, **kwargs})


def test_mixed_layouts_cannot_be_exported(tmp_path):
    gpt = GPT(GPTConfig(V, L, 1, 2, 16, position="rope"))  # GPT-2 block + RoPE
    with pytest.raises(ValueError, match="no Hugging Face class"):
        gpt.to_hf()
    with pytest.raises(ValueError, match="no Hugging Face class"):
        gpt.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()
