"""lmbook.classify: leak-free held-out rows, mean pooling, the probe, robust
accuracy, and fine-tuning through Trainer on a tiny random BERT; clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lmbook.classify import (
    Accuracy,
    count_parameters,
    encode,
    fine_tune,
    fit_logistic_regression,
    load_bench_results,
    mean_pool,
    occurs_in,
    robust_accuracy,
    sst2_split,
)

# --- occurs_in -------------------------------------------------------------------


def test_occurs_in_matches_whole_words_only():
    reference = ["a great fun movie .", "it is funny"]
    texts = ["great fun", "fun", "a great fun movie .", "funny", "fun movie", "unny"]
    assert occurs_in(texts, reference) == [True, True, True, True, True, False]
    assert occurs_in(["great movie", "movie . it"], reference) == [False, False]


def test_occurs_in_ignores_spacing_and_never_spans_two_references():
    assert occurs_in(["great   fun"], ["  great fun  "]) == [True]
    assert occurs_in(["fun it"], ["great fun", "it is"]) == [False]
    assert occurs_in([""], ["anything"]) == [False]
    assert occurs_in(["x"], []) == [False]


def test_occurs_in_takes_any_iterable_of_str():
    assert occurs_in((t for t in ["a b"]), ("a b c",)) == [True]


@pytest.mark.parametrize(
    ("texts", "reference", "match"),
    [
        ("a b", ["a b"], "texts must be an iterable of str, got str"),
        (["a"], "a b", "reference must be an iterable of str, got str"),
        ([1], ["a"], r"texts\[0\] must be a str, got int"),
        (["a"], ["a", None], r"reference\[1\] must be a str, got NoneType"),
        (3, ["a"], "texts must be an iterable of str, got int"),
    ],
)
def test_occurs_in_rejects_bad_input(texts, reference, match):
    with pytest.raises(TypeError, match=match):
        occurs_in(texts, reference)


# --- mean_pool -------------------------------------------------------------------


def test_mean_pool_excludes_padding():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))
    changed = hidden.clone()
    changed[0, 3:] = 100.0  # padding positions: must not matter
    torch.testing.assert_close(mean_pool(changed, mask), pooled)


@pytest.mark.parametrize(
    ("hidden", "mask", "error", "match"),
    [
        (torch.zeros(2, 3), torch.ones(2, 3), TypeError, r"\(B, T, C\) tensor"),
        ([[0.0]], torch.ones(1, 1), TypeError, "got list"),
        (torch.zeros(2, 3, 4), torch.ones(2, 4), ValueError, r"shape \(2, 3\)"),
        (torch.zeros(2, 3, 4), [[1, 1, 1]], ValueError, "got list"),
    ],
)
def test_mean_pool_rejects_bad_input(hidden, mask, error, match):
    with pytest.raises(error, match=match):
        mean_pool(hidden, mask)


# --- fit_logistic_regression -------------------------------------------------------


def _blobs(n=200, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, d, generator=g, dtype=torch.float64) + 1.5 * y[:, None]
    return X, y


def test_logistic_regression_reaches_the_optimum():
    X, y = _blobs()
    l2 = 1e-2
    clf = fit_logistic_regression(X, y, l2=l2)
    assert clf.weight.dtype == torch.float64 and clf.weight.shape == (2, 5)
    # the gradient of the regularised loss vanishes at the optimum
    W = clf.weight.clone().requires_grad_()
    b = clf.bias.clone().requires_grad_()
    loss = F.cross_entropy(X @ W.T + b, y) + l2 * W.pow(2).sum()
    gW, gb = torch.autograd.grad(loss, (W, b))
    assert gW.abs().max() < 1e-6 and gb.abs().max() < 1e-6
    accuracy = (clf(X).argmax(-1) == y).double().mean()
    assert accuracy > 0.8


def test_logistic_regression_is_deterministic():
    X, y = _blobs(seed=1)
    a, b = fit_logistic_regression(X, y), fit_logistic_regression(X, y)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.zeros(4), torch.zeros(4, dtype=torch.long)), {}, TypeError, "2-D"),
        ((torch.zeros(4, 2, dtype=torch.long), torch.zeros(4)), {}, TypeError, "2-D"),
        (
            (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long)),
            {},
            ValueError,
            r"shape \(4,\)",
        ),
        ((torch.zeros(4, 2), torch.zeros(4)), {}, ValueError, "torch.float32"),
        ((torch.zeros(4, 2), -torch.ones(4, dtype=torch.long)), {}, ValueError, ">= 0"),
        (
            (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),
            {"l2": -1.0},
            ValueError,
            "l2 must be >= 0",
        ),
        (
            (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),
            {"max_iter": 0},
            ValueError,
            "max_iter must be >= 1",
        ),
    ],
)
def test_logistic_regression_rejects_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_logistic_regression(*args, **kwargs)


# --- count_parameters ----------------------------------------------------------------


def test_count_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert count_parameters(model) == (10, 26)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        count_parameters("model")


# --- robust_accuracy ---------------------------------------------------------------


def test_robust_accuracy_counts_near_predictions():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1e-4], [3e-4, 0.0]])
    labels = torch.tensor([1, 0, 1, 1])  # right, right, right (near), wrong (near)
    acc = robust_accuracy(logits, labels, tol=1e-3)
    assert (acc.correct, acc.near_correct, acc.near_wrong, acc.n) == (3, 1, 1, 4)
    assert acc.value == 0.75 and acc.low == 0.5 and acc.high == 1.0
    assert acc.min_margin == pytest.approx(1e-4)
    assert f"{acc:.0%}" == "50%\u2013100%"
    assert f"{acc:>12.0%}|{acc:<12.0%}|" == "    50%\u2013100%|50%\u2013100%    |"


def test_robust_accuracy_prints_one_number_when_nothing_is_near():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    acc = robust_accuracy(logits, torch.tensor([1, 0, 0]))
    assert acc.low == acc.high == acc.value
    assert str(acc) == "66.7%" and f"{acc:.3f}" == "0.667"
    assert f"{acc:*^9.1%}" == "**66.7%**"


def test_robust_accuracy_range_collapses_when_the_digits_agree():
    n = 1000
    logits = torch.zeros(n, 2)
    logits[:, 1] = 1.0
    logits[0, 1] = 1e-5  # one near prediction, right
    acc = robust_accuracy(logits, torch.ones(n, dtype=torch.long))
    assert acc.low == 0.999 and acc.high == 1.0
    assert f"{acc:.0%}" == "100%" and f"{acc:.1%}" == "99.9%\u2013100.0%"
    assert f"{acc:>6.0%}" == "  100%"
    assert isinstance(acc, Accuracy)


@pytest.mark.parametrize(
    ("logits", "labels", "kwargs", "error", "match"),
    [
        (torch.zeros(3), torch.zeros(3), {}, TypeError, r"\(N, K\) tensor"),
        (torch.zeros(3, 1), torch.zeros(3), {}, ValueError, "K >= 2"),
        (torch.zeros(0, 2), torch.zeros(0), {}, ValueError, "N >= 1"),
        (torch.zeros(3, 2), torch.zeros(2), {}, ValueError, r"shape \(3,\)"),
        (torch.zeros(3, 2), [0, 1, 0], {}, ValueError, "got list"),
        (
            torch.zeros(3, 2),
            torch.zeros(3),
            {"tol": -1.0},
            ValueError,
            "tol must be >= 0",
        ),
    ],
)
def test_robust_accuracy_rejects_bad_input(logits, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        robust_accuracy(logits, labels, **kwargs)


# --- fine_tune, on a tiny random BERT ----------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    transformers = pytest.importorskip("transformers")
    datasets = pytest.importorskip("datasets")
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 9, (24,), generator=g).tolist()
    ids = [torch.randint(5, 50, (n,), generator=g).tolist() for n in lengths]
    data = datasets.Dataset.from_dict(
        {
            "input_ids": ids,
            "attention_mask": [[1] * n for n in lengths],
            "label": [i % 2 for i in range(24)],
        }
    )

    def collate(features):  # pads like DataCollatorWithPadding, pad id 0
        T = max(len(f["input_ids"]) for f in features)
        pad = [T - len(f["input_ids"]) for f in features]
        return {
            "input_ids": torch.tensor(
                [f["input_ids"] + [0] * p for f, p in zip(features, pad, strict=True)]
            ),
            "attention_mask": torch.tensor(
                [
                    f["attention_mask"] + [0] * p
                    for f, p in zip(features, pad, strict=True)
                ]
            ),
        } | (
            {"labels": torch.tensor([f["label"] for f in features])}
            if "label" in features[0]
            else {}
        )

    return transformers, config, data, collate


def test_fine_tune_trains_and_saves_nothing(tiny, tmp_path, monkeypatch):
    transformers, config, data, collate = tiny
    monkeypatch.chdir(tmp_path)
    transformers.set_seed(0)
    model = transformers.BertForSequenceClassification(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer, seconds = fine_tune(
        model, data, collate, learning_rate=1e-2, batch_size=8, epochs=1.0, seed=0
    )
    assert seconds > 0 and trainer.state.global_step == 3
    after = model.state_dict()
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(
        before["bert.embeddings.word_embeddings.weight"],
        after["bert.embeddings.word_embeddings.weight"],
    )
    assert list(tmp_path.iterdir()) == []  # no checkpoints, logs or runs/
    assert next(model.parameters()).device.type == "cpu"


def test_fine_tune_with_activation_checkpointing_gives_the_same_weights(tiny):
    transformers, config, data, collate = tiny
    config = copy.deepcopy(config)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    weights = []
    for checkpointing in (False, True):
        transformers.set_seed(0)
        model = transformers.BertForSequenceClassification(config)
        fine_tune(
            model,
            data,
            collate,
            learning_rate=1e-2,
            batch_size=8,
            seed=0,
            activation_checkpointing=checkpointing,
        )
        weights.append(model.bert.encoder.layer[0].output.dense.weight.detach())
    torch.testing.assert_close(weights[0], weights[1])


def test_fine_tune_is_reproducible(tiny):
    transformers, config, data, collate = tiny
    weights = []
    for _ in range(2):
        transformers.set_seed(0)
        model = transformers.BertForSequenceClassification(config)
        fine_tune(model, data, collate, learning_rate=1e-2, batch_size=8, seed=0)
        weights.append(model.classifier.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"model": "bert"}, TypeError, "model must be a torch.nn.Module, got str"),
        ({"train_dataset": [1, 2]}, TypeError, "tokenized datasets.Dataset"),
        ({"data_collator": 3}, TypeError, "data_collator must be callable"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be > 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"epochs": -1.0}, ValueError, "epochs must be > 0"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"use_cpu": "yes"}, TypeError, "use_cpu must be a bool, got str"),
        (
            {"activation_checkpointing": 1},
            TypeError,
            "activation_checkpointing must be a bool, got int",
        ),
        ({"output_dir": 5}, TypeError, "output_dir must be a path or None, got int"),
    ],
)
def test_fine_tune_rejects_bad_input(tiny, change, error, match):
    transformers, config, data, collate = tiny
    kwargs = {
        "model": transformers.BertForSequenceClassification(config),
        "train_dataset": data,
        "data_collator": collate,
        "learning_rate": 1e-3,
    } | change
    with pytest.raises(error, match=match):
        fine_tune(**kwargs)


def test_fine_tune_needs_a_label_column(tiny):
    transformers, config, data, collate = tiny
    with pytest.raises(
        TypeError, match=r"with columns \['input_ids', 'attention_mask'\]"
    ):
        fine_tune(
            transformers.BertForSequenceClassification(config),
            data.remove_columns("label"),
            collate,
            learning_rate=1e-3,
        )


# --- sst2_split (needs the SST-2 file: LMBOOK_DATA_DIR, as the Makefile sets) ------


@pytest.fixture(scope="module")
def sst2_parts():
    pytest.importorskip("datasets")
    from lmbook.data import DataUnavailableError

    try:
        return sst2_split(300, 100)
    except DataUnavailableError as err:  # pragma: no cover - offline without data
        pytest.skip(f"SST-2 not available: {err}")


def test_sst2_split_holds_out_rows_that_never_occur_in_training(sst2_parts):
    train, held_out = sst2_parts
    assert len(train) == 300 and len(held_out) == 100
    assert train.column_names == held_out.column_names == ["sentence", "label"]
    assert not any(occurs_in(held_out["sentence"], train["sentence"]))
    assert set(held_out["label"]) == {0, 1}


def test_sst2_split_is_seeded(sst2_parts):
    train, held_out = sst2_parts
    again = sst2_split(300, 100)
    assert again[0]["sentence"] == train["sentence"]
    assert again[1]["sentence"] == held_out["sentence"]
    other = sst2_split(300, 100, seed=1)
    assert other[0]["sentence"] != train["sentence"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_train": 0, "n_held_out": 1}, ValueError, "n_train must be >= 1"),
        ({"n_train": 1.5, "n_held_out": 1}, TypeError, "n_train must be an int"),
        ({"n_train": 10**6, "n_held_out": 1}, ValueError, "n_train must be <= 60614"),
        ({"n_train": 1, "n_held_out": 0}, ValueError, "n_held_out must be >= 1"),
        ({"n_train": 1, "n_held_out": 10**6}, ValueError, "n_held_out must be <="),
        ({"n_train": 1, "n_held_out": 1, "seed": -1}, ValueError, "seed must be in"),
        (
            {"n_train": 1, "n_held_out": 1, "test_size": 1.0},
            ValueError,
            "test_size must be in",
        ),
    ],
)
def test_sst2_split_rejects_bad_input(sst2_parts, kwargs, error, match):
    with pytest.raises(error, match=match):
        sst2_split(**kwargs)


# --- encode --------------------------------------------------------------------------


def test_encode_keeps_the_dataset_order_and_mean_pools(tiny):
    transformers, config, data, collate = tiny
    transformers.set_seed(0)
    model = transformers.BertForSequenceClassification(config).train()
    logits, pooled = encode(model, data, collate, batch_size=5)
    assert model.training  # restored
    assert logits.shape == (len(data), 2) and pooled.shape == (len(data), 16)
    model.eval()
    with torch.no_grad():
        for i in (0, 7, len(data) - 1):
            row = collate([data[i]])
            row.pop("labels")
            out = model(**row, output_hidden_states=True)
            torch.testing.assert_close(logits[i], out.logits[0])
            torch.testing.assert_close(pooled[i], out.hidden_states[-1][0].mean(0))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"model": "bert"}, TypeError, "model must be a torch.nn.Module, got str"),
        ({"dataset": [1]}, TypeError, "tokenized datasets.Dataset"),
        ({"data_collator": None}, TypeError, "data_collator must be callable"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"progress": 1}, TypeError, "progress must be a bool, got int"),
    ],
)
def test_encode_rejects_bad_input(tiny, change, error, match):
    transformers, config, data, collate = tiny
    kwargs = {
        "model": transformers.BertForSequenceClassification(config),
        "dataset": data,
        "data_collator": collate,
    } | change
    with pytest.raises(error, match=match):
        encode(**kwargs)


def test_encode_rejects_an_empty_dataset(tiny):
    transformers, config, data, collate = tiny
    model = transformers.BertForSequenceClassification(config)
    with pytest.raises(ValueError, match="at least one row, got 0"):
        encode(model, data.select([]), collate)


# --- load_bench_results --------------------------------------------------------------


def test_load_bench_results(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"sweep": {"best lora": 0.008}}')
    assert load_bench_results(path) == {"sweep": {"best lora": 0.008}}
    assert load_bench_results(str(path))["sweep"]["best lora"] == 0.008
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        load_bench_results(3)


def test_the_repository_holds_the_bench_results():
    results = load_bench_results()
    assert {"sweep", "long", "machine", "recipe"} <= set(results)
    for method in ("lora", "full", "full_frozen_emb"):
        best = results["sweep"][f"best {method}"]
        assert best == max(
            results["sweep"]["grid"][method],
            key=lambda lr: results["sweep"][f"{method} {lr:g}"]["accuracy"],
        )
