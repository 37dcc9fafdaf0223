"""Writes chapters/05-practice/fine-tuning-with-trainer.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-fine-tuning-with-trainer)=
# Fine-tuning a causal LM with `Trainer`

A pretrained language model knows the text it was trained on. {term}`Fine-tuning <fine-tuning>` continues its training on text from a new domain, with the same next-token loss, so that it predicts that domain better. This chapter fine-tunes the book's Llama-layout house model, trained only on Shakespeare, on modern English: the sentences of movie reviews in SST-2 {footcite}`socher2013sst`. It uses the tools of the field, the `datasets` library {footcite}`lhoest2021datasets` for the data and `transformers`' `Trainer` {footcite}`wolf2020transformers` for the loop, and measures what the fine-tuning buys on held-out reviews and what it costs on held-out Shakespeare.

Many tutorials still build the training data with `TextDataset`. Transformers v5 no longer has that class (the first cell below checks), so those tutorials now stop at their first import. The chapter starts with the replacement.

```{admonition} Learning goals
:class: tip
After this chapter you can

- replace `TextDataset` with `datasets` and `DataCollatorForLanguageModeling(mlm=False)`, and say what each step of the replacement does;
- write `TrainingArguments` for a CPU run: steps, schedule, evaluation, logging, seed, no external reporting;
- compute the loss that `Trainer` reports by hand, and turn it into perplexity;
- observe a callback's records, save a fine-tuned model, reload it and check that nothing changed;
- measure the gain of fine-tuning on the new domain and the forgetting on the old one.
```
""")

code(r"""
import math
import os
import tempfile

import datasets
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import transformers
from torch.testing import assert_close
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import house_model_path, load_sst2, load_text, train_val_split

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()
datasets.disable_progress_bars()
torch.set_num_threads(min(2, torch.get_num_threads()))  # what CI has
plt.style.use("tableau-colorblind10")

HOUSE = "shakespeare-bpe"  # the default: a house model, offline
MODEL = os.environ.get("LMBOOK_MODEL") or str(house_model_path(HOUSE))
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForCausalLM.from_pretrained(MODEL)
print(type(model).__name__, f"{model.num_parameters():,} parameters")
""")

md(r"""
```{admonition} Running online: use a model from the Hub
:class: note
Set `LMBOOK_MODEL` to a Hub name such as `gpt2` or `HuggingFaceTB/SmolLM2-135M` to fine-tune a real pretrained model with the same cells. They are 50 times larger than the house model, so reduce `max_steps` on a CPU, or use a GPU runtime: `Trainer` moves the model to the GPU by itself when `use_cpu` is left at its default of `False`.
```

## From `TextDataset` to `datasets`

`TextDataset(tokenizer, file_path, block_size)` read one text file, tokenized it as a whole, and cut the ids into blocks of `block_size` tokens, each a training example. The replacement does the same in steps that each can be inspected, cached and reused for other data:

| Removed in v5 | Replacement |
|---|---|
| `TextDataset(tokenizer, file_path=..., block_size=128)` | `load_dataset("text", data_files=...)` or `Dataset.from_dict`, then `map(tokenize, batched=True)` and `map(group_texts, batched=True)` |
| `LineByLineTextDataset` | `map(tokenize, batched=True)` alone, one example per line |
| `DataCollatorForLanguageModeling(tokenizer, mlm=False)` | unchanged: it copies `input_ids` into `labels` (padding becomes -100) |
| `Trainer(..., train_dataset=dataset)` | unchanged |
""")

code(r"""
print("TextDataset in transformers:", hasattr(transformers, "TextDataset"))
""")

md(r"""
The new domain is the sentences of SST-2's training file, phrases from movie reviews. Many are fragments of a few words, so the cell keeps the sentences of at least eight words, shuffles them with a fixed seed, and takes 6,000 for fine-tuning and 600 held out for evaluation. The old domain's held-out text is the last 10% of Tiny Shakespeare, the house model's own validation split.
""")

code(r"""
rows = load_sst2("train")
sentences = sorted({text for text, _ in rows if len(text.split()) >= 8})
reviews = datasets.Dataset.from_dict({"text": sentences})
reviews = reviews.shuffle(seed=0).select(range(6600))
reviews = reviews.train_test_split(test_size=600, seed=0)
_, shakespeare_val = train_val_split(load_text("tinyshakespeare"), 0.9)
print(reviews)
print(repr(reviews["train"][0]["text"]))
""")

md(r"""
Tokenizing is a batched `map`: the function gets a dictionary of lists and returns new columns. A newline after each sentence marks its end, as line breaks do in the Shakespeare text. Grouping then concatenates the token ids of a batch and cuts them into blocks of 128 tokens, the house model's context, dropping the remainder, which is what `TextDataset` did to the whole file.
""")

code(r"""
BLOCK = 128


def tokenize(batch):
    return tokenizer([text + "\n" for text in batch["text"]])


def group_texts(batch):
    ids = [i for row in batch["input_ids"] for i in row]
    n = len(ids) // BLOCK * BLOCK
    return {"input_ids": [ids[k : k + BLOCK] for k in range(0, n, BLOCK)]}


blocks = reviews.map(tokenize, batched=True, remove_columns=["text"])
blocks = blocks.map(
    group_texts, batched=True, remove_columns=["attention_mask"]
)
print(blocks)
shakespeare_ids = tokenizer(shakespeare_val)["input_ids"]
n = len(shakespeare_ids) // BLOCK * BLOCK
old_blocks = datasets.Dataset.from_dict(
    {"input_ids": [shakespeare_ids[k : k + BLOCK] for k in range(0, n, BLOCK)]}
).select(range(0, n // BLOCK, 4))  # every 4th block: enough, and faster
print(len(old_blocks), "blocks of held-out Shakespeare")
""")

md(r"""
The collator turns a list of examples into a batch. With `mlm=False` it is a causal-LM collator: it pads (not needed here, every block has 128 tokens), and copies `input_ids` to `labels`, with padding set to -100 so the loss ignores it. It does **not** shift the labels: the model does that inside its loss, predicting `labels[t + 1]` from position `t`. The house tokenizer has no padding token, so the cell names one; with equal-length blocks it is never used.
""")

code(r"""
tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)  # byte 0: unused
collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
batch = collator([blocks["train"][i] for i in range(4)])
print({k: tuple(v.shape) for k, v in batch.items()})
assert torch.equal(batch["labels"], batch["input_ids"])  # no shift here

with torch.no_grad():
    out = model(**batch)
logits = out.logits[:, :-1]  # position t predicts token t + 1
targets = batch["labels"][:, 1:]  # token t + 1 for each position t
by_hand = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
assert_close(out.loss, by_hand)
print(f"loss {out.loss:.3f} nats/token = mean cross-entropy of the "
      "shifted labels")
""")

md(r"""
## The `Trainer`

`TrainingArguments` holds every setting of the loop. For a short CPU run:

- `use_cpu=True` keeps the run on the CPU even when a GPU exists (leave it out to use the GPU);
- `max_steps` fixes the number of optimizer steps; `per_device_train_batch_size` the examples per forward pass, and `gradient_accumulation_steps` how many forward passes ({term}`gradient accumulation`) add their gradients before each step (here 2 x 8 = 16 blocks per step, with half the activation memory of 16 at once);
- `learning_rate`, `warmup_steps` and `lr_scheduler_type` set AdamW's schedule ({ref}`chap-training-faster` derived warmup and cosine decay);
- `eval_strategy="steps"` with `eval_steps` evaluates on the held-out set during training; `logging_steps` records the training loss;
- `seed` fixes the initialisation of anything new and the order of the batches;
- `report_to="none"` sends nothing to experiment trackers, `disable_tqdm=True` keeps the page free of progress bars, `save_strategy="no"` writes no checkpoints (the model is saved once, at the end), and `prediction_loss_only=True` makes evaluation keep the loss and not every logit.

`Trainer.evaluate` returns `eval_loss`, the mean cross-entropy per predicted token, and perplexity is its exponential.
""")

code(r'''
workdir = tempfile.mkdtemp(prefix="lmbook-trainer-")
args = TrainingArguments(
    output_dir=workdir,
    use_cpu=True,
    max_steps=40,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=2,  # 2 x 8 = 16 blocks per step
    per_device_eval_batch_size=16,
    learning_rate=1e-3,
    warmup_steps=6,
    lr_scheduler_type="cosine",
    weight_decay=0.1,
    logging_steps=5,
    eval_strategy="steps",
    eval_steps=20,
    save_strategy="no",
    seed=0,
    report_to="none",
    disable_tqdm=True,
    prediction_loss_only=True,  # keep no logits: memory stays small
)


def evaluate_both(trainer):
    """Held-out loss (nats/token) on the new and on the old domain."""
    new = trainer.evaluate(blocks["test"])["eval_loss"]
    old = trainer.evaluate(old_blocks)["eval_loss"]
    return new, old
''')

md(r"""
A callback is an object whose methods `Trainer` calls at fixed points of the loop: `on_log` receives every logged dictionary. This one keeps the losses for a figure; `Trainer.state.log_history` keeps them as well, and the callback is only the way to act on them while training runs (to stop early, say, or to write them elsewhere).
""")

code(r'''
class LossRecorder(TrainerCallback):
    """Collects (step, loss) for the training and the held-out loss."""

    def __init__(self):
        self.train, self.eval = [], []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.train.append((state.global_step, logs["loss"]))
        if "eval_loss" in logs:
            self.eval.append((state.global_step, logs["eval_loss"]))


recorder = LossRecorder()
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=blocks["train"],
    eval_dataset=blocks["test"],
    data_collator=collator,
    callbacks=[recorder],
)
# with disable_tqdm, Trainer prints every log dict; the recorder keeps them
trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
before = evaluate_both(trainer)
recorder.eval.append((0, before[0]))
print(f"before: reviews {before[0]:.2f} nats/token, "
      f"Shakespeare {before[1]:.2f}")
''')

md(r"""
Forty steps of 16 blocks are 81,920 tokens, about a third of an epoch of the 6,000 sentences. On two CPU cores this takes about half a minute; the bar shows the progress.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (the run's wall time depends on the machine)
class ProgressBar(transformers.trainer_callback.ProgressCallback):
    # transformers' progress bar, without printing each log dict
    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


progress = ProgressBar()
trainer.add_callback(progress)  # a progress bar while training runs
result = trainer.train()
trainer.remove_callback(progress)
print(f"{result.metrics['train_runtime']:.0f} s for {result.global_step} steps")
""")

code(r"""
after = evaluate_both(trainer)
print(f"{'':12s} {'reviews':>8s} {'Shakespeare':>12s}   (perplexity)")
for name, (new, old) in (("before", before), ("after", after)):
    print(f"{name:12s} {math.exp(new):8.0f} {math.exp(old):12.0f}")
assert after[0] < before[0] - 0.5 and after[1] > before[1]
""")

md(r"""
The held-out reviews became far more predictable, and the held-out Shakespeare less so: the model forgot part of its old domain while learning the new one, which is the {term}`catastrophic forgetting` of fine-tuning {footcite}`kirkpatrick2017overcoming`. A smaller learning rate, fewer steps, mixing old text into the new data, or training only a few added weights (LoRA, {ref}`chap-lora-and-dpo`) each trade some of the gain for less forgetting.
""")

code(
    r"""
fig, ax = plt.subplots(figsize=(6.4, 3.4))
steps, losses = zip(*recorder.train)
ax.plot(steps, losses, label="training loss (reviews)")
steps, losses = zip(*recorder.eval)
ax.plot(steps, losses, "o-", label="held-out reviews")
ax.axhline(after[1], color="C2", ls="--", label="held-out Shakespeare, after")
ax.axhline(before[1], color="C2", ls=":", label="held-out Shakespeare, before")
ax.set_xlabel("optimizer step")
ax.set_ylabel("loss (nats/token)")
ax.legend(fontsize=10)
fig.tight_layout()
plt.show()
""",
    alt="Line chart of loss against optimizer step over 40 steps of fine-tuning: "
    "the training and held-out losses on movie reviews fall steeply during "
    "the first 20 steps and then level off, while two horizontal lines show "
    "the held-out Shakespeare loss rising from before to after fine-tuning.",
    caption="Fine-tuning the house model on movie reviews: the new domain's loss "
    "falls, the old domain's rises.",
    name="fig-trainer-losses",
)

md(r"""
## Saving and reloading

`trainer.save_model(folder)` writes the model in the format it was loaded from, `config.json` and `model.safetensors`, and `tokenizer.save_pretrained(folder)` adds the tokenizer, so the folder loads like any Hub model. The reloaded model gives the same held-out loss:
""")

code(r"""
folder = os.path.join(workdir, "shakespeare-bpe-reviews")
trainer.save_model(folder)
tokenizer.save_pretrained(folder)
print(sorted(os.listdir(folder)))
reloaded = AutoModelForCausalLM.from_pretrained(folder)
check = Trainer(model=reloaded, args=args, data_collator=collator,
                eval_dataset=blocks["test"])
check.remove_callback(transformers.trainer_callback.PrinterCallback)
assert_close(check.evaluate()["eval_loss"], after[0])
print("reloaded: same held-out loss")
""")

md(r"""
## Summary

- `TextDataset` is gone in transformers v5. `datasets` with a batched `map` to tokenize and another to group the ids into blocks, plus `DataCollatorForLanguageModeling(mlm=False)`, replaces it; the model shifts the labels itself.
- `TrainingArguments` for a CPU run name the steps, the batch, the schedule, the evaluation and the seed, and turn off reporting and progress bars. `eval_loss` is the mean cross-entropy per token, computed by hand above; perplexity is its exponential.
- Forty steps on movie-review sentences cut the house model's held-out perplexity on reviews by a large factor and raised it on Shakespeare: fine-tuning buys the new domain with some of the old one.
- `save_model` plus `save_pretrained` gives a folder that loads like any Hub model, and the reloaded model evaluates the same.

## Exercises

```{exercise}
:label: ex-trainer-tokens
How many tokens does one run of this chapter's training see: `max_steps=40`, `per_device_train_batch_size=8`, `gradient_accumulation_steps=2`, blocks of 128 tokens, one device? Check with `lmbook.exercises.check("trainer-tokens-seen", n)`. With `gradient_accumulation_steps=4` instead, and the same `max_steps`, how many?
```

```{solution} ex-trainer-tokens
:class: dropdown
$40 \times (8 \times 2) \times 128 = 81{,}920$ tokens. `max_steps` counts optimizer steps, and each step sums the gradients of `gradient_accumulation_steps` micro-batches of 8 blocks; with 4 of them the run sees twice as many tokens, 163,840.

    lmbook.exercises.check("trainer-tokens-seen", 40 * 8 * 2 * 128)
```

```{exercise}
:label: ex-trainer-labels
A batch from `DataCollatorForLanguageModeling(mlm=False)` has `input_ids` of shape (4, 128). How many of its labels does the model's loss average over? Check with `lmbook.exercises.check("causal-lm-predicted-tokens", n)`. How does the answer change if the last 28 positions of one row are padding?
```

```{solution} ex-trainer-labels
:class: dropdown
The model drops the first label of each row when it shifts (nothing predicts the first token), so each row contributes 127 predictions: $4 \times 127 = 508$. With 28 padded positions in one row, their labels are -100 and are ignored: that row then predicts 99 tokens, $3 \times 127 + 99 = 480$.

    lmbook.exercises.check("causal-lm-predicted-tokens", 4 * (128 - 1))
```

```{exercise}
:label: ex-trainer-ppl
Perplexity is $e^{\text{loss}}$. If fine-tuning lowers the held-out loss by 0.7 nats per token, by what factor does the perplexity fall? Check with `lmbook.exercises.check("perplexity-factor", f)`. Why does the factor not depend on the loss before fine-tuning?
```

```{solution} ex-trainer-ppl
:class: dropdown
$e^{a} / e^{a - 0.7} = e^{0.7} \approx 2.01$: the perplexity halves. A difference of logs is a ratio, so only the drop matters.

    lmbook.exercises.check("perplexity-factor", math.exp(0.7))
```

```{exercise}
:label: ex-trainer-forgetting
Reduce the forgetting. Rerun the training with a learning rate of $3 \cdot 10^{-4}$ instead of $10^{-3}$, then with the old domain mixed in: add the house model's own training text (the first 90% of Tiny Shakespeare, grouped into blocks the same way) to `blocks["train"]` with `datasets.concatenate_datasets` and shuffle. Compare both held-out losses with those above.
```

```{solution} ex-trainer-forgetting
:class: dropdown
A smaller learning rate moves the weights less in 40 steps: the reviews improve less and Shakespeare suffers less. Mixing in old text keeps the old loss in the objective, so the model is pushed to keep both; with half the blocks from Shakespeare, the Shakespeare loss stays near where it was, at the cost of a smaller gain on the reviews in the same number of steps. Which trade is right depends on what the model is for.
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters/05-practice/fine-tuning-with-trainer.ipynb"
    )
)
