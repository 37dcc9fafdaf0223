"""lmbook.lora against Hugging Face's peft: the same base weights in lmbook's
GPT and in transformers (``GPT.to_hf()``), peft's adapters copied across,
equal logits, merged and unmerged, and equal trainable-parameter counts; the
KV cache runs through the adapters; argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from lmbook import GPT, GPTConfig
from lmbook.lora import (
    LoRALinear,
    apply_lora,
    count_parameters,
    lora_disabled,
    lora_layers,
    merge_lora,
    peft_state_dict,
)

peft = pytest.importorskip("peft")
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict  # noqa: E402

ALL_LLAMA = "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj".split()


def llama(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("llama-nano", vocab_size=50, block_size=32, **kw)
    return GPT(config).eval()


def gpt2(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("gpt-nano", vocab_size=50, block_size=32)).eval()


def randomise(model, seed=1, std=0.1):
    """Nonzero B (and fresh A), as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for name in layer.parts:
                for m in (layer.lora_A[name], layer.lora_B[name]):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
    return model


def ids(B=2, T=12, V=50, seed=3):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def peft_twin(gpt, targets, r, alpha, **kw):
    """peft on the Hugging Face export of gpt (taken before apply_lora)."""
    hf = gpt.to_hf(attn_implementation="eager").eval()
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, **kw)
    return get_peft_model(hf, cfg).eval()


# --- LoRALinear ----------------------------------------------------------------


def test_initialised_like_peft_and_starts_as_the_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    twin = nn.Sequential(nn.Linear(12, 7))
    x = torch.randn(4, 12)
    torch.manual_seed(1)
    ours = LoRALinear(base, r=3, alpha=6)
    torch.manual_seed(1)
    cfg = LoraConfig(r=3, lora_alpha=6, target_modules=["0"])
    theirs = get_peft_model(twin, cfg).base_model.model[0]
    assert_close(ours.lora_A["default"].weight, theirs.lora_A["default"].weight)
    assert_close(ours.lora_B["default"].weight, torch.zeros(7, 3))
    bound = 1 / math.sqrt(12)  # kaiming_uniform_(a=sqrt(5)) on fan_in 12
    assert ours.lora_A["default"].weight.abs().max() <= bound
    assert_close(ours(x), base(x))
    assert not base.weight.requires_grad and ours.lora_A["default"].weight.requires_grad


@pytest.mark.parametrize("use_rslora", [False, True])
def test_forward_is_the_formula(use_rslora):
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    lora = randomise(nn.Sequential(LoRALinear(base, 4, 8.0, use_rslora=use_rslora)))[0]
    x = torch.randn(3, 5, 10)
    A, B = lora.lora_A["default"].weight, lora.lora_B["default"].weight
    scale = 8.0 / (2.0 if use_rslora else 4.0)
    assert lora.scaling == scale
    assert_close(lora(x), base(x) + scale * x @ A.T @ B.T)
    assert_close(lora.delta_weight(), scale * B @ A)


def test_parts_update_only_their_rows():
    torch.manual_seed(0)
    base = nn.Linear(8, 10, bias=False)
    parts = {"q": (0, 4), "v": (7, 10)}
    lora = randomise(nn.Sequential(LoRALinear(base, 2, 2.0, parts=parts)))[0]
    x = torch.randn(5, 8)
    delta = lora(x) - base(x)
    assert_close(delta[:, 4:7], torch.zeros(5, 3))
    for name, (s, e) in parts.items():
        A, B = lora.lora_A[name].weight, lora.lora_B[name].weight
        assert_close(delta[:, s:e], x @ A.T @ B.T)
        assert_close(lora.delta_weight()[s:e], B @ A)


def test_merge_then_unmerge_restores_the_base_weight():
    torch.manual_seed(0)
    base = nn.Linear(16, 24)
    w0 = base.weight.detach().clone()
    lora = randomise(nn.Sequential(LoRALinear(base, 4, 8.0, parts={"a": (0, 8)})))[0]
    x = torch.randn(3, 16)
    y = lora(x)
    lora.merge()
    assert lora.merged
    assert_close(lora(x), y)
    assert_close(base(x), y)  # the update is inside the weight
    with pytest.raises(RuntimeError, match="already merged"):
        lora.merge()
    lora.unmerge()
    assert not lora.merged
    assert_close(base.weight, w0)
    with pytest.raises(RuntimeError, match="not merged"):
        lora.unmerge()


def test_dropout_acts_on_the_adapter_input_in_training_only():
    torch.manual_seed(0)
    base = nn.Linear(32, 32)
    lora = randomise(nn.Sequential(LoRALinear(base, 4, 4.0, dropout=0.5)))[0]
    x = torch.randn(8, 32)
    plain = base(x) + x @ lora.delta_weight().T
    assert_close(lora.eval()(x), plain)
    assert not torch.allclose(lora.train()(x), plain)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(base=nn.Conv1d(2, 2, 1)), TypeError, "base must be a torch.nn.Linear"),
        (dict(r=0), ValueError, "r must be >= 1"),
        (dict(r=2.0), TypeError, "r must be an int"),
        (dict(alpha=0.0), ValueError, "alpha must be > 0"),
        (dict(alpha="8"), TypeError, "alpha must be a float"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0.0, 1.0\)"),
        (dict(use_rslora=1), TypeError, "use_rslora must be a bool"),
        (dict(parts=[(0, 2)]), TypeError, "parts must be a non-empty dict"),
        (dict(parts={}), TypeError, "parts must be a non-empty dict"),
        (dict(parts={"a": (0, 9)}), ValueError, r"stop <= out_features=6"),
        (dict(parts={"a": (3, 3)}), ValueError, "0 <= start < stop"),
        (dict(parts={"a": (0, 4), "b": (3, 6)}), ValueError, "overlaps"),
        (dict(parts={"a b": (0, 2)}), ValueError, "identifiers"),
    ],
)
def test_lora_linear_rejects_bad_arguments(kwargs, error, match):
    args = dict(base=nn.Linear(4, 6), r=2, alpha=4.0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        LoRALinear(args.pop("base"), args.pop("r"), args.pop("alpha"), **args)


# --- apply_lora on lmbook's GPT against peft -------------------------------------


@pytest.mark.parametrize(
    "targets", [["q_proj", "v_proj"], ALL_LLAMA, ["k_proj", "o_proj", "up_proj"]]
)
@pytest.mark.parametrize("use_rslora", [False, True])
def test_llama_gpt_equals_peft_on_the_hugging_face_export(targets, use_rslora):
    gpt = llama()
    theirs = peft_twin(gpt, targets, r=4, alpha=8, use_rslora=use_rslora)
    ours = randomise(apply_lora(gpt, targets, r=4, alpha=8, use_rslora=use_rslora))
    sd = peft_state_dict(ours)
    result = set_peft_model_state_dict(theirs, sd)
    assert not result.unexpected_keys
    x = ids()
    with torch.no_grad():
        assert_close(ours(x)[0], theirs(x).logits)
        assert count_parameters(ours) == theirs.get_nb_trainable_parameters()
        assert count_parameters(ours)[0] == sum(t.numel() for t in sd.values())
        # merged, on both sides
        merge_lora(ours, unload=False)
        assert_close(ours(x)[0], theirs(x).logits)
        theirs.merge_adapter()
        assert_close(ours(x)[0], theirs(x).logits)


def test_gpt2_layout_with_lmbook_names_equals_peft_on_gpt2():
    gpt = gpt2()
    targets = ["c_attn", "c_proj", "c_fc"]  # GPT-2's names, Conv1D in HF
    theirs = peft_twin(gpt, targets, r=2, alpha=4, fan_in_fan_out=True)
    ours = randomise(apply_lora(gpt, targets, r=2, alpha=4))
    set_peft_model_state_dict(theirs, peft_state_dict(ours))
    x = ids()
    with torch.no_grad():
        assert_close(ours(x)[0], theirs(x).logits)
    assert count_parameters(ours) == theirs.get_nb_trainable_parameters()


def test_trainable_counts_are_r_times_din_plus_dout():
    gpt = llama()
    C, n = gpt.config.n_embd, gpt.config.n_inner
    kv = gpt.config.n_kv_head * gpt.config.head_size
    total = gpt.num_parameters()
    apply_lora(gpt, ALL_LLAMA, r=4, alpha=8)
    per_layer = 4 * (
        (C + C) + (C + kv) + (C + kv) + (C + C) + (C + n) + (C + n) + (n + C)
    )
    assert count_parameters(gpt) == (
        gpt.config.n_layer * per_layer,
        total + gpt.config.n_layer * per_layer,
    )


def test_apply_lora_on_a_hugging_face_model_equals_peft():
    gpt = llama()
    hf = gpt.to_hf(attn_implementation="eager").eval()
    theirs = peft_twin(gpt, ["q_proj", "down_proj"], r=3, alpha=5)
    ours = randomise(apply_lora(hf, ["q_proj", "down_proj"], r=3, alpha=5))
    sd = {
        f"base_model.model.{n}.lora_{m}.weight": getattr(layer, f"lora_{m}")[
            "default"
        ].weight
        for n, layer in lora_layers(ours)
        for m in "AB"
    }
    set_peft_model_state_dict(theirs, sd)
    x = ids()
    with torch.no_grad():
        assert_close(ours(x).logits, theirs(x).logits)
    assert count_parameters(ours) == theirs.get_nb_trainable_parameters()


def test_only_the_adapters_train():
    gpt = randomise(apply_lora(llama(), ["q_proj", "v_proj"], r=2, alpha=2))
    x = ids()
    _, loss = gpt(x[:, :-1], x[:, 1:])
    loss.backward()
    for name, p in gpt.named_parameters():
        assert p.requires_grad == ("lora_" in name), name
        assert (p.grad is not None) == ("lora_" in name), name


def test_cached_generation_equals_uncached_through_the_adapters():
    gpt = randomise(apply_lora(llama(), ALL_LLAMA, r=4, alpha=8), std=0.3)
    calls = []
    layer = gpt.transformer.h[0].attn.c_attn
    layer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1]))
    x = ids(B=3, T=5)
    greedy = gpt.generate(x, 20, temperature=0.0, use_cache=True)
    assert calls[:3] == [5, 1, 1]  # the wrapped layer sees every cached step
    assert torch.equal(greedy, gpt.generate(x, 20, temperature=0.0, use_cache=False))
    samples = [
        gpt.generate(x, 20, use_cache=c, generator=torch.Generator().manual_seed(0))
        for c in (True, False)
    ]
    assert torch.equal(*samples)
    with lora_disabled(gpt):  # the adapters changed what the model writes
        assert not torch.equal(greedy, gpt.generate(x, 20, temperature=0.0))


def test_lora_disabled_is_the_base_model_and_restores():
    base = llama()
    gpt = randomise(apply_lora(llama(), ["q_proj", "up_proj"], r=2, alpha=4))
    x = ids()
    with torch.no_grad():
        adapted = gpt(x)[0]
        with lora_disabled(gpt):
            assert_close(gpt(x)[0], base(x)[0])
        assert_close(gpt(x)[0], adapted)
        merge_lora(gpt, unload=False)
        with pytest.raises(RuntimeError, match="unmerge"), lora_disabled(gpt):
            pass


def test_merge_lora_unloads_to_the_original_modules():
    gpt = randomise(apply_lora(llama(), ALL_LLAMA, r=2, alpha=4))
    x = ids()
    with torch.no_grad():
        adapted = gpt(x)[0]
        merged = merge_lora(gpt)
        assert merged is gpt and not lora_layers(gpt)
        assert set(gpt.state_dict()) == set(llama().state_dict())
        assert_close(gpt(x)[0], adapted)
        assert_close(gpt.to_hf(attn_implementation="eager")(x).logits, adapted)


def test_merge_unmerge_round_trip_on_the_model():
    gpt = randomise(apply_lora(llama(), ALL_LLAMA, r=2, alpha=4))
    before = {n: p.detach().clone() for n, p in gpt.named_parameters()}
    merge_lora(gpt, unload=False)
    for _, layer in lora_layers(gpt):
        layer.unmerge()
    for n, p in gpt.named_parameters():
        assert_close(p, before[n])


@pytest.mark.parametrize(
    ("model", "targets", "match"),
    [
        (llama, ["q_proj", "wq"], r"\['wq'\] match no Linear layer"),
        (llama, ["q_proj", "c_attn"], "both as a whole and by a Hugging Face"),
        (llama, ["lm_head"], "lm_head is not supported"),
        (gpt2, ["gate_proj"], r"\['gate_proj'\] match no Linear"),
        (llama, [], "non-empty list"),
        (llama, ["q_proj", ""], "non-empty list"),
    ],
)
def test_apply_lora_rejects_bad_targets(model, targets, match):
    with pytest.raises(ValueError, match=match):
        apply_lora(model(), targets)


def test_apply_lora_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        apply_lora("gpt", ["q_proj"])
    with pytest.raises(TypeError, match="target_modules must be a list"):
        apply_lora(llama(), "q_proj")
    with pytest.raises(ValueError, match="r must be >= 1"):
        apply_lora(llama(), ["q_proj"], r=0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        apply_lora(llama(), ["q_proj"], alpha=-1.0)
    with pytest.raises(ValueError, match="dropout must be in"):
        apply_lora(llama(), ["q_proj"], dropout=1.5)
    gpt = apply_lora(llama(), ["q_proj"])
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(gpt, ["v_proj"])


def test_helpers_reject_models_without_adapters():
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(llama())
    with pytest.raises(ValueError, match="no LoRA layers"), lora_disabled(llama()):
        pass
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        count_parameters(3)
    with pytest.raises(TypeError, match="unload must be a bool"):
        merge_lora(apply_lora(llama(), ["q_proj"]), unload="yes")


def test_peft_state_dict_needs_hugging_face_counterparts():
    with pytest.raises(ValueError, match="no counterpart in Hugging Face's Llama"):
        peft_state_dict(apply_lora(llama(), ["c_attn"]))
    with pytest.raises(TypeError, match="gpt must be an lmbook GPT"):
        peft_state_dict(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="GPT-2's fused layers"):
        peft_state_dict(apply_lora(gpt2(), ["q_proj"]))
