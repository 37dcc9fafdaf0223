"""Tests for lmbook.gpt and lmbook.gpt_hf, checked against Hugging Face's GPT-2."""

import json
import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from lmbook.gpt import GPT, GPTConfig, KVCache, sample_logits

V, L = 101, 32  # vocab_size and block_size of the tiny test models
SHAPES = [(2, 32), (4, 64)]  # (n_head, n_embd)


def hf_config(n_head=2, n_embd=32, **kw):
    kw = dict(
        vocab_size=V,
        n_positions=L,
        n_embd=n_embd,
        n_layer=2,
        n_head=n_head,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="eager",
        **kw,
    )
    return GPT2Config(**kw)


def randomize_(module, seed, std=0.3):
    """Give every parameter (biases and LayerNorms too) random non-trivial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            p.copy_(noise + 1.0 if "ln" in name and name.endswith("weight") else noise)
    return module


def make_hf(seed=0, n_head=2, n_embd=32):
    torch.manual_seed(seed)
    return randomize_(GPT2LMHeadModel(hf_config(n_head, n_embd)), seed).eval()


def make_gpt(seed=0, n_head=2, n_embd=32, std=0.3, **kw):
    torch.manual_seed(seed)
    config = GPTConfig(V, L, n_layer=2, n_head=n_head, n_embd=n_embd, **kw)
    return randomize_(GPT(config), seed, std).eval()


def tokens(seed, B, T):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- equivalence
@pytest.mark.parametrize("n_head,n_embd", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_from_hf_matches_hf_logits_and_loss(seed, n_head, n_embd):
    hf = make_hf(seed, n_head, n_embd)
    gpt = GPT.from_hf(hf)
    idx = tokens(seed, 3, 17)
    labels = idx.clone()
    labels[0, 5] = labels[2, 9] = -100  # ignored positions
    with torch.no_grad():
        ref = hf(idx, labels=labels)
        logits, _ = gpt(idx)
        _, loss = gpt(idx[:, :-1], targets=labels[:, 1:])  # HF shifts; we do not
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert gpt.lm_head.weight is gpt.transformer.wte.weight


@pytest.mark.parametrize("n_head,n_embd", SHAPES)
def test_to_hf_matches_lmbook(n_head, n_embd):
    gpt = make_gpt(3, n_head, n_embd)
    hf = gpt.to_hf(attn_implementation="eager")
    assert isinstance(hf, GPT2LMHeadModel) and not hf.training
    idx = tokens(3, 2, L)
    with torch.no_grad():
        torch.testing.assert_close(gpt(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)
        back = GPT.from_hf(hf)
        torch.testing.assert_close(back(idx)[0], gpt(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "hf_activation,ours",
    [("gelu_new", "gelu_tanh"), ("gelu_pytorch_tanh", "gelu_tanh"), ("gelu", "gelu")],
)
def test_activation_follows_the_hf_config_both_ways(hf_activation, ours):
    torch.manual_seed(5)
    hf = randomize_(GPT2LMHeadModel(hf_config(activation_function=hf_activation)), 5)
    gpt = GPT.from_hf(hf.eval())
    assert gpt.config.activation == ours
    idx = tokens(5, 2, L)
    with torch.no_grad():
        torch.testing.assert_close(gpt(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)
        back = gpt.to_hf(attn_implementation="eager")
        ref = hf(idx).logits
        torch.testing.assert_close(back(idx).logits, ref, atol=1e-5, rtol=1e-5)
    expected = "gelu" if ours == "gelu" else "gelu_new"
    assert back.config.activation_function == expected


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_mlp_uses_the_exact_or_the_tanh_gelu_formula(activation):
    def exact(h):  # x * Phi(x), Phi the standard normal CDF
        return 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))

    def tanh_form(h):  # GPT-2's approximation
        u = math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)
        return 0.5 * h * (1 + torch.tanh(u))

    gelu = exact if activation == "gelu" else tanh_form
    torch.manual_seed(6)
    mlp = GPT(GPTConfig(V, L, 1, 2, 16, activation=activation)).double()
    mlp = randomize_(mlp, 6, std=1.0).transformer.h[0].mlp
    x = torch.randn(3, 5, 16, dtype=torch.float64) * 3
    with torch.no_grad():
        ref = mlp.c_proj(gelu(mlp.c_fc(x)))
        torch.testing.assert_close(mlp(x), ref, atol=1e-10, rtol=1e-10)
    h = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    assert 1e-4 < (exact(h) - tanh_form(h)).abs().max() < 5e-4  # close, not equal


def test_presets_and_default_activation():
    assert GPTConfig.from_preset("gpt2").activation == "gelu_tanh"  # GPT-2's formula
    assert GPTConfig.from_preset("gpt2-xl").activation == "gelu_tanh"
    assert GPTConfig(V, L, 1, 1, 4).activation == "gelu"  # exact, as nanoGPT
    tiny = GPTConfig.from_preset("gpt-nano", vocab_size=V, block_size=L)
    assert tiny.activation == "gelu"


def test_to_hf_without_bias_uses_zero_biases():
    gpt = make_gpt(4, bias=False)
    assert all("bias" not in name for name, _ in gpt.named_parameters())
    idx = tokens(4, 2, 9)
    with torch.no_grad():
        ref = gpt.to_hf(attn_implementation="eager")(idx).logits
        torch.testing.assert_close(gpt(idx)[0], ref, atol=1e-5, rtol=1e-5)


def test_loss_is_mean_cross_entropy_over_kept_positions():
    gpt = make_gpt(5)
    idx, targets = tokens(5, 2, 12), tokens(6, 2, 12)
    targets[1, :4] = -100
    logits, loss = gpt(idx, targets)
    keep = targets != -100
    logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None])
    torch.testing.assert_close(loss, -logp[..., 0][keep].mean())


@pytest.mark.parametrize("n_head,n_embd", SHAPES)
def test_attention_maps_match_hf(n_head, n_embd):
    hf = make_hf(7, n_head, n_embd)
    gpt = GPT.from_hf(hf).train()  # maps are computed without dropout anyway
    idx = tokens(7, 2, 13)
    maps = gpt.attention_maps(idx)
    assert gpt.training  # mode restored
    with torch.no_grad():
        ref = hf(idx, output_attentions=True).attentions
    assert len(maps) == len(ref) == 2
    for ours, theirs in zip(maps, ref, strict=True):
        assert ours.shape == (2, n_head, 13, 13)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), T=st.integers(1, L))
def test_attention_maps_are_causal_distributions(seed, T):
    maps = make_gpt(seed % 3).attention_maps(tokens(seed, 1, T))
    for att in maps:
        torch.testing.assert_close(att.sum(-1), torch.ones(1, 2, T))
        assert (att.triu(diagonal=1) == 0).all()


def test_gpt2_presets_match_hf_parameter_counts():
    for name in ("gpt2", "gpt2-medium"):
        config = GPTConfig.from_preset(name)
        with torch.device("meta"):
            gpt = GPT(config)
            hf = GPT2LMHeadModel(
                GPT2Config(
                    n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd
                )
            )
        total = sum(p.numel() for p in hf.parameters())
        assert gpt.num_parameters() == total == hf.num_parameters()  # 124M, 355M
        emb = config.vocab_size * config.n_embd + config.block_size * config.n_embd
        assert gpt.num_parameters(non_embedding=True) == total - emb
        assert gpt.num_parameters(exclude_embeddings=True) == total - emb
        assert hf.num_parameters(exclude_embeddings=True) == total - emb
    assert GPTConfig.from_preset("gpt2").n_layer == 12


def test_gpt2_initialisation_statistics():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=256))
    resid_std = 0.02 / math.sqrt(2 * 4)  # scaled residual projections
    for name, p in gpt.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.std().item() - resid_std) < 0.05 * resid_std, name
        elif name.endswith("weight") and p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.05 * 0.02, name
        elif "ln" in name:
            assert torch.equal(
                p,
                torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p),
            ), name
        else:
            assert name.endswith("bias") and (p == 0).all(), name


def test_to_hf_default_attention_matches():
    gpt = make_gpt(20)
    idx = tokens(20, 2, 16)
    with torch.no_grad():
        ref = gpt.to_hf()(idx).logits  # transformers' default attention (sdpa)
        torch.testing.assert_close(gpt(idx)[0], ref, atol=1e-5, rtol=1e-5)


def test_small_presets_need_and_take_vocab_and_block():
    config = GPTConfig.from_preset("gpt-nano", vocab_size=65, block_size=128)
    assert (config.n_layer, config.n_head, config.n_embd) == (3, 3, 48)
    assert (config.vocab_size, config.block_size) == (65, 128)


# --------------------------------------------------------------- checkpoints
def test_save_pretrained_loads_in_transformers_without_warnings(tmp_path):
    gpt = make_gpt(8, 4, 64)
    gpt.save_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]
    hf, info = GPT2LMHeadModel.from_pretrained(
        tmp_path / "ckpt", attn_implementation="eager", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys"))
    assert not info["mismatched_keys"]
    idx = tokens(8, 2, 20)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, gpt(idx)[0], atol=1e-5, rtol=1e-5)


def test_from_pretrained_round_trips(tmp_path):
    gpt = make_gpt(9)
    gpt.save_pretrained(tmp_path)
    gpt.save_pretrained(tmp_path)  # overwriting an existing checkpoint works
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config == gpt.config and not loaded.training
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    for (name, a), (_, b) in zip(
        loaded.state_dict().items(), gpt.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_from_pretrained_reads_transformers_checkpoints(tmp_path):
    hf = make_hf(10)
    hf.save_pretrained(tmp_path / "hf")
    idx = tokens(10, 2, 11)
    with torch.no_grad():
        ref = hf(idx).logits
        got = GPT.from_pretrained(str(tmp_path / "hf"))(idx)[0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the layout of OpenAI's hub files: no "transformer." prefix, mask buffers
    sd = load_file(tmp_path / "hf" / "model.safetensors")
    old = {k.removeprefix("transformer."): v for k, v in sd.items()}
    old["h.0.attn.bias"] = torch.ones(1, 1, L, L).tril()
    os.makedirs(tmp_path / "old")
    save_file(old, tmp_path / "old" / "model.safetensors")
    (tmp_path / "old" / "config.json").write_text(json.dumps(hf.config.to_dict()))
    with torch.no_grad():
        got = GPT.from_pretrained(tmp_path / "old")(idx)[0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_from_pretrained_reads_sharded_checkpoints(tmp_path):
    gpt = make_gpt(19)
    gpt.save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    os.remove(tmp_path / "model.safetensors")
    names = sorted(sd)
    shards = {
        "model-00001-of-00002.safetensors": names[:10],
        "model-00002-of-00002.safetensors": names[10:],
    }
    for file, keys in shards.items():
        save_file({k: sd[k] for k in keys}, tmp_path / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    idx = tokens(19, 2, 9)
    with torch.no_grad():
        got = GPT.from_pretrained(tmp_path)(idx)[0]
        torch.testing.assert_close(got, gpt(idx)[0], atol=0, rtol=0)


@settings(max_examples=12, deadline=None, database=None)
@given(
    bias=st.booleans(),
    activation=st.sampled_from(["gelu", "gelu_tanh"]),
    dropout=st.sampled_from([0.0, 0.1, 0.25]),
    n_layer=st.integers(1, 3),
    n_head=st.sampled_from([1, 2, 4]),
    block_size=st.integers(4, 40),
    vocab_size=st.integers(2, 300),
)
def test_every_config_field_round_trips(
    tmp_path_factory, bias, activation, dropout, n_layer, n_head, block_size, vocab_size
):
    config = GPTConfig(
        vocab_size, block_size, n_layer, n_head, 8 * n_head, dropout, bias, activation
    )
    gpt = GPT(config)
    path = tmp_path_factory.mktemp("ckpt")
    gpt.save_pretrained(path)
    loaded = GPT.from_pretrained(path)
    assert loaded.config == config  # bias=False used to come back as True
    assert loaded.num_parameters() == gpt.num_parameters()
    idx = torch.randint(0, vocab_size, (2, min(5, block_size)))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(idx)[0], gpt.eval()(idx)[0])


def test_bias_free_checkpoint_still_loads_in_transformers(tmp_path):
    gpt = make_gpt(3, bias=False)
    gpt.save_pretrained(tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = tokens(3, 2, 7)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, gpt(idx)[0], atol=1e-5, rtol=1e-4)
    sd = load_file(tmp_path / "model.safetensors")  # nonzero biases contradict it
    sd["transformer.h.0.ln_1.bias"] = torch.ones_like(sd["transformer.h.0.ln_1.bias"])
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"h\.0\.ln_1\.bias is nonzero.*bias=false"):
        GPT.from_pretrained(tmp_path)


def test_untied_lm_head_is_refused_naming_both_tensors(tmp_path):
    make_gpt(4).save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    sd["lm_head.weight"] = sd["transformer.wte.weight"] + 0.5
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight differs from transformer.wte"):
        GPT.from_pretrained(tmp_path)
    sd["lm_head.weight"] = sd["transformer.wte.weight"].clone()  # equal: fine
    save_file(sd, tmp_path / "model.safetensors")
    GPT.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "sub/model.safetensors", "/etc/passwd", ".."]
)
def test_shard_names_cannot_leave_the_folder(tmp_path, shard):
    make_gpt(5).save_pretrained(tmp_path)
    os.remove(tmp_path / "model.safetensors")
    index = {"weight_map": {"transformer.wte.weight": shard}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="is not a plain file name"):
        GPT.from_pretrained(tmp_path)


def test_save_pretrained_keeps_other_files_and_leaves_no_temporaries(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("card")
    make_gpt(6).save_pretrained(folder)
    make_gpt(7).save_pretrained(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no .tmp leftovers
    assert (folder / "README.md").read_text() == "card"


def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        make_gpt().save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750


@pytest.fixture
def ckpt(tmp_path):
    make_gpt(11).save_pretrained(tmp_path)
    return tmp_path


def test_from_pretrained_rejects_corrupt_safetensors(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_wrong_shape(ckpt):
    sd = load_file(ckpt / "model.safetensors")
    sd["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(32, 100)
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=r"h\.1\.mlp\.c_fc\.weight has shape \(32, 1"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_missing_key(ckpt):
    sd = load_file(ckpt / "model.safetensors")
    del sd["transformer.ln_f.bias"]
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing weight\(s\) \['ln_f\.bias'\]"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_unexpected_key(ckpt):
    sd = load_file(ckpt / "model.safetensors")
    sd["transformer.h.2.ln_1.weight"] = torch.ones(32)
    save_file(sd, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected weight\(s\) \['h\.2\.ln_1"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_missing_config(ckpt):
    os.remove(ckpt / "config.json")
    with pytest.raises(ValueError, match=r"config\.json not found"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_invalid_config_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_rejects_unsupported_config(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["activation_function"] = "relu"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json: activation_function='relu'"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_refuses_pickles(ckpt):
    os.replace(ckpt / "model.safetensors", ckpt / "pytorch_model.bin")
    with pytest.raises(ValueError, match="safetensors only"):
        GPT.from_pretrained(ckpt)


def test_from_pretrained_offline_hub_name_explains(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="could not download .*pass their directory"):
        GPT.from_pretrained("lmbook-tests/no-such-model")


def test_from_pretrained_rejects_file_path(ckpt):
    with pytest.raises(ValueError, match="is not a directory"):
        GPT.from_pretrained(ckpt / "config.json")


def test_save_pretrained_rejects_file_path(ckpt):
    with pytest.raises(ValueError, match="exists and is a file; expected a folder"):
        make_gpt().save_pretrained(ckpt / "config.json")


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("T,new", [(1, 20), (7, 25), (30, 12), (40, 8)])
def test_cached_and_uncached_greedy_agree(seed, T, new):
    gpt = make_gpt(seed, std=0.15)
    idx = tokens(seed, 2, T)  # T=30 and T=40 run past block_size=32
    cached = gpt.generate(idx, new, temperature=0)
    uncached = gpt.generate(idx, new, temperature=0, use_cache=False)
    assert cached.shape == (2, T + new)
    assert torch.equal(cached[:, :T], idx)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_kv_cache_gives_the_logits_of_forward(bias, activation):
    gpt = make_gpt(8, n_head=4, n_embd=64, bias=bias, activation=activation)
    idx = tokens(8, 3, 20)
    with torch.no_grad():
        ref = gpt(idx)[0]  # (B, T, V)
        cache = KVCache(gpt.config, batch_size=3, max_len=L)
        cache.keys.fill_(float("nan"))
        logits = gpt(idx[:, :5], kv_cache=cache)[0]  # prefill positions 0..4
        # float32 sums over <= 64 terms in another order: rtol 1e-4 covers it
        torch.testing.assert_close(logits, ref[:, :5], atol=1e-5, rtol=1e-4)
        for pos in range(5, 20):  # then one position at a time
            logits = gpt(idx[:, pos : pos + 1], kv_cache=cache)[0]
            torch.testing.assert_close(logits[:, 0], ref[:, pos], atol=1e-5, rtol=1e-4)
    assert cache.length == 20
    assert not cache.keys[:, :, :, :20].isnan().any()  # every position was written
    assert cache.keys[:, :, :, 20:].isnan().all()  # and nothing beyond


def test_kv_cache_rejects_overflow_and_other_shapes():
    gpt = make_gpt()
    cache = KVCache(gpt.config, batch_size=1, max_len=4)
    gpt(tokens(0, 1, 3), kv_cache=cache)
    with pytest.raises(
        ValueError,
        match="T=2 tokens after 3 cached ones but the cache holds 4",
    ):
        gpt(tokens(0, 1, 2), kv_cache=cache)
    with pytest.raises(ValueError, match=r"kv_cache holds batch 1.*idx is \(2, 1\)"):
        gpt(tokens(0, 2, 1), kv_cache=cache)
    with pytest.raises(TypeError, match="kv_cache must be a KVCache, got tuple"):
        gpt(tokens(0, 1, 1), kv_cache=(1, 2))
    with pytest.raises(ValueError, match=r"max_len must be in \[1, 32\], got 33"):
        KVCache(gpt.config, batch_size=1, max_len=L + 1)


def _lower_first_logit(module, args, output):
    """A forward hook that changes what an attention projection returns."""
    output = output.clone()
    output[..., 0] -= 3.0
    return output


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_hooks_change_cached_and_uncached_generation_alike(seed):
    gpt = make_gpt(seed, std=0.15)
    idx = tokens(seed, 2, 6)
    before = gpt.generate(idx, 20, temperature=0)
    handles = [
        block.attn.c_proj.register_forward_hook(_lower_first_logit)
        for block in gpt.transformer.h
    ]
    calls = []
    handles.append(
        gpt.transformer.h[1].mlp.register_forward_hook(lambda m, a, o: calls.append(1))
    )
    cached = gpt.generate(idx, 20, temperature=0)
    n_cached = len(calls)
    uncached = gpt.generate(idx, 20, temperature=0, use_cache=False)
    for h in handles:
        h.remove()
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, before)  # the hook did change the output
    assert n_cached == 20  # the hooked module ran for every generated token


@pytest.mark.parametrize("seed", [0, 1])
def test_peft_lora_generates_the_same_with_and_without_cache(seed):
    import peft  # a test dependency (requirements-dev.txt): never skipped

    gpt = make_gpt(seed, std=0.15)
    idx = tokens(seed, 2, 6)
    plain = gpt.generate(idx, 15, temperature=0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"])
    model = peft.get_peft_model(gpt, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # give B nonzero values, so the adapters change outputs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    wrapped = model.base_model.model
    assert type(wrapped.transformer.h[0].attn.c_attn).__module__.startswith("peft")
    cached = wrapped.generate(idx, 15, temperature=0)
    uncached = wrapped.generate(idx, 15, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, plain)  # the adapters are on the path


def test_forward_makes_no_data_dependent_check_off_the_cpu():
    """On CUDA a range check would wait for the device; on "meta" it would fail."""
    with torch.device("meta"):
        gpt = GPT(GPTConfig(V, L, n_layer=1, n_head=2, n_embd=16))
        idx = torch.zeros(2, 5, dtype=torch.long)
        logits, loss = gpt(idx, idx)  # any .item() / bool(tensor) here raises
    assert logits.shape == (2, 5, V) and loss.shape == ()
    with pytest.raises(ValueError, match="outside"):  # on the CPU it is checked
        make_gpt()(torch.full((1, 2), V))


def test_greedy_is_argmax_of_cropped_context():
    """Past block_size the next token depends on the last block_size tokens only."""
    gpt = make_gpt(12, std=0.15)
    out = gpt.generate(tokens(12, 1, 28), 10, temperature=0)
    for t in range(28, 38):
        logits, _ = gpt(out[:, max(0, t - L) : t])
        assert out[0, t] == logits[0, -1].argmax()


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_matches_hf_generate(seed):
    hf = make_hf(seed, 4, 64)
    idx = tokens(seed, 2, 5)
    ref = hf.generate(idx, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(GPT.from_hf(hf).generate(idx, 20, temperature=0), ref)


def allowed_tokens(logits, top_k=None, top_p=None):
    """Reference filter, written independently: a set of token ids per row."""
    sets = []
    for row in logits.tolist():
        order = sorted(range(len(row)), key=lambda i: -row[i])
        keep = order
        if top_k is not None:
            kth = row[order[min(top_k, len(row)) - 1]]
            keep = [i for i in order if row[i] >= kth]
        if top_p is not None:
            z = [math.exp(row[i] - row[order[0]]) for i in keep]
            total, mass, cut = sum(z), 0.0, []
            for i, zi in zip(keep, z, strict=True):
                cut.append(i)
                mass += zi / total
                if mass >= top_p:
                    break
            keep = cut
        sets.append(set(keep))
    return sets


@pytest.mark.parametrize("top_k,top_p", [(5, None), (None, 0.6), (12, 0.5), (1, None)])
def test_generate_samples_only_allowed_tokens(top_k, top_p):
    gpt = make_gpt(13)
    prompt = tokens(13, 1, 6)
    with torch.no_grad():
        logits = gpt(prompt)[0][0, -1:] / 0.8  # (1, V)
    (allowed,) = allowed_tokens(logits, top_k, top_p)
    n = 3000
    gen = torch.Generator().manual_seed(0)
    draws = gpt.generate(
        prompt.expand(n, -1),
        1,
        temperature=0.8,
        top_k=top_k,
        top_p=top_p,
        generator=gen,
    )[:, -1]
    drawn = set(draws.tolist())
    assert drawn <= allowed
    # frequencies follow the renormalised distribution over the allowed set
    mask = torch.full((V,), float("-inf"))
    mask[list(allowed)] = 0.0
    probs = torch.softmax(logits[0] + mask, -1)
    freq = torch.bincount(draws, minlength=V) / n
    assert (freq - probs).abs().max() < 0.04


@settings(max_examples=30, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**16),
    top_k=st.one_of(st.none(), st.integers(1, 20)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    scale=st.floats(0.1, 10.0),
)
def test_sample_logits_stays_in_allowed_set(seed, top_k, top_p, scale):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 20, generator=gen) * scale
    allowed = allowed_tokens(logits, top_k, top_p)
    for _ in range(10):
        ids = sample_logits(logits, 1.0, top_k, top_p, generator=gen)
        assert all(i in s for i, s in zip(ids.tolist(), allowed, strict=True))
    assert torch.equal(sample_logits(logits, 0.0), logits.argmax(-1))


def test_tiny_temperature_approaches_greedy():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    for t in (1e-8, 1e-30, 1e-50, 5e-324):  # no overflow to inf / NaN
        assert torch.equal(sample_logits(logits, t), logits.argmax(-1))
    gpt = make_gpt()
    idx = tokens(0, 2, 4)
    greedy = gpt.generate(idx, 5, temperature=0)
    assert torch.equal(gpt.generate(idx, 5, temperature=1e-50), greedy)


def test_seeded_generation_is_reproducible():
    gpt = make_gpt(14)
    idx = tokens(14, 2, 3)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return gpt.generate(idx, 30, top_k=50, generator=gen)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    torch.manual_seed(0)
    a = gpt.generate(idx, 30, use_cache=False)
    torch.manual_seed(0)
    assert torch.equal(a, gpt.generate(idx, 30))  # global RNG; cache or not


def test_generate_turns_dropout_off_and_restores_mode():
    gpt = make_gpt(15, dropout=0.5).train()
    idx = tokens(15, 1, 4)
    a = gpt.generate(idx, 10, temperature=0)
    assert gpt.training
    assert torch.equal(a, gpt.eval().generate(idx, 10, temperature=0))
    assert gpt.generate(idx, 0).shape == (1, 4)
    assert not a.is_inference()  # usable as training data
    gpt(a[:, :-1], a[:, 1:])[1].backward()


def test_training_steps_reduce_loss():
    gpt = make_gpt(16, std=0.05).train()
    idx = tokens(16, 4, L + 1)
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        _, loss = gpt(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert gpt.lm_head.weight is gpt.transformer.wte.weight


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(n_embd=30, n_head=4), ValueError, "n_embd must be divisible by n_head"),
        (dict(vocab_size=0), ValueError, r"vocab_size must be >= 1, got 0"),
        (dict(n_layer=2.0), TypeError, "n_layer must be an int, got float"),
        (dict(block_size=True), TypeError, "block_size must be an int, got bool"),
        (dict(block_size=10**9), ValueError, r"block_size must be in \[1, 1048576\]"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0.0, 1.0\), got 1.0"),
        (dict(dropout=float("nan")), ValueError, r"dropout must be in \[0.0, 1.0\)"),
        (dict(dropout="0.1"), TypeError, "dropout must be a float, got str"),
        (dict(bias=1), TypeError, "bias must be a bool, got int"),
        (dict(activation="relu"), ValueError, "activation must be one of 'gelu', "),
        (dict(activation=None), TypeError, "activation must be a str, got NoneType"),
    ],
)
def test_config_rejects_bad_values(kwargs, error, match):
    base = dict(vocab_size=V, block_size=L, n_layer=2, n_head=2, n_embd=32)
    with pytest.raises(error, match=match):
        GPTConfig(**{**base, **kwargs})


def test_from_preset_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown preset 'gpt3'; known presets: gpt2,"):
        GPTConfig.from_preset("gpt3")


def test_from_preset_rejects_non_string_name():
    with pytest.raises(TypeError, match="name must be a str, got list"):
        GPTConfig.from_preset(["gpt2"])


def test_from_preset_needs_vocab_for_small_shapes():
    with pytest.raises(ValueError, match="'gpt-micro' needs vocab_size and block_size"):
        GPTConfig.from_preset("gpt-micro")


def test_gpt_rejects_non_config():
    with pytest.raises(TypeError, match="config must be a GPTConfig, got dict"):
        GPT(dict(vocab_size=V))


@pytest.mark.parametrize(
    "idx,error,match",
    [
        (torch.zeros(2, 3), TypeError, "idx must hold token ids as torch.int64"),
        (torch.zeros(5, dtype=torch.long), ValueError, r"shape \(B, T\).*got \(5,\)"),
        (torch.zeros(2, 0, dtype=torch.long), ValueError, r"T >= 1, got \(2, 0\)"),
        (torch.zeros(0, 3, dtype=torch.long), ValueError, r"B >= 1.*got \(0, 3\)"),
        (torch.full((1, 3), V), ValueError, r"outside \[0, vocab_size=101\).*max 101"),
        (torch.full((1, 3), -1), ValueError, r"outside \[0, vocab_size=101\).*min -1"),
        (torch.zeros(1, L + 1, dtype=torch.long), ValueError, "T=33.*block_size is 32"),
        ([[1, 2]], TypeError, "idx must be a torch.Tensor, got list"),
    ],
)
def test_forward_rejects_bad_idx(idx, error, match):
    with pytest.raises(error, match=match):
        make_gpt()(idx)


@pytest.mark.parametrize(
    "targets,error,match",
    [
        (torch.zeros(2, 4, dtype=torch.long), ValueError, r"shape of idx \(2, 5\)"),
        (torch.full((2, 5), V), ValueError, r"targets .*vocab_size=101\) or -100"),
        (torch.zeros(2, 5), TypeError, "targets must hold token ids as torch.int64"),
    ],
)
def test_forward_rejects_bad_targets(targets, error, match):
    with pytest.raises(error, match=match):
        make_gpt()(tokens(0, 2, 5), targets)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(max_new_tokens=-1), ValueError, r"max_new_tokens must be >= 0, got -1"),
        (dict(max_new_tokens=2.5), TypeError, "max_new_tokens must be an int"),
        (dict(temperature=-0.5), ValueError, r"temperature must be >= 0.0, got -0.5"),
        (dict(temperature=float("nan")), ValueError, "temperature must be >= 0.0"),
        (dict(temperature=float("inf")), ValueError, "temperature must be >= 0.0"),
        (dict(top_k=0), ValueError, r"top_k must be >= 1, got 0"),
        (dict(top_k=V + 1), ValueError, "top_k must be at most the vocabulary size"),
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0.0, 1.0\], got 0.0"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \(0.0, 1.0\], got 1.5"),
        (dict(generator=0), TypeError, "generator must be a torch.Generator"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, error, match):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=match):
        make_gpt().generate(tokens(0, 1, 3), **kwargs)


def test_generate_rejects_bad_idx():
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        make_gpt().generate(torch.zeros(3, dtype=torch.long), 3)


def test_sample_logits_rejects_bad_logits():
    with pytest.raises(ValueError, match=r"logits must have shape \(B, V\)"):
        sample_logits(torch.zeros(3))
    with pytest.raises(ValueError, match=r"logits must have shape \(B, V\)"):
        sample_logits(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="top_k must be at most the vocabulary size 3"):
        sample_logits(torch.zeros(2, 3), top_k=4)
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        sample_logits(torch.zeros(1, 3, dtype=torch.long))


def test_from_hf_rejects_other_types():
    with pytest.raises(TypeError, match="GPT2LMHeadModel or LlamaForCausalLM, got GPT"):
        GPT.from_hf(make_gpt())


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(activation_function="relu"), "activation_function='relu'.*'gelu_new'"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(attn_pdrop=0.0), "one dropout rate"),
    ],
)
def test_from_hf_rejects_unsupported_configs(kw, match):
    hf = GPT2LMHeadModel(hf_config(**kw))
    with pytest.raises(ValueError, match=match):
        GPT.from_hf(hf)


def test_save_and_load_reject_bad_path_types():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        make_gpt().save_pretrained(3)
    with pytest.raises(TypeError, match="name_or_path must be a str or os.PathLike"):
        GPT.from_pretrained(None)
