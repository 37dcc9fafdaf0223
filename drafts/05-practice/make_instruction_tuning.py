# ruff: noqa: E501  (prose and LaTeX lines of the chapter)
"""Writes chapters/05-practice/instruction-tuning.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-instruction-tuning)=
# Instruction tuning

A pretrained language model continues text. Given "What is 37 plus 58?" the house model of this book writes more Shakespeare, because that is what followed text in its training data. An assistant answers instead, in turns, and knows when its turn is over. What turns one into the other is **post-training**, and its first step is {term}`supervised fine-tuning` (SFT), also called {term}`instruction tuning`: more training with the same next-token loss, on conversations in which the assistant behaves as it should {footcite}`wei2022flan,ouyang2022instructgpt`. In 2026 the open recipes add preference optimisation ({ref}`chap-lora-and-dpo`) and reinforcement learning with verifiable rewards after SFT {footcite}`lambert2024tulu3,deepseekai2025r1`, but every one of them starts from an SFT model.

Three details decide whether SFT works, and each is a common source of bugs: how a conversation becomes tokens (the {term}`chat template`), which tokens the loss counts (only the assistant's, through labels of $-100$), and whether the model learns to end its turn. This chapter writes each by hand, checks it against `transformers` and TRL's `SFTTrainer` {footcite}`vonwerra2020trl`, and teaches the house model three skills whose answers a program can check: arithmetic through a calculator tool, counting words, and repeating a word.

```{admonition} Learning goals
:class: tip
After this chapter you can

- write a chat template in Jinja, add its special tokens to a tokenizer and a model, and render a conversation with `apply_chat_template`;
- build the labels of a conversation by hand, with $-100$ on every token that the assistant did not write, and check them against the template's assistant mask;
- say why the end-of-turn token must be inside that mask, and test a template for it;
- fine-tune `lmbook`'s GPT on conversations by hand, then do the same with TRL's `SFTTrainer`, and show that both compute the same losses step by step;
- run a model that calls a tool, and measure exact-match accuracy before and after SFT.
```
""")

code(r"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # local folders only (before HF imports)

import collections
import math
import re
import tempfile
import warnings

import datasets
import matplotlib.pyplot as plt
import torch
import transformers
from torch.testing import assert_close
from torch.utils.data import SequentialSampler
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import is_chat_template_stop_token_trained

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import GPT, house_model_path
from lmbook.data import load_text, train_val_split
from lmbook.instruct import (CHAT_TEMPLATE, add_chat_format, calculator,
                             chat, collate_sft, encode_chat, exact_match,
                             make_tasks, sft_loss)

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()
datasets.disable_progress_bar()
plt.style.use("tableau-colorblind10")
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations
torch.set_num_threads(2)
""")

md(r"""
## One model variable

Every cell uses the model named in `MODEL`: offline, and in the book's tests, the house model `shakespeare-bpe`, a 2.6-million-parameter model with Llama's block ({ref}`chap-modern-llm`), trained on the first 90% of Tiny Shakespeare with a byte-level BPE tokenizer of 1024 tokens.

```{admonition} Running online: use a model from the Hub
:class: note
Set the environment variable `LMBOOK_MODEL` (or edit the cell) to run the chapter on a base model from the Hub with Llama's layout, such as `HuggingFaceTB/SmolLM2-135M` (135M parameters, fits a free Colab session), and remove the `HF_HUB_OFFLINE` line above. The chapter gives it its own chat template and tokens, as it does the house model. The printed numbers will differ and the checks still hold; on a GPU, `STEPS` can be raised to the 1,500 of the longer run below.
```
""")

code(r"""
MODEL = os.environ.get("LMBOOK_MODEL",
                       str(house_model_path("shakespeare-bpe")))


def load_base():
    # the pretrained model, without dropout (as the two loops below need)
    return AutoModelForCausalLM.from_pretrained(
        MODEL, attention_dropout=0.0, dropout=0.0)


tokenizer = AutoTokenizer.from_pretrained(MODEL)
hf_model = load_base()
print(f"{os.path.basename(MODEL)}: {hf_model.num_parameters():,} "
      f"parameters, vocabulary {len(tokenizer)}, "
      f"chat template: {tokenizer.chat_template is not None}")
""")

md(r"""
## What the base model does with a question

Ask the base model a question, rendered as plain text, and it continues as it learnt to: with more play.
""")

code(r"""
question = "What is 37 plus 58?"
ids = tokenizer(question + "\n", return_tensors="pt").input_ids
out = hf_model.generate(ids, max_new_tokens=24, do_sample=False)
print(question + tokenizer.decode(out[0, ids.size(1):]))
""")

md(r"""
(sec-chat-template)=
## Chat templates

A conversation is a list of messages, each with a role and a content. A model reads tokens, so a {term}`chat template` renders the list as text, with markers that say who speaks. Hugging Face tokenizers store the template as a Jinja program in `tokenizer.chat_template`, and `apply_chat_template` runs it {footcite}`hf2024chattemplates`. Every family has its own markers: Qwen and SmolLM use ChatML, `<|im_start|>user\n…<|im_end|>`; Llama 3 uses `<|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>` {footcite}`meta2024llama3code`. A model must be prompted with the template it was fine-tuned with; the same words in another format are, to it, a different text.

The house model has no template and no special tokens, so `lmbook.instruct` gives it both. Each turn is a role token, the content and `<|end|>`:
""")

code(r"""
print(CHAT_TEMPLATE.replace("{%-", "\n{%-").strip())
""")

md(r"""
Two parts of the template matter beyond the markers. `add_generation_prompt` appends the assistant's role token, so that the model's next tokens are its answer. And the assistant's content and its `<|end|>` sit between `{% generation %}` and `{% endgeneration %}`: `apply_chat_template(..., return_assistant_tokens_mask=True)` marks exactly those tokens, which is how libraries find what the model should be trained to write.

`add_chat_format` adds the five special tokens (`<|user|>`, `<|assistant|>`, `<|tool|>`, `<|end|>` and `<|pad|>`), makes `<|end|>` the end-of-sequence token and `<|pad|>` the padding token, and grows the model's embedding matrix by five rows. Because the house model ties its input and output embeddings, each new row is both how the token is read and how likely it is to be written. `transformers` starts new rows from a normal distribution with the mean and covariance of the old ones {footcite}`hewitt2021initializing`; `add_chat_format` starts them as copies of the newline's row instead, a token that the model already predicts at the end of a speech. The cell measures what that changes: the loss on the first training batch, with each start.
""")

code(r"""
train_text = train_val_split(load_text("tinyshakespeare"))[0]
words = sorted({w.lower() for w in train_text.split()
                if w.isalpha() and 3 <= len(w) <= 6})


def first_loss(init):
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = load_base()
    if init == "newline":
        add_chat_format(tok, model)
    else:  # transformers' default: the old rows' mean and covariance
        add_chat_format(tok)
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tok))
    batch = collate_sft([encode_chat(tok, c)
                         for c in make_tasks(16, words, seed=0)],
                        tok.pad_token_id)
    with torch.no_grad():
        return model(**batch).loss.item()


for init in ("mean and covariance", "newline"):
    print(f"{init:>20}: first-batch loss {first_loss(init):.1f} nats")
""")

md(r"""
From here on the chapter uses the newline start, on the model and tokenizer loaded above. Rendering a conversation with a tool call shows every marker:
""")

code(r"""
add_chat_format(tokenizer, hf_model)
example = make_tasks(1, words, seed=3)[0]
print(tokenizer.apply_chat_template(example, tokenize=False))
prompt = tokenizer.apply_chat_template(example[:1], tokenize=False,
                                       add_generation_prompt=True)
print(prompt)
""")

md(r"""
(sec-tasks)=
## A task set that a program can check

Instruction data for real assistants is written by people or by other models, and judged by people or by other models. For a chapter that must run in two minutes and be checked, the tasks are synthetic and their answers verifiable, as in reinforcement learning with verifiable rewards {footcite}`lambert2024tulu3`. `make_tasks` cycles through three kinds:

- **calc**: "What is 37 plus 58?" The assistant does not answer; it calls a calculator by writing `<calc>37+58</calc>`, the tool's result comes back in a `tool` turn, and the assistant repeats it. Tool use is trained the same way in large models {footcite}`schick2023toolformer`; their templates render the call as JSON in a `tool_calls` field rather than a tag {footcite}`hf2024chattemplates`.
- **count**: "How many words: sweet night love?" → "3", for 2 to 7 words.
- **repeat**: "Say lord twice." → "lord lord".

The words are those of 3 to 6 letters in the training split of Tiny Shakespeare. Test conversations come from another seed, and any whose question also appears in the training set is dropped, so the test measures what the model does with questions it has not seen.
""")

code(r"""
STEPS, BATCH = 300, 16  # training steps, conversations per step
train = make_tasks(STEPS * BATCH, words, seed=0)
seen = {c[0]["content"] for c in train}
test = [c for c in make_tasks(240, words, seed=1)
        if c[0]["content"] not in seen][:180]
kinds = ["calc", "count", "repeat"]
kind_of = {"What": "calc", "How": "count", "Say": "repeat"}
test_kind = [kind_of[c[0]["content"].split()[0]] for c in test]
print(f"{len(words)} words; {len(train)} training conversations, "
      f"{len(test)} test ({collections.Counter(test_kind)})")
for c in train[:3]:
    print(" | ".join(f"{m['role']}: {m['content']}" for m in c))
""")

md(r"""
(sec-masking)=
## Which tokens the loss counts

SFT uses the language-modelling loss of pretraining, the cross-entropy of each next token, with one change: only the tokens the assistant writes are scored. The others get the label $-100$, the `ignore_index` of PyTorch's cross-entropy, and drop out of both the sum and the count:

$$
\mathcal{L} = -\frac{1}{|A|} \sum_{t \in A} \log p_\theta(x_t \mid x_{<t}),
\qquad A = \{t : \text{label}_t \ne -100\},
$$

where $A$ runs over the labelled positions of the whole batch. The user's question is context: training the model to write it would teach it to ask questions, and, for short answers after long prompts, would spend most of the gradient on text the model is never asked to produce. Whether this masking helps is an empirical question; Shi et al. found that keeping a loss on the instructions helps when the answers are short and the data few {footcite}`shi2024instructionloss`. TRL's `SFTTrainer` masks when `assistant_only_loss=True`, the setting used here.

`encode_chat` builds the labels by hand: each turn is its role token, its content's tokens and `<|end|>`, and the labels copy the ids of assistant turns and are $-100$ elsewhere. The cell prints the first training conversation token by token, and checks the labels against the template's assistant mask on all test conversations.
""")

code(r"""
enc = encode_chat(tokenizer, train[0])
for i, label in zip(enc["input_ids"], enc["labels"]):
    print(f"{tokenizer.decode([i])!r:>12} {'trained' if label >= 0 else ''}")

for conv in test:
    ref = tokenizer.apply_chat_template(conv, return_dict=True,
                                        return_assistant_tokens_mask=True)
    mine = encode_chat(tokenizer, conv)
    assert mine["input_ids"] == list(ref["input_ids"])
    assert mine["labels"] == [i if m else -100 for i, m in
                              zip(ref["input_ids"], ref["assistant_masks"])]
print("labels = the template's assistant mask on", len(test), "conversations")
""")

md(r"""
Both assistant turns of a calc conversation are trained, and the tool's result is not: the model should learn to call the tool and to repeat its result, not to predict it. The `<|end|>` after each assistant turn is trained too. A template that closes the generation block before `<|end|>`, or puts the end-of-turn token at the start of the next message, gives a mask without it; the loss then looks healthy, and the model never learns to stop. TRL checks for this, and the cell shows its check on our template and on the broken variant:
""")

code(r"""
broken = CHAT_TEMPLATE.replace("<|end|>{% endgeneration %}",
                               "{% endgeneration %}<|end|>")
print("our template trains <|end|>:",
      is_chat_template_stop_token_trained(tokenizer))
print("broken variant trains <|end|>:",
      is_chat_template_stop_token_trained(tokenizer, chat_template=broken))
""")

md(r"""
`collate_sft` pads a batch on the right, with `<|pad|>` in the ids, 0 in the attention mask and $-100$ in the labels, and `sft_loss` computes $\mathcal{L}$. The loss equals the one `transformers` computes when given the labels, and the mean of the per-token losses at the labelled positions:
""")

code(r"""
batch = collate_sft([encode_chat(tokenizer, c) for c in train[:BATCH]],
                    tokenizer.pad_token_id)
with torch.no_grad():
    out = hf_model(**batch)
loss = sft_loss(out.logits, batch["labels"])
assert_close(loss, out.loss)
per_token = torch.nn.functional.cross_entropy(
    out.logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:],
    reduction="none")  # 0 where the label is -100
scored = batch["labels"][:, 1:] != -100
assert_close(loss, per_token.sum() / scored.sum())
print(f"batch {tuple(batch['input_ids'].shape)}: {int(scored.sum())} "
      f"of {int(batch['attention_mask'].sum())} tokens scored, "
      f"loss {loss:.2f}")
""")

md(r"""
Every labelled token in the batch counts once, so a long answer weighs more than a short one; averaging each conversation first and then the batch would weigh conversations equally instead. `transformers` also divides by the labelled tokens of all micro-batches when it accumulates gradients, so that accumulation gives the loss of the large batch ({ref}`chap-fine-tuning-with-trainer`).

(sec-before)=
## Exact match before SFT

`chat` answers a list of conversations in batches: it renders each with the generation prompt, pads on the left ({ref}`chap-pipelines-and-generate`), and decodes greedily until `<|end|>`. When a reply is a tool call, `<calc>…</calc>`, it runs the calculator, appends the result as a `tool` turn and lets the model reply once more. The calculator parses `a op b` and never evaluates the model's text: model output is untrusted input. Exact match compares the last reply with the answer.
""")

code(r"""
def evaluate(model):
    answers, transcripts = chat(model.eval(), tokenizer,
                                [c[:1] for c in test])
    refs = [c[-1]["content"] for c in test]
    hit = {k: [] for k in kinds}
    for kind, a, r in zip(test_kind, answers, refs):
        hit[kind].append(a.strip() == r)
    assert sum(sum(h) for h in hit.values()) == round(
        exact_match(answers, refs) * len(test))
    return {k: sum(h) / len(h) for k, h in hit.items()}, transcripts


before, transcripts = evaluate(hf_model)
print("exact match:", {k: f"{v:.0%}" for k, v in before.items()})
print(transcripts[0][1]["content"][:60])
""")

md(r"""
(sec-sft-by-hand)=
## SFT by hand

The loop is the pretraining loop of {ref}`chap-gpt-from-scratch` with the batches of this chapter. It trains `lmbook`'s GPT, which loads the weights of the Hugging Face model with its new rows; AdamW with a learning rate of $2 \times 10^{-3}$, linear warm-up over 20 steps and linear decay to 0, no weight decay, and gradients clipped to norm 1.
""")

code(r"""
LR, WARMUP = 2e-3, 20


def schedule(optimizer):
    # linear warm-up, then linear decay to 0 at STEPS, as in transformers
    return transformers.get_linear_schedule_with_warmup(
        optimizer, WARMUP, STEPS)


def batches():
    for step in range(STEPS):
        convs = train[step * BATCH:(step + 1) * BATCH]
        yield collate_sft([encode_chat(tokenizer, c) for c in convs],
                          tokenizer.pad_token_id)


torch.manual_seed(0)
gpt = GPT.from_hf(hf_model).train()
optimizer = torch.optim.AdamW(gpt.parameters(), lr=LR, weight_decay=0.0)
scheduler = schedule(optimizer)
losses = []
for batch in tqdm(batches(), total=STEPS, desc="SFT"):
    logits, _ = gpt(batch["input_ids"])
    loss = sft_loss(logits, batch["labels"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(loss.item())
print(f"loss: first 20 steps {sum(losses[:20]) / 20:.1f}, "
      f"last 50 steps {sum(losses[-50:]) / 50:.1f}")
""")

md(r"""
The padded positions take part in the forward pass of `lmbook`'s GPT, which has no attention mask: with right padding, causal attention keeps every real token from seeing them, and their labels are $-100$, so they change nothing ({ref}`chap-pipelines-and-generate`).
""")

code(r"""
fig, ax = plt.subplots(figsize=(6.4, 2.8))
window = 20
smooth = [sum(losses[max(0, i - window + 1):i + 1])
          / len(losses[max(0, i - window + 1):i + 1])
          for i in range(len(losses))]
ax.plot(losses, alpha=0.35, label="each batch")
ax.plot(smooth, label=f"mean of the last {window}")
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("SFT loss (nats per token)")
ax.legend(frameon=False)
fig.tight_layout()
plt.show()
""",
    alt="A line chart of the SFT loss over the training steps on a log "
    "scale: it falls from several nats per token in the first steps to "
    "well under one nat, with batch-to-batch noise around the smoothed "
    "curve.",
    caption="SFT loss of each batch of 16 conversations, and its running "
    "mean over 20 steps.",
    name="fig-sft-loss",
)

md(r"""
(sec-after)=
## Exact match after SFT

The trained weights go back into a Hugging Face model for `generate` (`GPT.to_hf`), and the same test runs again.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (the last digit of a training result can differ between CPUs)
tuned = gpt.to_hf().eval()
after, transcripts = evaluate(tuned)
print(f"{'task':8} {'before':>7} {'after':>7}")
for k in kinds:
    print(f"{k:8} {before[k]:7.0%} {after[k]:7.0%}")
assert all(before[k] == 0 for k in kinds)
assert after["count"] >= 0.3 and sum(after.values()) > 0.4
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (sampled from a trained model)
for t in transcripts[:6]:
    print(" | ".join(f"{m['role']}: {m['content']}" for m in t))
""")

md(r"""
The model now answers in turns and stops, and it counts words. It has not learnt to copy: its tool calls have the right form but other numbers than the question's, its last reply is often not the tool's result, and the words it should repeat come out as other words that begin alike. The next cell counts the first and looks for a reason for the second in the pretraining data.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (the last digit of a training result can differ between CPUs)
calls = [t for t, k in zip(transcripts, test_kind) if k == "calc"]
well_formed = sum(bool(re.fullmatch(r"<calc>\d+[-+*]\d+</calc>",
                                    t[1]["content"])) for t in calls)
print(f"calc: {well_formed} of {len(calls)} first replies are "
      f"well-formed tool calls")
assert well_formed >= 0.8 * len(calls)
""")

code(r"""
digits = collections.Counter(ch for ch in train_text if ch.isdigit())
print(f"digits in {len(train_text):,} characters of pretraining text:",
      dict(digits))
assert set(digits) <= {"3"}
""")

md(r"""
In pretraining the house model saw one digit, "3", and no other. It never had to read the other nine, and the only thing pretraining taught it about them is not to write them. SFT must teach it what each digit is before it can copy one, and 300 steps are not enough. This is the usual division of labour between the stages, seen from the other side: SFT teaches the format of the answers quickly, and relies on pretraining for the knowledge in them {footcite}`zhou2023lima`. Given more steps, it does. `bench/bench_sft.py` runs the same recipe for 1,500 steps, with the learning rate decaying over all of them, and measures exact match on test conversations every 300 steps (its command is at the top of the script; 18 minutes on one core of a shared machine, results in `bench/results/sft.json`):

| steps | calc | count | repeat | well-formed calls |
|---|---|---|---|---|
| 300 | 4% | 59% | 8% | 100% |
| 600 | 100% | 61% | 25% | 100% |
| 900 | 100% | 69% | 50% | 100% |
| 1,500 | 100% | 84% | 83% | 100% |

The calculator task goes from almost nothing to every answer right between steps 300 and 600, and stays there: once the model copies digits, the tool does the arithmetic. Copying whole words comes more slowly, and counting, which no tool does for the model, improves least.

""")

md(r"""
(sec-sft-trl)=
## The same with TRL's SFTTrainer

`SFTTrainer` does all of the above from a dataset with a `messages` column: it renders each conversation with the tokenizer's template, takes the assistant mask from the `{% generation %}` markers, builds the labels, pads, and trains with `Trainer` ({ref}`chap-fine-tuning-with-trainer`). To compare it with the loop above step by step, both must start from the same weights and see the same batches with the same optimiser. The cell gives the trainer a fresh copy of the model with its new rows, the optimiser and schedule of the loop, and a sampler that keeps the dataset's order, and records the loss of each step; it trains 10 steps. One setting differs from `transformers`' `TrainingArguments`: TRL's configurations default to `bf16=True`, which runs the forward pass under bfloat16 autocast, on a CPU too, and changes the losses in their third digit. The comparison turns it off.
""")

code(r"""
COMPARE = 10


class RecordingSFTTrainer(SFTTrainer):
    # SFTTrainer in dataset order, recording each step's loss
    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = super().compute_loss(model, inputs, *args, **kwargs)
        self.recorded.append(loss.item())
        return loss


trl_tokenizer = AutoTokenizer.from_pretrained(MODEL)
trl_model = load_base()
add_chat_format(trl_tokenizer, trl_model)
trl_optimizer = torch.optim.AdamW(trl_model.parameters(), lr=LR,
                                  weight_decay=0.0)
with tempfile.TemporaryDirectory() as tmp:
    args = SFTConfig(
        output_dir=tmp, assistant_only_loss=True, max_steps=COMPARE,
        per_device_train_batch_size=BATCH, max_grad_norm=1.0,
        logging_steps=COMPARE, report_to=[], save_strategy="no",
        use_cpu=True, disable_tqdm=True, seed=0,
        bf16=False)  # TRL's default is True: bfloat16 autocast, even on CPU
    trainer = RecordingSFTTrainer(
        model=trl_model, args=args, processing_class=trl_tokenizer,
        train_dataset=datasets.Dataset.from_dict(
            {"messages": train[:COMPARE * BATCH]}),
        optimizers=(trl_optimizer, schedule(trl_optimizer)))
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.recorded = []
    trainer.train()

ours, theirs = torch.tensor(losses[:COMPARE]), torch.tensor(trainer.recorded)
assert_close(theirs, ours, rtol=1e-3, atol=1e-4)
print("step  by hand   SFTTrainer")
for i in (0, 1, 4, 9):
    print(f"{i + 1:4} {ours[i]:9.2f} {theirs[i]:11.2f}")
""")

md(r"""
The two agree within 0.1% at each of the 10 steps (the `assert_close` above), although one is `lmbook`'s GPT and the other `transformers`' Llama: same tokens, same mask, same loss, same updates. What the trainer adds is engineering: packing several conversations into one sequence (`packing=True`), padding-free batches, gradient accumulation, mixed precision, several devices, checkpoints and logging.

## Summary

- A chat template, a Jinja program stored with the tokenizer, renders a conversation as text with role and end-of-turn markers. A model must be prompted with the template it was trained with. New special tokens need new embedding rows, and where they start matters: copies of the newline's row gave a lower first loss than the default random rows.
- SFT is next-token training on the assistant's tokens only: every other label is $-100$. The `{% generation %}` markers of a template give that mask, and the assistant's `<|end|>` must be inside it, or the model never learns to stop. Our labels equal the template's mask, and our loss equals `transformers`' loss.
- Before SFT the house model answers no test question. After 300 steps on 4,800 synthetic conversations (about a minute on a laptop's CPU) it answers in turns, writes well-formed tool calls, stops, and counts words; it does not yet copy numbers or words, which its pretraining on Shakespeare never needed. SFT teaches format fast; what the answers need to contain comes from pretraining, or from many more steps.
- TRL's `SFTTrainer` computes the same losses as the hand-written loop, step by step, from the same start and batches.

## Exercises

```{exercise}
:label: ex-sft-trained-tokens
How many tokens of the conversation `make_tasks(1, words, seed=3)[0]` (the example rendered in {ref}`sec-chat-template`) does SFT train on? Count them with `encode_chat` and check with `lmbook.exercises.check("sft-trained-tokens", n)`. Which tokens are they?
```

```{solution} ex-sft-trained-tokens
:class: dropdown
The trained tokens are those of both assistant turns, the tool call and the repeated result, each with its `<|end|>`; the user's question, the tool's result and all role tokens are not.

    enc = encode_chat(tokenizer, make_tasks(1, words, seed=3)[0])
    n = sum(label != -100 for label in enc["labels"])
    lmbook.exercises.check("sft-trained-tokens", n)
```

```{exercise}
:label: ex-sft-token-mean
A batch holds two conversations. The first answer has 2 labelled tokens with losses 1.0 and 3.0 nats; the second has 6, each with loss 0.5. What is the loss that `transformers` and `sft_loss` compute? Check with `lmbook.exercises.check("sft-token-mean", loss)`. What would the mean of the two conversations' own means be?
```

```{solution} ex-sft-token-mean
:class: dropdown
Every labelled token counts once: $(1 + 3 + 6 \cdot 0.5)/8 = 7/8 = 0.875$. The mean of the conversations' means is $(2 + 0.5)/2 = 1.25$: it gives the short answer's tokens three times the weight.

    loss = (1.0 + 3.0 + 6 * 0.5) / 8
    lmbook.exercises.check("sft-token-mean", loss)
```

```{exercise}
:label: ex-sft-chatml
Write the ChatML template, in which a turn is `<|im_start|>` followed by the role, a newline, the content and `<|im_end|>\n`, with the assistant's content and `<|im_end|>` inside `{% generation %}`. How many tokens does the first test conversation take in it, with `<|im_start|>` and `<|im_end|>` added as special tokens to a fresh house tokenizer? Check with `lmbook.exercises.check("sft-chatml-length", n)`. Is the end-of-turn token trained, by TRL's check?
```

```{solution} ex-sft-chatml
:class: dropdown
Each turn now spends tokens on the role's name and the two newlines, where our template spends one role token. `is_chat_template_stop_token_trained` returns True when `<|im_end|>` is inside the generation block.

    chatml = (
        "{%- for m in messages -%}"
        "{{- '<|im_start|>' + m.role + '\\n' -}}"
        "{%- if m.role == 'assistant' -%}"
        "{% generation %}{{- m.content + '<|im_end|>' -}}"
        "{% endgeneration %}{{- '\\n' -}}"
        "{%- else -%}{{- m.content + '<|im_end|>\\n' -}}{%- endif -%}"
        "{%- endfor -%}")
    tok = AutoTokenizer.from_pretrained(MODEL)
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = chatml
    conv = make_tasks(1, words, seed=3)[0]
    n = len(tok.apply_chat_template(conv, tokenize=True)["input_ids"])
    lmbook.exercises.check("sft-chatml-length", n)
    print(is_chat_template_stop_token_trained(tok))
```

```{exercise}
:label: ex-sft-reverse
Add a fourth task: "Reverse: lord" → "drol". Train with the loop of {ref}`sec-sft-by-hand` on all four kinds, and measure exact match per kind. Why is this task much harder for this model than repeating a word?
```

```{solution} ex-sft-reverse
:class: dropdown
Write the conversations yourself (a list of user and assistant messages per example) and append them to `train` and `test`, interleaved with the other kinds. The model sees byte-level BPE tokens: "lord" may be one token, and its reversal, "drol", several unrelated ones. To reverse, the model must know the letters inside each token, which it learnt only indirectly from Shakespeare's text, and a 2.6-million-parameter model knows little of it. Repeating copies whole tokens, which attention does directly ({ref}`chap-attention-real-model`).
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters/05-practice/instruction-tuning.ipynb"
    )
)
