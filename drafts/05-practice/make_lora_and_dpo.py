# ruff: noqa: E501  (prose and LaTeX lines of the chapter)
"""Writes chapters/05-practice/lora-and-dpo.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-lora-and-dpo)=
# LoRA and preference optimisation

A pretrained language model continues text the way its training data did. To make it behave differently, answer in a certain style, prefer some replies to others, one fine-tunes it. Two obstacles stand in the way. The first is cost: {term}`fine-tuning` every weight with AdamW keeps, for each weight, its gradient and two moment estimates, and Dettmers et al. note that regular 16-bit fine-tuning of a 65-billion-parameter LLaMA needs more than 780 GB of GPU memory {footcite}`dettmers2023qlora`. The second is the signal: for many behaviours nobody can write down the right answer, but people can say which of two answers is better.

This chapter takes one tool for each. {term}`LoRA` {footcite}`hu2022lora` freezes the pretrained weights and trains a low-rank update of some of its matrices; for GPT-3 it cut the trainable parameters 10,000-fold, and the result can be merged back into a plain model. The second tool, {term}`direct preference optimisation` (DPO) {footcite}`rafailov2023dpo`, trains on pairs of answers, one preferred, with a loss as simple as a logistic regression's, and yet optimises the same objective as {term}`reinforcement learning from human feedback` {footcite}`christiano2017rlhf,ouyang2022instructgpt`. Both are written here by hand, shown equal to the libraries that people use, Hugging Face's `peft` {footcite}`mangrulkar2022peft` and `trl` {footcite}`vonwerra2020trl`, and then used together: the book's house model learns to address its listeners as "my lord", from preference pairs whose property a line of code can check.

```{admonition} Learning goals
:class: tip
After this chapter you can

- write a LoRA layer, $W' = W + \tfrac{\alpha}{r} BA$, count its parameters, merge it into the weight and take it out again, and put adapters on the right rows of a model whose projections are fused;
- derive the optimal policy of the KL-regularised RLHF objective, the reward that a policy implies, and from them and the Bradley–Terry model the DPO loss;
- compute sequence log-probabilities and the DPO loss for a padded batch, and check them against TRL's `DPOTrainer`;
- train a LoRA adapter with DPO, with the frozen base model as the reference, and measure what changed: the implied reward margin on held-out pairs, the behaviour of samples, and the cost on ordinary text;
- say how GRPO differs from DPO.
```
""")

code(r"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # local folders only (before HF imports)

import math
import random
import re
import tempfile
import warnings

import datasets
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import transformers
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from torch.testing import assert_close
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import GPT, house_model_path
from lmbook.lora import (LoRALinear, apply_lora, count_parameters,
                         lora_disabled, lora_layers, merge_lora,
                         peft_state_dict)
from lmbook.preference import (collate_preferences, dpo_loss,
                               sequence_logprobs)

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()
datasets.disable_progress_bar()
plt.style.use("tableau-colorblind10")
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations
# One thread: for a model this small, two threads that wait for each other
# on a machine shared with other jobs can be many times slower.
torch.set_num_threads(1)
""")

md(r"""
## One model variable

Every cell uses the model named in `MODEL`: offline, and in the book's tests, the house model `shakespeare-bpe`, a 2.6-million-parameter model with Llama's block ({ref}`chap-modern-llm`), trained on the first 90% of Tiny Shakespeare with a byte-level BPE tokenizer of 1024 tokens. It loads into `lmbook.GPT` and into `transformers` from the same folder.

```{admonition} Running online: use a model from the Hub
:class: note
Set the environment variable `LMBOOK_MODEL` (or edit the cell) to run the chapter on a Hub model with Llama's layout, such as `HuggingFaceTB/SmolLM2-135M` (135M parameters, fits a free Colab session); remove the `HF_HUB_OFFLINE` line above so that it can be downloaded. The preference pairs are lines of Shakespeare and work with any model; the printed numbers will differ, the checks still hold, and training takes longer.
```
""")

code(r"""
MODEL = os.environ.get("LMBOOK_MODEL",
                       str(house_model_path("shakespeare-bpe")))
tokenizer = AutoTokenizer.from_pretrained(MODEL)
base = GPT.from_pretrained(MODEL).eval()
cfg = base.config
print(f"{os.path.basename(MODEL)}: {base.num_parameters():,} parameters, "
      f"{cfg.n_layer} layers, width {cfg.n_embd}, vocabulary {cfg.vocab_size}")
""")

md(r"""
(sec-lora)=
## LoRA by hand

Fine-tuning changes a weight matrix $W \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$ into $W + \Delta W$. Aghajanyan et al. {footcite}`aghajanyan2021intrinsic` found that fine-tuning needs far fewer directions than there are weights: optimising 200 parameters, projected at random into RoBERTa's full parameter space, reached 90% of the performance of full fine-tuning on the MRPC task. Hu et al. {footcite}`hu2022lora` drew the consequence for each matrix: learn $\Delta W$ directly as a product of rank at most $r$,

$$
W' = W + \frac{\alpha}{r} B A, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\quad B \in \mathbb{R}^{d_\text{out} \times r},
$$

with $W$ frozen. A layer computes $y = W x + \frac{\alpha}{r} B (A x)$: the input goes through the thin matrix $A$ to $r$ numbers, and $B$ maps them back. $A$ starts random and $B$ at zero, so the adapted model starts exactly as the pretrained one. The factor $\alpha / r$ keeps the size of the update comparable when $r$ changes, so that one learning rate serves several ranks; rsLoRA {footcite}`kalajdzievski2023rslora` argues for $\alpha/\sqrt{r}$ instead, which `peft` offers as `use_rslora=True`. The trainable numbers per matrix drop from $d_\text{in} d_\text{out}$ to $r(d_\text{in} + d_\text{out})$.

Written out, a LoRA layer is a dozen lines. This one wraps an `nn.Linear`:
""")

code(r"""
class TinyLoRA(nn.Module):
    # y = W x + (alpha / r) B A x, with W frozen
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base, self.scale = base.requires_grad_(False), alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T


torch.manual_seed(0)
linear = nn.Linear(192, 192, bias=False)
mine = TinyLoRA(linear, r=8, alpha=16)
x = torch.randn(4, 192)
assert_close(mine(x), linear(x))  # B = 0: the adapted layer is the base
nn.init.normal_(mine.B, std=0.02)  # pretend it was trained

lib = LoRALinear(linear, r=8, alpha=16)  # lmbook's, same weights
with torch.no_grad():
    lib.lora_A["default"].weight.copy_(mine.A)
    lib.lora_B["default"].weight.copy_(mine.B)
assert_close(lib(x), mine(x))
delta = lib.delta_weight()  # (alpha / r) B A
assert_close(lib(x), x @ (linear.weight + delta).T)
print(f"rank of the update: {torch.linalg.matrix_rank(delta)} (r = 8)")
""")

md(r"""
`lmbook.lora.LoRALinear` is the same layer with `peft`'s names and initialisation ({ref}`sec-lora-peft` checks it against `peft` on the whole model), and one addition for fused layers that the next section needs. Its forward pass:

```{literalinclude} ../../lmbook/lora.py
:language: python
:pyobject: LoRALinear.forward
```

How much does it save on the house model? The cell counts, for each projection of one block, the weights of the full matrix and of a rank-8 adapter, and checks the formula against the parameters `LoRALinear` creates.
""")

code(r"""
C, hs = cfg.n_embd, cfg.head_size
shapes = {  # Hugging Face's name: (d_out, d_in) of one block's projections
    "q_proj": (C, C), "k_proj": (cfg.n_kv_head * hs, C),
    "v_proj": (cfg.n_kv_head * hs, C), "o_proj": (C, C),
    "gate_proj": (cfg.n_inner, C), "up_proj": (cfg.n_inner, C),
    "down_proj": (C, cfg.n_inner),
}
r = 8
print(f"{'matrix':10s} {'shape':>10s} {'full':>7s} {'LoRA r=8':>9s}")
for name, (d_out, d_in) in shapes.items():
    lora = LoRALinear(nn.Linear(d_in, d_out, bias=False), r=r, alpha=16)
    assert count_parameters(lora)[0] == r * (d_in + d_out)
    print(f"{name:10s} {f'{d_out}x{d_in}':>10s} {d_out * d_in:7,} "
          f"{r * (d_in + d_out):9,}")
""")

md(r"""
(sec-lora-fused)=
## Adapters on fused layers

`lmbook`'s GPT keeps GPT-2's fused projections in every layout ({ref}`chap-modern-llm`): one matrix `attn.c_attn` computes the queries, keys and values, stacked by rows, and the SwiGLU MLP's `c_fc` computes the gate and the up projection side by side. Hugging Face's Llama keeps them apart as `q_proj`, `k_proj`, `v_proj` and `gate_proj`, `up_proj`, and `peft` puts one adapter on each separate matrix. An adapter on all of `c_attn` would be a different model: its $B$ would mix queries, keys and values. So `apply_lora` understands Hugging Face's names and gives each its own adapter on its rows of the fused matrix, $\Delta W_{\text{rows}} = \frac{\alpha}{r} B A$ with zeros elsewhere:

| Hugging Face | lmbook | rows |
|---|---|---|
| `q_proj`, `k_proj`, `v_proj` | `attn.c_attn` | $[0, C)$, then $n_\text{kv}\,d_h$ each |
| `o_proj` | `attn.c_proj` | all |
| `gate_proj`, `up_proj` | `mlp.c_fc` | first and second half |
| `down_proj` | `mlp.c_proj` | all |

The chapter adapts all seven projections of every block, as QLoRA recommends {footcite}`dettmers2023qlora`, with $r = 8$ and $\alpha = 16$. `apply_lora` freezes every other parameter; the token embedding, which the output layer shares, stays as it is.
""")

code(r"""
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj",
           "gate_proj", "up_proj", "down_proj"]
LORA = dict(r=8, alpha=16)
policy = apply_lora(GPT.from_pretrained(MODEL).eval(), TARGETS, **LORA)
print(policy.transformer.h[0].attn.c_attn)
trainable, total = count_parameters(policy)
print(f"trainable {trainable:,} of {total:,} ({100 * trainable / total:.1f}%)")
""")

md(r"""
(sec-lora-peft)=
## The same model in `peft`

`peft` adapts the Hugging Face model. Loaded from the same folder with `AutoModelForCausalLM` and wrapped with `get_peft_model`, it should have the same number of trainable parameters and, once it holds the same adapters, compute the same logits. Fresh adapters would prove little ($B = 0$ on both sides), so the cell first gives ours random values, as if trained; `peft_state_dict` renames them to `peft`'s keys (`...layers.0.self_attn.q_proj.lora_A.weight` for the query rows of `transformer.h.0.attn.c_attn`).
""")

code(r"""
peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                         target_modules=TARGETS, lora_dropout=0.0)
hf_model = AutoModelForCausalLM.from_pretrained(MODEL).eval()
peft_model = get_peft_model(hf_model, peft_config).eval()
assert count_parameters(policy) == peft_model.get_nb_trainable_parameters()
print("trainable, all:", peft_model.get_nb_trainable_parameters(), "in peft")

g = torch.Generator().manual_seed(0)
with torch.no_grad():  # random adapters, as if trained
    for _, layer in lora_layers(policy):
        for part in layer.parts:
            w = layer.lora_B[part].weight
            w.copy_(0.02 * torch.randn(w.shape, generator=g))
adapters = peft_state_dict(policy)
print(len(adapters), "tensors, e.g.", next(iter(adapters)))
result = set_peft_model_state_dict(peft_model, adapters)
assert not result.unexpected_keys

ids = tokenizer("ROMEO:\nWhat light through yonder window breaks?",
                return_tensors="pt")["input_ids"]
with torch.no_grad():
    ours = policy(ids)[0]
    theirs = peft_model(ids).logits
    with lora_disabled(policy):
        plain = policy(ids)[0]
assert_close(ours, theirs)
print("lmbook's LoRA GPT == peft's LoRA Llama: logits equal")
print(f"the adapters moved the logits by up to "
      f"{(ours - plain).abs().max():.1f}")
""")

md(r"""
Merging adds $\frac{\alpha}{r} BA$ into $W$, after which the model is a plain one again and runs at the speed of the base. `merge_lora(model, unload=False)` merges but keeps the wrappers, so that `unmerge` can subtract the update again; `peft`'s `merge_and_unload` merges its own copy. The merged matrices should agree, and unmerging should give back the pretrained weights up to float rounding.
""")

code(r"""
merge_lora(policy, unload=False)
with torch.no_grad():
    assert_close(policy(ids)[0], ours)  # merged: the same function
merged_hf = peft_model.merge_and_unload()
q_rows = policy.transformer.h[0].attn.c_attn.base_layer.weight[:C]
assert_close(q_rows, merged_hf.model.layers[0].self_attn.q_proj.weight)

pretrained = dict(base.named_parameters())
for name, layer in lora_layers(policy):
    layer.unmerge()
    assert_close(layer.base_layer.weight, pretrained[name + ".weight"])
with torch.no_grad():
    assert_close(policy(ids)[0], ours)
print("merge -> same logits; merged q_proj == peft's; unmerge -> W again")
""")

md(r"""
Generation in `lmbook` runs through the model's own modules, KV cache included ({ref}`chap-decoding`), so the wrapped layers see every step and cached generation must pick the same tokens as generation that recomputes everything:
""")

code(r"""
prompt = tokenizer("JULIET:\n", return_tensors="pt")["input_ids"]
runs = [policy.generate(prompt, 30, temperature=0.0, use_cache=c)
        for c in (True, False)]
assert torch.equal(*runs)
print("cached == uncached through the adapters")
""")

md(r"""
(sec-dpo)=
## From RLHF to DPO

RLHF, as used for InstructGPT {footcite}`ouyang2022instructgpt`, has three stages: supervised fine-tuning, a {term}`reward model` $r(x, y)$ trained on human comparisons of answers $y$ to prompts $x$, and reinforcement learning (PPO) that maximises the reward without drifting far from the starting model $\pi_\text{ref}$:

$$
\max_{\pi}\; \mathbb{E}_{x,\; y \sim \pi(\cdot \mid x)} \big[ r(x, y) \big] - \beta\, \mathrm{KL}\big(\pi(\cdot \mid x) \,\|\, \pi_\text{ref}(\cdot \mid x)\big).
$$

The {term}`KL divergence` term keeps the policy close to the reference, so that it cannot drift into text that fools the reward model, and $\beta$ sets how close. Rafailov et al. {footcite}`rafailov2023dpo` start from a fact about this objective: for each prompt its maximum is known in closed form,

$$
\pi^*(y \mid x) = \frac{1}{Z(x)}\, \pi_\text{ref}(y \mid x)\, \exp\!\big(r(x, y)/\beta\big), \qquad Z(x) = \sum_y \pi_\text{ref}(y \mid x)\, \exp\!\big(r(x, y)/\beta\big).
$$

To see it, write the objective of one prompt as $\sum_y \pi(y) r(y) - \beta \sum_y \pi(y) \log \frac{\pi(y)}{\pi_\text{ref}(y)} = \beta \log Z - \beta\, \mathrm{KL}(\pi \,\|\, \pi^*)$: a constant minus a KL divergence, which is largest, $\beta \log Z$, at $\pi = \pi^*$. The cell checks it the slow way: it maximises the objective numerically (with L-BFGS) over the policies on six answers, and compares the maximiser with the formula.
""")

code(r"""
torch.manual_seed(0)
beta = 0.5
ref = torch.softmax(torch.randn(6, dtype=torch.float64), dim=0)
reward = torch.randn(6, dtype=torch.float64)


def objective(pi):  # E_pi[r] - beta KL(pi || ref)
    return (pi * reward).sum() - beta * (pi * (pi / ref).log()).sum()


def minus_objective():  # for L-BFGS, which minimises
    opt.zero_grad()
    loss = -objective(torch.softmax(logits, dim=0))
    loss.backward()
    return loss


logits = torch.zeros(6, dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([logits], max_iter=500, tolerance_grad=1e-12,
                        tolerance_change=0, line_search_fn="strong_wolfe")
opt.step(minus_objective)
found = torch.softmax(logits, dim=0).detach()
Z = (ref * torch.exp(reward / beta)).sum()
optimal = ref * torch.exp(reward / beta) / Z
assert_close(found, optimal, atol=1e-8, rtol=0)
assert_close(objective(optimal), beta * Z.log())
print("pi_ref:   ", [f"{p:.3f}" for p in ref.tolist()])
print("maximiser:", [f"{p:.3f}" for p in found.tolist()])
print("closed form pi_ref exp(r / beta) / Z: equal")
""")

md(r"""
Solved for the reward, the same equation says that any policy *implies* a reward, up to a term that depends on the prompt only:

$$
r(x, y) = \beta \log \frac{\pi^*(y \mid x)}{\pi_\text{ref}(y \mid x)} + \beta \log Z(x).
$$

The comparisons come in through the {term}`Bradley–Terry model` {footcite}`bradley1952rank`, which RLHF uses to train its reward model: the probability that people prefer $y_w$ to $y_l$ is $\sigma(r(x, y_w) - r(x, y_l))$, a function of the *difference* of the rewards. In that difference $\beta \log Z(x)$ cancels, and what is left depends on the policy alone. The cell checks the cancellation on the toy problem: every Bradley–Terry probability computed from the rewards equals the one computed from the implied rewards $\beta \log \pi^*/\pi_\text{ref}$, although the two kinds of reward differ by $\beta \log Z = $ a constant.
""")

code(r"""
implied = beta * (optimal / ref).log()
assert_close(reward - implied, (beta * Z.log()).expand(6))  # constant shift
bt_true = torch.sigmoid(reward[:, None] - reward[None, :])  # (6, 6)
bt_implied = torch.sigmoid(implied[:, None] - implied[None, :])
assert_close(bt_implied, bt_true)
print(f"reward - implied reward = beta log Z = {beta * Z.log():.3f} "
      f"for every answer; Bradley-Terry probabilities equal")
""")

md(r"""
So instead of fitting a reward model and then a policy to it, one can fit the policy directly by maximum likelihood of the observed preferences, with the policy's implied reward $\hat r_\theta(x, y) = \beta \log \frac{\pi_\theta(y \mid x)}{\pi_\text{ref}(y \mid x)}$ in the Bradley–Terry model. That is the **DPO loss**:

$$
\mathcal{L}_\text{DPO}(\theta) = -\,\mathbb{E}_{(x, y_w, y_l)} \log \sigma\!\left( \beta \log \frac{\pi_\theta(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)} - \beta \log \frac{\pi_\theta(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)} \right).
$$

Its gradient shows what it does:

$$
\nabla_\theta \mathcal{L}_\text{DPO} = -\beta\, \mathbb{E}\Big[ \sigma\big(\hat r_\theta(x, y_l) - \hat r_\theta(x, y_w)\big) \big( \nabla_\theta \log \pi_\theta(y_w \mid x) - \nabla_\theta \log \pi_\theta(y_l \mid x) \big) \Big]:
$$

raise the log-probability of the preferred answer, lower that of the other, and weight each pair by how wrongly the current implied rewards order it. A pair already ordered by a wide margin contributes almost nothing.

The log-probability of an answer is the sum of the log-probabilities of its tokens given the prompt and the tokens before them, the {term}`chain rule of probability`. `sequence_logprobs` computes it from a batch of logits and labels in Hugging Face's convention: labels are the input ids, not shifted, with $-100$ on the prompt and the padding, and the logits at position $t$ score the label at $t+1$. `dpo_loss` then needs four log-probabilities per pair:

```{literalinclude} ../../lmbook/preference.py
:language: python
:start-at: dtype = torch.promote_types
:end-at: return (token_logp
:dedent: 4
```

and, given the four $(B,)$ tensors `policy_chosen_logps`, `policy_rejected_logps`, `ref_chosen_logps` and `ref_rejected_logps`, after its argument checks `dpo_loss` computes

```{literalinclude} ../../lmbook/preference.py
:language: python
:start-at: chosen = policy_chosen_logps - ref_chosen_logps
:end-at: return loss, beta
:dedent: 4
```

The gradient formula can fail, so it is checked with autograd on four made-up pairs:
""")

code(r"""
torch.manual_seed(0)
logp = torch.randn(4, 4, dtype=torch.float64) * 3 - 20  # (4 logps, 4 pairs)
pc = logp[0].clone().requires_grad_()
pr = logp[1].clone().requires_grad_()
loss, chosen_r, rejected_r = dpo_loss(pc, pr, logp[2], logp[3], beta=0.1)
loss.backward()
weight = torch.sigmoid(rejected_r - chosen_r)  # how wrong the order is
assert_close(pc.grad, -0.1 * weight / 4)  # mean over the 4 pairs
assert_close(pr.grad, 0.1 * weight / 4)
print("gradient = -beta sigmoid(r_l - r_w) (grad log pi_w - grad log pi_l)")
""")

md(r"""
(sec-dpo-data)=
## Preference pairs you can check

Human preferences are expensive and hard to verify, so the chapter makes its own, with a property that a line of code can check: **the preferred line addresses the listener as "my lord"**. The cell below counts how rare that is in the play itself. The pairs are minimal: the rejected answer is the real first line of a speech, the chosen one is the same line with ", my lord" before its final punctuation. The prompt is the speaker's name, `ROMEO:` and a newline, as the play writes it. With nothing else different, the only thing to learn is the preference.

The house model was trained on the first 90% of the text. Pairs from it train; pairs from the last 10%, which the model never saw, are held out.
""")

code(r"""
text = lmbook.load_text("tinyshakespeare")
split = int(0.9 * len(text))  # the house model trained on text[:split]


def first_lines(part):
    # (speaker prompt, first line) of every speech
    for speech in part.split("\n\n"):
        lines = speech.split("\n")
        if len(lines) > 1 and re.fullmatch(r"[A-Z][A-Za-z' ]*:", lines[0]):
            yield lines[0] + "\n", lines[1]


def add_my_lord(line):
    body, end = re.fullmatch(r"(.*?)([.,;:!?]*)", line).groups()
    return f"{body}, my lord{end}"


def make_pairs(part):
    return [dict(prompt=p, chosen=add_my_lord(line), rejected=line)
            for p, line in first_lines(part) if "lord" not in line.lower()]


def has_my_lord(line):
    return "my lord" in line.lower()


opening = [line for _, line in first_lines(text)]
share = sum(map(has_my_lord, opening)) / len(opening)
print(f"{len(opening)} speeches; {100 * share:.1f}% open with 'my lord'")
train_pairs, held_pairs = make_pairs(text[:split]), make_pairs(text[split:])
print(f"{len(train_pairs)} training pairs, {len(held_pairs)} held out")
for pair in train_pairs[:2]:
    print(pair)
""")

md(r"""
The tokenizer has no special tokens at all: no end-of-sequence and no padding token. Each answer is one line, so the newline ends it: the completions are tokenized with their `"\n"`, and the model learns where a line addressed to a lord stops. For batches, `collate_preferences` lays the pairs out as TRL does, chosen completions in the first half of the rows and rejected ones in the second, pads on the right with id 0, and sets the labels of prompt and padding to $-100$. A causal model needs no attention mask for right padding: no real token sees a pad. Pad logits are computed and thrown away.
""")

code(r"""
def encode(pairs):
    tok = lambda key, end="": [tokenizer(p[key] + end)["input_ids"]
                               for p in pairs]
    return collate_preferences(tok("prompt"), tok("chosen", "\n"),
                               tok("rejected", "\n"))


input_ids, labels = encode(train_pairs[:2])
print(tuple(input_ids.shape), "= (2 chosen + 2 rejected rows, tokens)")
print(tokenizer.convert_ids_to_tokens(input_ids[0]))
print(labels[0].tolist())
""")

md(r"""
(sec-dpo-train)=
## Training with DPO

Now fresh adapters, $B = 0$, so that the policy starts as the reference; the reference log-probabilities come from the same model with its adapters disabled, at no extra memory. AdamW trains only the adapters, 40 steps of 8 pairs at a learning rate of $5 \cdot 10^{-4}$. Dropout stays off (evaluation mode), so the reference is deterministic. $\beta = 0.5$, larger than TRL's default of 0.1: the loss is nearly satisfied once the implied reward margin $\beta \log \frac{\pi_\theta(y_w)\,\pi_\text{ref}(y_l)}{\pi_\text{ref}(y_w)\,\pi_\theta(y_l)}$ is a few units, so a larger $\beta$ lets the policy stop closer to the reference. The loop records the loss and the batch's mean reward margin at each step.
""")

code(r"""
BETA, STEPS, BATCH = 0.5, 40, 8
lmbook.set_seed(0)
policy = apply_lora(GPT.from_pretrained(MODEL).eval(), TARGETS, **LORA)
optimizer = torch.optim.AdamW(
    [p for p in policy.parameters() if p.requires_grad], lr=5e-4,
    weight_decay=0.0)
order = random.Random(0).sample(range(len(train_pairs)), STEPS * BATCH)
history = []
for step in tqdm(range(STEPS)):
    pairs = [train_pairs[i] for i in order[step * BATCH:(step + 1) * BATCH]]
    input_ids, labels = encode(pairs)
    with torch.no_grad(), lora_disabled(policy):
        ref_logps = sequence_logprobs(policy(input_ids)[0], labels)
    logps = sequence_logprobs(policy(input_ids)[0], labels)
    loss, chosen_r, rejected_r = dpo_loss(
        logps[:BATCH], logps[BATCH:], ref_logps[:BATCH], ref_logps[BATCH:],
        beta=BETA)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history.append((loss.item(), (chosen_r - rejected_r).mean().item()))
late = sum(h[0] for h in history[-20:]) / 20
assert late < 0.1
print(f"loss {history[0][0]:.3f} at step 0 (ln 2 = {math.log(2):.3f}), "
      f"below 0.1 over the last 20 steps")
""")

code(
    r"""
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.8, 2.8))
ax1.plot([h[0] for h in history])
ax1.axhline(math.log(2), color="gray", ls="--", lw=1)
ax1.set(xlabel="step", ylabel="DPO loss", title="loss")
ax2.plot([h[1] for h in history], color="C1")
ax2.set(xlabel="step", ylabel="chosen - rejected", title="reward margin")
fig.tight_layout()
plt.show()
""",
    alt="Two line charts over 40 training steps. Left: the DPO loss starts "
    "at ln 2, about 0.69 (dashed line), and falls quickly towards 0. "
    "Right: the mean implied reward margin of each batch starts at 0 "
    "and rises, noisily, to a few units.",
    caption="DPO training of the LoRA adapters: the loss of each batch of 8 "
    "pairs (ln 2 dashed) and its mean implied reward margin.",
    name="fig-dpo-training",
)

md(r"""
(sec-dpo-results)=
## What changed

**Held-out pairs.** The implied rewards $\beta \log \pi_\theta/\pi_\text{ref}$ of the chosen and rejected lines of held-out pairs measure what DPO optimised, on lines it never trained on. Before training every implied reward is 0, since the policy is the reference, so no pair is ordered at all. The reference model's raw log-probabilities do order the pairs, the other way round: the chosen line has three more tokens (`,`, ` my`, ` lord`), each with a probability below 1, and the reference gives it the higher log-probability in only a few pairs. DPO measures each answer against the reference, so this bias towards short answers cancels.
""")

code(r"""
@torch.no_grad()
def pair_logps(model, pairs, batch=32):
    # log pi(chosen), log pi(rejected): two (N,) tensors
    out = []
    for i in range(0, len(pairs), batch):
        input_ids, labels = encode(pairs[i:i + batch])
        out.append(sequence_logprobs(model(input_ids)[0], labels).view(2, -1))
    return torch.cat(out, dim=1)


held = held_pairs[:256]
policy_c, policy_r = pair_logps(policy, held)
with lora_disabled(policy):
    ref_c, ref_r = pair_logps(policy, held)
_, chosen_r, rejected_r = dpo_loss(policy_c, policy_r, ref_c, ref_r, BETA)
margin = chosen_r - rejected_r
print(f"{len(held)} held-out pairs")
print(f"reference prefers the chosen line: "
      f"{100 * (ref_c > ref_r).float().mean():.0f}%")
print(f"after DPO: mean implied reward margin {margin.mean():.1f}, "
      f"chosen ranked first in {100 * (margin > 0).float().mean():.0f}%")
""")

md(r"""
After training, every held-out pair is ordered the preferred way, with a wide margin: the implied reward of the chosen line exceeds that of the rejected one by about 4, so the model gives the chosen line about $e^{4/\beta} = e^{8}$ times more probability, relative to the rejected one, than the reference did.

**Behaviour.** The pairs never showed the model a line it wrote itself, so the real test is what it writes now. For each of the first 200 held-out prompts the cell samples one line, at temperature 1, before (adapters disabled) and after training, with the same seed, and counts the lines that contain "my lord".
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (sampled text: one token drawn differently on another CPU changes a line)
def sample_lines(model, prompts, seed, max_new_tokens=24):
    gen = torch.Generator().manual_seed(seed)
    by_length = {}  # lmbook's generate takes prompts of one length at a time
    for p in prompts:
        ids = tokenizer(p)["input_ids"]
        by_length.setdefault(len(ids), []).append(ids)
    lines = []
    for n, group in sorted(by_length.items()):
        out = model.generate(torch.tensor(group), max_new_tokens,
                             generator=gen)
        lines += [tokenizer.decode(row[n:]).split("\n")[0]
                  for row in out.tolist()]
    return lines


prompts = [p["prompt"] for p in held_pairs[:200]]
with lora_disabled(policy):
    before = sample_lines(policy, prompts, seed=0)
after = sample_lines(policy, prompts, seed=0)
hits = {}
for name, lines in (("before", before), ("after", after)):
    hits[name] = sum(map(has_my_lord, lines))
    repeats = sum(line.lower().count("my lord") > 1 for line in lines)
    print(f"{name}: {hits[name]} of {len(lines)} lines contain 'my lord', "
          f"{repeats} more than once")
# the claim of the text, robust to a few differently sampled lines
assert hits["after"] > 5 * hits["before"] and hits["after"] > 100
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (sampled text, as above)
for b, a in list(zip(before, after))[:4]:
    print(f"before: {b}\nafter:  {a}\n")
""")

md(r"""
In the run printed above, 12 of the 200 sampled lines say "my lord" before training, a little more often than the play's own openings (4.2%); after 40 steps, 164 do. (Sampling draws one token at a time, so another CPU, rounding a probability differently, may print somewhat different counts; the cell checks only that the jump is more than fivefold.) Many of the new lines are what the pairs asked for, a line of the play's kind ending in ", my lord". But 62 say it more than once, although no chosen line in the data did: nothing in the implied reward says "once is enough", and the cheapest way to look like the chosen lines is to say "my lord" often. This is a small instance of what Gao et al. {footcite}`gao2023overoptimization` measured in RLHF at scale: optimising a proxy of a preference too hard keeps raising the proxy, while the true preference, past a point, gets worse.
""")

md(r"""
**The cost.** The KL term of the objective asks the policy to stay close to the reference, and DPO inherits it through $\beta$. One measure of closeness is what the model lost on ordinary text: the cross-entropy of the held-out part of the play (its first 128 windows of 128 tokens), before and after.
""")

code(r"""
val_ids = torch.tensor(tokenizer(text[split:])["input_ids"])
n = 128  # the first 128 windows of 128 tokens
x = val_ids[:n * 128].view(n, 128)
y = val_ids[1:n * 128 + 1].view(n, 128)


@torch.no_grad()
def held_out_loss(model, batch=32):  # mean cross-entropy over all windows
    losses = [model(x[i:i + batch], y[i:i + batch])[1] * len(x[i:i + batch])
              for i in range(0, n, batch)]
    return (sum(losses) / n).item()


after_loss = held_out_loss(policy)
with lora_disabled(policy):
    before_loss = held_out_loss(policy)
print(f"held-out cross-entropy over {n} windows: {before_loss:.2f} before, "
      f"{after_loss:.2f} after DPO (nats per token)")
""")

md(r"""
(sec-dpo-trl)=
## The same loss in TRL

TRL's `DPOTrainer` tokenizes, collates and computes the loss itself. The chapter trained with its own `dpo_loss`; does TRL agree? It gets the Hugging Face model and the same LoRA configuration, and `set_peft_model_state_dict` loads the trained adapters into its `peft` model. Its reference model is then the base model with the adapters switched off, as in our `lora_disabled`. Three settings matter: TRL needs an end-of-sequence and a padding token, so the newline's byte-level token `Ċ` (id 10) is registered as both, which appends a newline to each completion exactly as `encode` does; `bf16=False`, since TRL otherwise runs the forward passes in bfloat16 autocast, on a CPU too; and the trainer is put in evaluation mode, as dropout would make its loss random. One batch of its data loader goes through `compute_loss` and through our functions.
""")

code(r"""
trl_tokenizer = AutoTokenizer.from_pretrained(MODEL)
trl_tokenizer.add_special_tokens({"eos_token": "Ċ", "pad_token": "Ċ"})
assert trl_tokenizer.eos_token_id == tokenizer("\n")["input_ids"][0]
args = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8,
                 beta=BETA, bf16=False, activation_checkpointing=False,
                 report_to="none", use_cpu=True, save_strategy="no")
trainer = DPOTrainer(
    model=AutoModelForCausalLM.from_pretrained(MODEL), args=args,
    train_dataset=datasets.Dataset.from_list(held_pairs[:64]),
    processing_class=trl_tokenizer, peft_config=peft_config)
set_peft_model_state_dict(trainer.model, peft_state_dict(policy))
batch = next(iter(trainer.get_train_dataloader()))
trainer.model.eval()
with torch.no_grad():
    trl_loss = trainer.compute_loss(trainer.model, batch)
trl_margin = trainer._metrics["eval"]["rewards/margins"][-1]

labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
with torch.no_grad():
    logps = sequence_logprobs(policy(batch["input_ids"])[0], labels)
    with lora_disabled(policy):
        ref_logps = sequence_logprobs(policy(batch["input_ids"])[0], labels)
B = len(logps) // 2
loss, chosen_r, rejected_r = dpo_loss(logps[:B], logps[B:], ref_logps[:B],
                                      ref_logps[B:], beta=BETA)
assert_close(loss, trl_loss)
assert_close((chosen_r - rejected_r).mean(), torch.tensor(trl_margin))
print(f"DPO loss on TRL's batch: ours {loss:.3f}, TRL {trl_loss:.3f}")
""")

md(r"""
(sec-grpo)=
## Beyond DPO: GRPO

DPO is *offline*: it learns from a fixed set of pairs and never looks at what the policy writes during training. When the quality of an answer can be checked by a program, as here, or as the correctness of a maths answer can, one can instead sample from the policy and reward it directly. GRPO, group relative policy optimisation {footcite}`shao2024deepseekmath`, does this without the value network that PPO needs: for each prompt it samples a group of $G$ answers, scores them, and uses each answer's reward relative to its group, $A_i = (r_i - \operatorname{mean}(r))/\operatorname{std}(r)$, as the advantage in a clipped policy-gradient step, with a KL penalty towards the reference model. It was introduced with DeepSeekMath to train mathematical reasoning, and TRL implements it as `GRPOTrainer`. Compared with DPO it needs a reward function and costs a round of sampling per step, but it learns from the policy's own outputs. {ref}`ex-grpo-advantage` computes one advantage, and {ref}`ex-grpo-own` runs GRPO on the house model.

## Summary

- LoRA freezes $W$ and learns $\Delta W = \frac{\alpha}{r} BA$ with $B = 0$ at the start: $r(d_\text{in} + d_\text{out})$ numbers per matrix instead of $d_\text{in} d_\text{out}$. All seven projections of the house model at $r = 8$ are 162,816 trainable parameters, 6% of the model; for large models the share is far smaller ({ref}`ex-lora-params`).
- On a model with fused projections, each Hugging Face projection gets its own adapter on its rows of the fused matrix. `lmbook`'s LoRA GPT then computes the same logits as `peft` on the Hugging Face model, has the same number of trainable parameters, and merges and unmerges to the same weights.
- The KL-regularised RLHF objective has the optimal policy $\pi^* \propto \pi_\text{ref} \exp(r/\beta)$; any policy implies a reward $\beta \log \pi/\pi_\text{ref}$ up to a prompt-dependent constant, which cancels in the Bradley–Terry probability. Maximum likelihood of the preferences is then the DPO loss, $-\log\sigma(\hat r_w - \hat r_l)$, whose gradient weighs each pair by how wrongly it is ordered.
- Our `sequence_logprobs` and `dpo_loss` give TRL's loss on TRL's own batch. With LoRA, the reference model is the same network with its adapters switched off.
- 40 steps of DPO on minimal pairs taught the house model to address its listeners as "my lord": every held-out pair ordered the preferred way, sampled lines with "my lord" up from 12 to 164 of 200, at a cost of 0.18 nats per token on the held-out text. 62 of those lines say it more than once, which no example did: the preference was over-optimised.
- GRPO replaces the fixed pairs by groups of sampled answers scored by a reward function, with group-normalised rewards as advantages.

## Exercises

```{exercise}
:label: ex-lora-params
A 7B Llama has 32 layers of width 4096 (multi-head attention, so `q_proj` and `v_proj` are $4096 \times 4096$). How many trainable parameters does LoRA with $r = 8$ on `q_proj` and `v_proj` add? (Of the attention matrices, the LoRA paper found this pair the best to adapt under a fixed budget {footcite}`hu2022lora`.) Check with `lmbook.exercises.check("lora-trainable-params", n)`. What fraction of 6.7 billion is it?
```

```{solution} ex-lora-params
:class: dropdown
Each adapted matrix gets $r(d_\text{in} + d_\text{out}) = 8 \cdot 8192 = 65{,}536$ parameters; two per layer and 32 layers give $4{,}194{,}304$, about 0.06% of the model.

    n = 32 * 2 * 8 * (4096 + 4096)
    lmbook.exercises.check("lora-trainable-params", n)
```

```{exercise}
:label: ex-dpo-value
A pair has log-probabilities $-42.0$ (chosen) and $-47.5$ (rejected) under the policy, and $-44.0$ and $-45.0$ under the reference. What is the DPO loss with $\beta = 0.1$? Check with `lmbook.exercises.check("dpo-loss-value", loss)`. Would the loss change if both reference log-probabilities were 3 nats lower?
```

```{solution} ex-dpo-value
:class: dropdown
The implied rewards are $0.1 \cdot (-42 + 44) = 0.2$ and $0.1 \cdot (-47.5 + 45) = -0.25$, a margin of $0.45$, so the loss is $-\log \sigma(0.45) = \log(1 + e^{-0.45}) \approx 0.493$. Lowering both reference log-probabilities by 3 raises both rewards by 0.3 and leaves the margin, and so the loss, unchanged: only differences matter, as in the Bradley–Terry model.

    loss, _, _ = dpo_loss(torch.tensor([-42.0]), torch.tensor([-47.5]),
                          torch.tensor([-44.0]), torch.tensor([-45.0]),
                          beta=0.1)
    lmbook.exercises.check("dpo-loss-value", loss.item())
```

```{exercise}
:label: ex-dpo-optimal
A reference policy gives three answers the probabilities $(0.5, 0.3, 0.2)$, and a reward model scores them $(0, 1, 2)$. What probability does the optimal policy of the KL-regularised objective give the third answer when $\beta = 0.5$? Check with `lmbook.exercises.check("dpo-optimal-policy", p)`. What happens as $\beta \to 0$ and as $\beta \to \infty$?
```

```{solution} ex-dpo-optimal
:class: dropdown
$\pi^* \propto \pi_\text{ref}\, e^{r/\beta} = (0.5,\ 0.3 e^{2},\ 0.2 e^{4}) \approx (0.5, 2.217, 10.920)$, so $\pi^*(y_3) = 10.920 / 13.636 \approx 0.801$. As $\beta \to 0$ the policy puts all its mass on the best answer (the KL term no longer holds it back); as $\beta \to \infty$ it stays at $\pi_\text{ref}$.

    ref = torch.tensor([0.5, 0.3, 0.2])
    p = torch.softmax(ref.log() + torch.tensor([0.0, 1.0, 2.0]) / 0.5, 0)
    lmbook.exercises.check("dpo-optimal-policy", p[2].item())
```

```{exercise}
:label: ex-grpo-advantage
GRPO samples 8 lines for a prompt and rewards those that contain "my lord": the rewards are $(1, 0, 0, 1, 0, 0, 0, 0)$. What is the advantage of the first line, with the group's standard deviation computed as TRL's `GRPOTrainer` does (Bessel-corrected, plus $10^{-4}$)? Check with `lmbook.exercises.check("grpo-advantage", a)`. What advantage does every line get when all 8 are rewarded?
```

```{solution} ex-grpo-advantage
:class: dropdown
The mean is $0.25$ and the standard deviation $\sqrt{(2 \cdot 0.75^2 + 6 \cdot 0.25^2)/7} \approx 0.463$, so $A_1 = 0.75 / 0.463 \approx 1.62$. When every line is rewarded, every reward equals the mean and every advantage is 0: a group that is all right (or all wrong) teaches nothing, which is why GRPO needs prompts of the right difficulty.

    r = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0])
    a = (r[0] - r.mean()) / (r.std() + 1e-4)
    lmbook.exercises.check("grpo-advantage", a.item())
```

```{exercise}
:label: ex-dpo-own
Change the preference: prefer lines that end with "!", or lines of at most five words, or rank the lines by any other property a program can check. Build minimal pairs for it, train with the loop of {ref}`sec-dpo-train`, and measure the held-out margin and the share of sampled lines with the property. Then try $\beta = 0.5$ and $\beta = 0.02$: what happens to the held-out cross-entropy?
```

```{solution} ex-dpo-own
:class: dropdown
Replace `add_my_lord` and `has_my_lord` by the new property, and keep everything else. A larger $\beta$ keeps the policy closer to the reference: the margins grow more slowly, the behaviour changes less and the held-out cross-entropy barely moves. A small $\beta$ lets the policy move further for the same loss, which changes the behaviour faster and costs more on ordinary text.
```

```{exercise}
:label: ex-grpo-own
Train the house model with GRPO instead, on the same property. For each of 8 prompts per step, sample $G = 8$ lines from the LoRA policy with `generate`, give each the reward 1 if it contains "my lord" and 0 otherwise, compute the advantages of {ref}`ex-grpo-advantage`, and minimise $-\frac{1}{G}\sum_i A_i \log \pi_\theta(y_i \mid x)$ plus $\beta$ times an estimate of the KL divergence to the reference (adapters disabled). How many steps does it need to reach the share of "my lord" that DPO reached, how long do they take, and does it also repeat "my lord"?
```

```{solution} ex-grpo-own
:class: dropdown
`sequence_logprobs` gives $\log \pi_\theta(y_i \mid x)$ for the sampled lines once they are collated like completions (the prompt's labels set to $-100$). With a single gradient step per batch of samples, GRPO's clipped ratio equals 1 and its gradient is that of $-\frac{1}{G}\sum_i \frac{A_i}{|y_i|} \log \pi_\theta(y_i \mid x)$: GRPO also averages over the $|y_i|$ tokens of each answer, which the exercise's simpler loss does not; DeepSeekMath's KL estimate per token is $\pi_\text{ref}/\pi_\theta - \log(\pi_\text{ref}/\pi_\theta) - 1$. Each step costs $8 \times 8$ sampled lines plus a forward and backward pass, several times one DPO step. Since the reward counts "my lord" only once, GRPO has no reason to repeat it, but nothing stops the policy from shortening every line to "My lord." unless the KL term does; watch the held-out cross-entropy.
```

## References

```{footbibliography}
```
""")

nb.write(
    str(Path(__file__).resolve().parents[2] / "chapters/05-practice/lora-and-dpo.ipynb")
)
