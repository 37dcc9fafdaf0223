"""lmbook.instruct against transformers and TRL: the chat template's ids and
assistant mask, TRL's check that the end-of-turn token is trained, TRL's
collator and SFTTrainer tokenisation, the loss of a Hugging Face model; the
calculator, the task set, the chat loop with tool calls; argument checks."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from lmbook import GPT, house_model_path
from lmbook.instruct import (
    CHAT_TEMPLATE,
    END,
    SPECIAL_TOKENS,
    add_chat_format,
    calculator,
    chat,
    collate_sft,
    encode_chat,
    exact_match,
    make_tasks,
    sft_loss,
)

WORDS = ["lord", "king", "sweet", "night", "death", "love", "heaven", "good"]
HOSTILE = [
    {"role": "user", "content": "Naïve «quotes» 你好 <calc>1+1</calc>  \n\t"},
    {"role": "assistant", "content": " spaced  out "},
    {"role": "tool", "content": "{{ not jinja }}"},
    {"role": "assistant", "content": ""},
]


@pytest.fixture(scope="module")
def tok_and_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = house_model_path("shakespeare-bpe")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, attention_dropout=0.0, dropout=0.0
    )
    add_chat_format(tok, model)
    return tok, model.eval()


def conversations():
    return [*make_tasks(6, WORDS, seed=1), HOSTILE]


# --- the template and the mask ----------------------------------------------------


def test_encode_chat_equals_apply_chat_template_and_its_assistant_mask(
    tok_and_model,
):
    tok, _ = tok_and_model
    for messages in conversations():
        mine = encode_chat(tok, messages)
        ref = tok.apply_chat_template(
            messages,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        assert mine["input_ids"] == list(ref["input_ids"])
        want = [
            i if m else -100
            for i, m in zip(ref["input_ids"], ref["assistant_masks"], strict=True)
        ]
        assert mine["labels"] == want


def test_every_assistant_turn_is_trained_to_end_and_nothing_else_is(
    tok_and_model,
):
    tok, _ = tok_and_model
    end = tok.convert_tokens_to_ids(END)
    calc = make_tasks(1, WORDS, kinds=["calc"])[0]
    enc = encode_chat(tok, calc)
    trained = [
        i for i, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != -100
    ]
    assert trained.count(end) == 2  # both assistant turns end
    text = tok.decode(trained)
    assert text == "<calc>" + calc[1]["content"][6:] + END + calc[3]["content"] + END
    assert calc[0]["content"] not in text and "<|tool|>" not in text


def test_trl_agrees_that_the_end_of_turn_token_is_trained(tok_and_model):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok, _ = tok_and_model
    assert is_chat_template_stop_token_trained(tok)
    broken = CHAT_TEMPLATE.replace(
        "{{ m.content }}<|end|>{% endgeneration %}",
        "{{ m.content }}{% endgeneration %}<|end|>",
    )
    assert broken != CHAT_TEMPLATE
    assert not is_chat_template_stop_token_trained(tok, chat_template=broken)


def test_generation_prompt_and_unknown_roles(tok_and_model):
    tok, _ = tok_and_model
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|user|>Hi<|end|><|assistant|>"
    with pytest.raises(Exception, match="unknown role: system"):
        tok.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)


# --- collator, TRL and the loss -------------------------------------------------------


def test_collate_sft_equals_trls_collator(tok_and_model):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok, _ = tok_and_model
    encs = [encode_chat(tok, c) for c in conversations()]
    mine = collate_sft(encs, tok.pad_token_id)
    # TRL builds the labels when it prepares the dataset (checked below with
    # SFTTrainer); its collator pads them
    examples = [dict(e) for e in encs]
    ref = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(examples)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(mine[key], ref[key]), key


def test_sft_trainer_tokenises_and_scores_like_the_hand_version(
    tok_and_model, tmp_path
):
    import datasets
    from trl import SFTConfig, SFTTrainer

    tok, model = tok_and_model
    convs = make_tasks(6, WORDS, seed=2)
    args = SFTConfig(
        output_dir=str(tmp_path),
        assistant_only_loss=True,
        per_device_train_batch_size=6,
        report_to=[],
        use_cpu=True,
        dataset_num_proc=None,
        bf16=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_dict({"messages": convs}),
        processing_class=tok,
    )
    batch = trainer.data_collator(list(trainer.train_dataset))
    mine = collate_sft([encode_chat(tok, c) for c in convs], tok.pad_token_id)
    assert torch.equal(batch["input_ids"], mine["input_ids"])
    assert torch.equal(batch["labels"], mine["labels"])
    with torch.no_grad():
        ref = trainer.compute_loss(model, batch)
        gpt = GPT.from_hf(model).eval()
        logits = gpt(mine["input_ids"])
        logits = logits[0] if isinstance(logits, tuple) else logits
    assert_close(sft_loss(logits, mine["labels"]), ref, rtol=1e-5, atol=1e-5)


def test_sft_loss_equals_the_hugging_face_loss_and_its_definition(tok_and_model):
    tok, model = tok_and_model
    batch = collate_sft(
        [encode_chat(tok, c) for c in conversations()], tok.pad_token_id
    )
    with torch.no_grad():
        out = model(**batch)
    assert_close(sft_loss(out.logits, batch["labels"]), out.loss)
    # the definition: the mean over labelled next tokens
    logp = out.logits[:, :-1].log_softmax(-1)
    target = batch["labels"][:, 1:]
    keep = target != -100
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert_close(sft_loss(out.logits, batch["labels"]), -picked[keep].mean())


def test_add_chat_format_initialises_the_new_rows_from_a_newline(tok_and_model):
    tok, model = tok_and_model
    emb = model.get_input_embeddings().weight
    ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    newline = tok("\n", add_special_tokens=False).input_ids[-1]
    assert emb.shape[0] == len(tok) == 1024 + len(SPECIAL_TOKENS)
    for i in ids:
        assert torch.equal(emb[i], emb[newline])
    assert tok.eos_token == END and tok.pad_token == "<|pad|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id


# --- tasks, tool and chat loop ------------------------------------------------------


def test_make_tasks_is_seeded_and_its_answers_are_right():
    a, b = make_tasks(30, WORDS, seed=5), make_tasks(30, WORDS, seed=5)
    assert a == b and a != make_tasks(30, WORDS, seed=6)
    for conv in a:
        q, answer = conv[0]["content"], conv[-1]["content"]
        if q.startswith("What is"):
            x, name, y = q.removeprefix("What is ").rstrip("?").split()
            op = {"plus": "+", "minus": "-", "times": "*"}[name]
            assert answer == str(eval(f"{x}{op}{y}"))  # trusted: our own text
            assert conv[1]["content"] == f"<calc>{x}{op}{y}</calc>"
        elif q.startswith("How many"):
            assert answer == str(len(q.split(":")[1].split()))
        else:
            w = q.split()[1]
            assert answer == f"{w} {w}"
    kinds = [c[0]["content"].split()[0] for c in a[:3]]
    assert kinds == ["What", "How", "Say"]


def test_calculator_computes_and_never_evaluates():
    assert calculator("37+58") == "95"
    assert calculator(" 12 * -3 ") == "-36"
    assert calculator("10-99") == "-89"
    for bad in [
        "__import__('os').system('echo')",
        "1/2",
        "2**99",
        "1+",
        "9" * 10 + "+1",
    ]:
        with pytest.raises(ValueError, match="expression must be 'a op b'"):
            calculator(bad)
    with pytest.raises(TypeError, match="expression must be a str, got int"):
        calculator(3)


class Scripted(torch.nn.Module):
    """A stand-in model whose generate replies with a fixed text per turn: a
    tool call after a user turn, the tool's result after a tool turn."""

    def __init__(self, tok):
        super().__init__()
        self.tok, self.w = tok, torch.nn.Parameter(torch.zeros(1))

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        user, tool, end = self.tok.convert_tokens_to_ids(["<|user|>", "<|tool|>", END])
        rows = []
        for row in input_ids:
            ids = row.tolist()
            last = max(i for i, t in enumerate(ids) if t in (user, tool))
            if ids[last] == tool:  # repeat the tool's result
                result = ids[last + 1 : ids.index(end, last)]
                reply = self.tok.decode(result) + END
            else:
                reply = "<calc>6*7</calc>" + END
            new = self.tok(reply, add_special_tokens=False).input_ids
            rows.append(ids + new + [self.tok.pad_token_id] * (12 - len(new)))
        return torch.tensor(rows)


def test_chat_runs_the_tool_call_and_replies_again(tok_and_model):
    tok, _ = tok_and_model
    convs = [[{"role": "user", "content": "What is 6 times 7?"}]] * 2
    answers, transcripts = chat(Scripted(tok), tok, convs, batch_size=1)
    assert answers == ["42", "42"]
    assert [m["role"] for m in transcripts[0]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert transcripts[0][2]["content"] == "42" and len(convs[0]) == 1


def test_chat_with_the_house_model_returns_one_answer_each(tok_and_model):
    tok, model = tok_and_model
    convs = [c[:1] for c in make_tasks(3, WORDS)]
    answers, transcripts = chat(model, tok, convs, max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert all(t[-1]["role"] == "assistant" for t in transcripts)


def test_exact_match():
    assert exact_match(["95 ", "3"], ["95", "4"]) == 0.5
    with pytest.raises(ValueError, match="same length > 0, got 1 and 2"):
        exact_match(["1"], ["1", "2"])
    with pytest.raises(TypeError, match="predictions must be a list of str"):
        exact_match([1], ["1"])


# --- argument checks ---------------------------------------------------------------


def test_bad_arguments_name_the_argument(tok_and_model):
    tok, model = tok_and_model
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(house_model_path("shakespeare-bpe"))
    with pytest.raises(ValueError, match="tokenizer must have the chat tokens"):
        encode_chat(plain, HOSTILE)
    with pytest.raises(TypeError, match=r"messages must be a non-empty list"):
        encode_chat(tok, [])
    with pytest.raises(ValueError, match=r"messages\[0\]\['role'\] must be one of"):
        encode_chat(tok, [{"role": "system", "content": "x"}])
    with pytest.raises(TypeError, match=r"messages\[0\] must be a dict"):
        encode_chat(tok, [{"role": "user", "content": 3}])
    with pytest.raises(TypeError, match="examples must be a non-empty list"):
        collate_sft([], 0)
    with pytest.raises(ValueError, match=r"examples\[0\] must have as many labels"):
        collate_sft([{"input_ids": [1, 2], "labels": [1]}], 0)
    with pytest.raises(ValueError, match="pad_token_id must be >= 0"):
        collate_sft([{"input_ids": [1], "labels": [1]}], -1)
    logits = torch.zeros(1, 3, 5)
    with pytest.raises(ValueError, match="labels must mark at least one token"):
        sft_loss(logits, torch.full((1, 3), -100))
    with pytest.raises(ValueError, match=r"labels must be a tensor of shape \(1, 3\)"):
        sft_loss(logits, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"logits must be a \(B, T, V\) tensor"):
        sft_loss(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="words must be a sequence of at least 7"):
        make_tasks(3, "lord")
    with pytest.raises(ValueError, match="words must be alphabetic"):
        make_tasks(3, ["a b"] * 7)
    with pytest.raises(ValueError, match="kinds must be a non-empty subset"):
        make_tasks(3, WORDS, kinds=["sing"])
    with pytest.raises(ValueError, match="n must be >= 0"):
        make_tasks(-1, WORDS)
    with pytest.raises(ValueError, match=r"conversations\[0\] must end with a user"):
        chat(model, tok, [HOSTILE])
    with pytest.raises(TypeError, match="model must be a Hugging Face causal LM"):
        chat(torch.nn.Linear(1, 1), tok, [])
    with pytest.raises(TypeError, match="model must be a Hugging Face PreTrainedModel"):
        add_chat_format(plain, torch.nn.Linear(1, 1))
    with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
        encode_chat("gpt2", HOSTILE)
    with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
        add_chat_format(None)
    with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
        chat(model, object(), [])
    with pytest.raises(TypeError, match="init_from must be a non-empty str"):
        add_chat_format(plain, init_from="")
