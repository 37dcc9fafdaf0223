"""lmbook.preference against TRL: the batch layout of DataCollatorForPreference,
and DPOTrainer's sigmoid loss and logged rewards on the same batch, with a
separate reference model and with LoRA (reference = adapters disabled); the
loss's formula and gradient; argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook import GPT, GPTConfig, house_model_path
from lmbook.lora import apply_lora, lora_disabled, lora_layers, peft_state_dict
from lmbook.preference import collate_preferences, dpo_loss, sequence_logprobs

PAIRS = [
    dict(prompt="ROMEO:\n", chosen="I will, my lord.", rejected="I will."),
    dict(prompt="KING:\n", chosen="Go, my lord!", rejected="Go hence, and speed!"),
    dict(prompt="NURSE:\n", chosen="What say you, my lord?", rejected="What?"),
    dict(prompt="JULIET:\n", chosen="Ay, my lord.", rejected="Ay, me!"),
]


def logits_and_labels(B=3, T=7, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :2] = -100  # a prompt of two tokens
    labels[1, 5:] = -100  # padding
    return logits, labels


# --- sequence_logprobs -------------------------------------------------------------


def test_sequence_logprobs_sums_the_scored_next_token_logprobs():
    logits, labels = logits_and_labels()
    want = torch.zeros(3, dtype=torch.float64)
    for b in range(3):
        for t in range(1, 7):
            if labels[b, t] != -100:
                want[b] += logits[b, t - 1].log_softmax(-1)[labels[b, t]]
    assert_close(sequence_logprobs(logits, labels), want)
    # the same as minus the summed cross-entropy of the shifted labels
    ce = F.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none"
    ).sum(-1)
    assert_close(sequence_logprobs(logits, labels), -ce)


def test_sequence_logprobs_of_nothing_is_zero_and_ignore_index_is_honoured():
    logits, labels = logits_and_labels()
    assert_close(
        sequence_logprobs(logits, torch.full_like(labels, -100)),
        torch.zeros(3, dtype=torch.float64),
    )
    other = labels.masked_fill(labels == -100, -1)
    assert_close(
        sequence_logprobs(logits, other, ignore_index=-1),
        sequence_logprobs(logits, labels),
    )


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda lo, la: (lo[0], la), ValueError, "logits must have 3 dimensions"),
        (lambda lo, la: (lo.long(), la), TypeError, "logits must be a floating"),
        (lambda lo, la: (lo, la.float()), TypeError, "labels must hold token ids"),
        (lambda lo, la: (lo, la[:, 1:]), ValueError, r"labels must have shape"),
        (lambda lo, la: (lo, la + 20), ValueError, r"token ids in \[0, 11\)"),
        (lambda lo, la: (lo.tolist(), la), TypeError, "logits must be a torch"),
    ],
)
def test_sequence_logprobs_rejects_bad_arguments(change, error, match):
    with pytest.raises(error, match=match):
        sequence_logprobs(*change(*logits_and_labels()))


def test_sequence_logprobs_rejects_a_bad_ignore_index():
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        sequence_logprobs(*logits_and_labels(), ignore_index=-100.0)


# --- dpo_loss ------------------------------------------------------------------


def test_dpo_loss_is_minus_log_sigmoid_of_the_reward_margin():
    pc = torch.tensor([-10.0, -4.0], requires_grad=True)
    pr = torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -3.5])
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert_close(chosen, torch.tensor([0.5, 0.25]))
    assert_close(rejected, torch.tensor([-0.5, 0.25]))
    margins = torch.tensor([1.0, 0.0])
    want = -torch.log(1 / (1 + torch.exp(-margins))).mean()
    assert_close(loss, want)
    want = (math.log1p(math.exp(-1)) + math.log(2)) / 2
    assert math.isclose(loss.item(), want, rel_tol=1e-6)
    assert not chosen.requires_grad and not rejected.requires_grad
    loss.backward()  # d loss / d log pi(chosen) = -beta sigmoid(-margin) / B
    assert_close(pc.grad, -0.5 * torch.sigmoid(-margins) / 2)


def test_dpo_loss_at_the_reference_is_log_2():
    x = torch.randn(5)
    loss, chosen, rejected = dpo_loss(x, x - 1, x, x - 1)
    assert_close(loss, torch.tensor(math.log(2)))
    assert_close(chosen, torch.zeros(5))


@pytest.mark.parametrize(
    ("i", "value", "error", "match"),
    [
        (0, [1.0, 2.0], TypeError, "policy_chosen_logps must be a torch.Tensor"),
        (1, torch.zeros(3), ValueError, r"policy_rejected_logps must have the shape"),
        (2, torch.zeros(2, 1), ValueError, "ref_chosen_logps must have the shape"),
        (3, torch.zeros(2, dtype=torch.long), TypeError, "ref_rejected_logps must be"),
    ],
)
def test_dpo_loss_rejects_bad_tensors(i, value, error, match):
    args = [torch.zeros(2) for _ in range(4)]
    args[i] = value
    with pytest.raises(error, match=match):
        dpo_loss(*args)


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_dpo_loss_needs_a_positive_beta(beta):
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(*[torch.zeros(2)] * 4, beta=beta)


def test_dpo_loss_rejects_a_bad_beta_type_and_an_empty_batch():
    with pytest.raises(TypeError, match="beta must be a float"):
        dpo_loss(*[torch.zeros(2)] * 4, beta="0.1")
    with pytest.raises(ValueError, match="at least one pair"):
        dpo_loss(*[torch.zeros(0)] * 4)


# --- against TRL ---------------------------------------------------------------

trl = pytest.importorskip("trl")


def char_tokenizer():
    """The character-level house tokenizer, with "\\n" as end and padding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(house_model_path("shakespeare-char"))
    tok.add_special_tokens({"eos_token": "\n", "pad_token": "\n"})
    assert tok.eos_token_id == 0 and len(tok) == 65
    return tok


def tiny_gpt(seed):
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("llama-nano", vocab_size=65, block_size=64)
    return GPT(config).eval()


def trainer(out, model, ref_model=None, peft_config=None, beta=0.1):
    import datasets
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bar()
    args = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=len(PAIRS),
        beta=beta,
        bf16=False,  # TRL's default autocasts to bfloat16, also on a CPU
        activation_checkpointing=False,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
    )
    return DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=datasets.Dataset.from_list(PAIRS),
        processing_class=char_tokenizer(),
        peft_config=peft_config,
    )


def trl_loss(tr):
    batch = next(iter(tr.get_train_dataloader()))
    tr.model.eval()
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
    metrics = {k: v[-1] for k, v in tr._metrics["eval"].items()}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return loss, metrics, batch["input_ids"], labels


def ours(policy, ref, input_ids, labels, beta=0.1):
    with torch.no_grad():
        lp = sequence_logprobs(policy(input_ids)[0], labels)
        lr = sequence_logprobs(ref(input_ids)[0], labels)
    B = len(lp) // 2
    return dpo_loss(lp[:B], lp[B:], lr[:B], lr[B:], beta=beta)


def test_collate_preferences_is_trl_data_collator_for_preference():
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    tok = char_tokenizer()
    examples = [
        {
            "prompt_ids": tok(p["prompt"])["input_ids"],
            "chosen_ids": tok(p["chosen"] + "\n")["input_ids"],
            "rejected_ids": tok(p["rejected"] + "\n")["input_ids"],
        }
        for p in PAIRS
    ]
    theirs = DataCollatorForPreference(pad_token_id=0)(examples)
    input_ids, labels = collate_preferences(
        *(
            [e[k] for e in examples]
            for k in ("prompt_ids", "chosen_ids", "rejected_ids")
        )
    )
    assert torch.equal(input_ids, theirs["input_ids"])
    want = theirs["input_ids"].masked_fill(theirs["completion_mask"] == 0, -100)
    assert torch.equal(labels, want)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_equals_trl_with_a_reference_model(beta, tmp_path):
    policy, ref = tiny_gpt(0), tiny_gpt(1)
    tr = trainer(tmp_path, policy.to_hf("eager"), ref.to_hf("eager"), beta=beta)
    loss, metrics, input_ids, labels = trl_loss(tr)
    n_chosen = sum(len(p["chosen"]) + 1 for p in PAIRS)  # + 1: the "\n" TRL adds
    assert labels[: len(PAIRS)].ne(-100).sum() == n_chosen
    mine, chosen, rejected = ours(policy, ref, input_ids, labels, beta)
    assert abs(mine.item() - math.log(2)) > 1e-3  # not the trivial value
    assert_close(mine, loss)
    assert math.isclose(
        chosen.mean().item(), metrics["rewards/chosen"], rel_tol=1e-4, abs_tol=1e-6
    )
    margin = (chosen - rejected).mean().item()
    assert math.isclose(margin, metrics["rewards/margins"], rel_tol=1e-4, abs_tol=1e-6)
    accuracy = (chosen > rejected).float().mean().item()
    assert accuracy == metrics["rewards/accuracies"]


def test_dpo_loss_equals_trl_with_lora_and_the_adapters_disabled_as_reference(
    tmp_path,
):
    from peft import LoraConfig, set_peft_model_state_dict

    targets = ["q_proj", "v_proj", "down_proj"]
    base = tiny_gpt(0)
    tr = trainer(
        tmp_path,
        base.to_hf("eager"),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=targets),
    )
    policy = apply_lora(base, targets, r=4, alpha=8)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in lora_layers(policy):
            for name in layer.parts:
                w = layer.lora_B[name].weight
                w.copy_(torch.randn(w.shape, generator=g) * 0.2)
    set_peft_model_state_dict(tr.model, peft_state_dict(policy))
    loss, metrics, input_ids, labels = trl_loss(tr)
    with torch.no_grad():
        lp = sequence_logprobs(policy(input_ids)[0], labels)
        with lora_disabled(policy):
            lr = sequence_logprobs(policy(input_ids)[0], labels)
    B = len(PAIRS)
    mine, chosen, _ = dpo_loss(lp[:B], lp[B:], lr[:B], lr[B:])
    assert abs(mine.item() - math.log(2)) > 1e-3
    assert_close(mine, loss)
    assert math.isclose(
        chosen.mean().item(), metrics["rewards/chosen"], rel_tol=1e-4, abs_tol=1e-6
    )


# --- collate_preferences' checks ----------------------------------------------------


def test_collate_preferences_layout():
    input_ids, labels = collate_preferences([[1, 2]], [[3]], [[4, 5, 6]], pad_id=9)
    assert input_ids.tolist() == [[1, 2, 3, 9, 9], [1, 2, 4, 5, 6]]
    assert labels.tolist() == [[-100, -100, 3, -100, -100], [-100, -100, 4, 5, 6]]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (([[1]], [[2]], [[3], [4]]), ValueError, "same length, got 1, 1 and 2"),
        (([[1]], [[]], [[3]]), ValueError, "chosen holds an empty completion"),
        (([[1]], [[2]], [["a"]]), TypeError, "rejected must be a list of lists"),
        (([[1]], [[2]], [[-3]]), TypeError, "non-negative int"),
        (([], [], []), TypeError, "prompts must be a non-empty list"),
        (("ab", [[2]], [[3]]), TypeError, "prompts must be a non-empty list"),
    ],
)
def test_collate_preferences_rejects_bad_ids(args, error, match):
    with pytest.raises(error, match=match):
        collate_preferences(*args)


def test_collate_preferences_rejects_a_bad_pad_id():
    with pytest.raises(ValueError, match="pad_id must be >= 0"):
        collate_preferences([[1]], [[2]], [[3]], pad_id=-1)
