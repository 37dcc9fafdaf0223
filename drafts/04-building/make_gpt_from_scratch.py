"""Writes chapters/04-building/gpt-from-scratch.ipynb."""
import nbformat as nbf

cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text.strip("\n")))


def code(text, tags=None, alt=None, caption=None, name=None):
    text = text.strip("\n")
    if text.startswith("# NBVAL_IGNORE_OUTPUT"):
        # nbval's marker must be a line of its own: use its cell tag instead
        first, _, rest = text.partition("\n")
        reason = first.removeprefix("# NBVAL_IGNORE_OUTPUT").strip(" ()")
        text = f"# Output not compared by the tests:\n# {reason}.\n{rest}"
        tags = [*(tags or []), "nbval-ignore-output"]
    c = nbf.v4.new_code_cell(text)
    if tags:
        c.metadata["tags"] = tags
    if alt:
        c.metadata["mystnb"] = {"image": {"alt": alt},
                                "figure": {"caption": caption, "name": name}}
    cells.append(c)


code('''
# Colab and Binder set-up: install lmbook if missing, then fix the seeds.
try:
    import lmbook
except ImportError:  # on Colab
    %pip install -q "lmbook[hf,widgets] @ git+https://github.com/lmbook/lmbook"
    import lmbook
lmbook.set_seed(0)
''', tags=["remove-cell"])

md(r'''
(chap-gpt-from-scratch)=
# GPT from scratch

{ref}`chap-transformer-block` assembled one block. A GPT {footcite}`radford2018gpt,radford2019gpt2` is that block repeated, with a token embedding and a position embedding in front and a linear layer that turns the last hidden state into next-token logits behind. This chapter writes the whole model in about forty lines, shows that its logits equal `lmbook.gpt.GPT`'s and Hugging Face's `GPT2LMHeadModel`'s with the same weights, counts its parameters and its training FLOPs per token, trains it on Tiny Shakespeare with nanoGPT's CPU recipe {footcite}`karpathy2022nanogpt`, and finally compares its samples with those of the book's pretrained house model, `shakespeare-char`.

```{admonition} Learning goals
:class: tip
After this chapter you can
- write a decoder-only Transformer language model from embeddings to logits, and check it against a reference implementation weight for weight;
- count a GPT's parameters from its shape, and its training compute as about $6N$ FLOPs per token, and check both in code;
- train a character GPT with a standard recipe (AdamW, warmup and cosine decay, clipping) and read its loss;
- load a pretrained checkpoint with `transformers` or `lmbook` and sample from it.
```
''')

code('''
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, AutoTokenizer

import lmbook
from lmbook.attention import scaled_dot_product_attention
from lmbook.batching import TokenBatchSampler
from lmbook.gpt import GPT, GPTConfig
from lmbook import speedrun
from lmbook.pretrained import house_model_path
from lmbook.tokenizers import CharTokenizer
from lmbook.train import TrainConfig, Trainer

plt.style.use("tableau-colorblind10")
device = lmbook.get_device()  # a GPU when there is one; outputs agree on CPU
''')

md(r'''
(sec-gpt-assemble)=
## The model in forty lines

For a batch of token ids $x \in \{0,\dots,V-1\}^{B\times T}$, GPT-2 computes

$$
h_0 = W_E[x] + W_P[0{:}T], \qquad
h_\ell = \operatorname{Block}_\ell(h_{\ell-1}) \;\; (\ell = 1..L), \qquad
\text{logits} = \operatorname{LN}_f(h_L)\, W_E^\top,
$$

where each block is $h \leftarrow h + \operatorname{Attn}(\operatorname{LN}_1(h))$, then $h \leftarrow h + \operatorname{MLP}(\operatorname{LN}_2(h))$, with causal attention so that position $t$ sees positions $0..t$ only. The output layer reuses the embedding matrix $W_E$ ("weight tying", {footcite}`press2017tying`). Below, every part is written out, with names a first reader can follow; the attention is `lmbook.attention.scaled_dot_product_attention`, the formula of {ref}`chap-attention-math`.
''')

code('''
class TinyBlock(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)   # queries, keys, values
        self.out = nn.Linear(d_model, d_model)       # W^O
        self.ln_2 = nn.LayerNorm(d_model)
        self.up = nn.Linear(d_model, 4 * d_model)
        self.down = nn.Linear(4 * d_model, d_model)

    def attention(self, x):                           # x: (B, T, C)
        B, T, C = x.shape
        heads = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads)
        q, k, v = heads.permute(2, 0, 3, 1, 4)        # each (B, nh, T, hs)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        context, _ = scaled_dot_product_attention(q, k, v, mask=causal)
        return self.out(context.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.down(F.gelu(self.up(self.ln_2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_heads, d_model):
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, d_model)   # W_E
        self.pos_emb = nn.Embedding(block_size, d_model)     # W_P
        self.blocks = nn.ModuleList(
            [TinyBlock(d_model, n_heads) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, idx):                                  # (B, T)
        positions = torch.arange(idx.shape[1], device=idx.device)
        h = self.token_emb(idx) + self.pos_emb(positions)    # (B, T, C)
        for block in self.blocks:
            h = block(h)
        return self.ln_f(h) @ self.token_emb.weight.T        # (B, T, V)
''')

md(r'''
`lmbook.gpt.GPT` is the same model with GPT-2's parameter names (`wte`, `wpe`, `c_attn`, `c_proj`, `c_fc`, ...), a key/value cache for generation and the switches of {ref}`chap-modern-llm`. Copying the teaching model's weights into it, name by name, must give the same logits; so must Hugging Face's `GPT2LMHeadModel`, which `to_hf()` builds from the same weights (its `Conv1D` layers store matrices transposed, which `to_hf` handles).
''')

code('''
torch.manual_seed(0)
tiny = TinyGPT(vocab_size=65, block_size=64, n_layer=2, n_heads=4,
               d_model=64).eval()
config = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4,
                   n_embd=64)
gpt = GPT(config).eval()
names = {"token_emb": "transformer.wte", "pos_emb": "transformer.wpe",
         "blocks": "transformer.h", "ln_f": "transformer.ln_f",
         "qkv": "attn.c_attn", "out": "attn.c_proj",
         "up": "mlp.c_fc", "down": "mlp.c_proj"}
state = {}
for key, value in tiny.state_dict().items():
    for ours, theirs in names.items():
        key = key.replace(ours, theirs)
    state[key] = value
state["lm_head.weight"] = state["transformer.wte.weight"]  # tied
gpt.load_state_dict(state)

idx = torch.randint(0, 65, (2, 50))
with torch.no_grad():
    logits_tiny = tiny(idx)
    logits_lmbook = gpt(idx)[0]
    logits_hf = gpt.to_hf().eval()(idx).logits
torch.testing.assert_close(logits_tiny, logits_lmbook, atol=1e-5, rtol=1e-4)
torch.testing.assert_close(logits_hf, logits_lmbook, atol=1e-5, rtol=1e-4)
print("TinyGPT == lmbook.gpt.GPT == transformers.GPT2LMHeadModel:",
      tuple(logits_lmbook.shape))
''')

md(r'''
(sec-gpt-count)=
## Parameters and FLOPs

Each block has four weight matrices: $W_{qkv}$ ($C \times 3C$), $W^O$ ($C\times C$), and the MLP's $C \times 4C$ and $4C \times C$, so $12C^2$ weights, plus $13C$ biases and LayerNorm parameters. The embeddings add $VC + T_{\max}C$, and the final LayerNorm $2C$:

$$
N = L\,(12C^2 + 13C) + VC + T_{\max}C + 2C .
$$

For GPT-2 small ($L=12$, $C=768$, $V=50\,257$, $T_{\max}=1024$) that is 124M, of which 85M are outside the embeddings, the number scaling laws use {footcite}`kaplan2020scaling`.
''')

code('''
def gpt_parameters(L, C, V, T_max):
    return L * (12 * C**2 + 13 * C) + V * C + T_max * C + 2 * C


for name in ("gpt2", "gpt2-medium"):
    c = GPTConfig.from_preset(name)
    with torch.device("meta"):                      # shapes only, no memory
        model = GPT(c)
    n = gpt_parameters(c.n_layer, c.n_embd, c.vocab_size, c.block_size)
    assert n == model.num_parameters()
    print(f"{name:12s} {n / 1e6:6.1f}M parameters,"
          f" {model.num_parameters(exclude_embeddings=True) / 1e6:6.1f}M"
          " without embeddings")
''')

md(r'''
Training costs about $6N$ floating-point operations per token {footcite}`kaplan2020scaling`: a matrix with $n$ weights applied to one token is $n$ multiplications and $n$ additions, $2n$ FLOPs, in the forward pass, and the backward pass computes two products of the same size (the gradient with respect to the input and with respect to the weights), another $4n$. So the count is "6 per weight that takes part in a matrix product", which here means the block matrices and the output layer; the embedding lookups are not products. Attention adds the products $QK^\top$ and $AV$, which have no weights: $2 \cdot 2 T C$ FLOPs per token and layer forward, or $12\,L\,T\,C$ for forward and backward together when the causal half is not skipped. PyTorch's `FlopCounterMode` counts the FLOPs of every matrix product actually run, so both parts can be checked.
''')

code('''
model = GPT(GPTConfig.from_preset("gpt-micro", vocab_size=65, block_size=64))
x = torch.randint(0, 65, (12, 64))
with FlopCounterMode(display=False) as counter:     # forward and backward
    model(x, x)[1].backward()
weights_in_products = (model.num_parameters(exclude_embeddings=True)
                       - sum(p.numel() for n, p in model.named_parameters()
                             if n.endswith("bias") or ".ln_" in n)
                       + model.lm_head.weight.numel())
per_token = counter.get_total_flops() / x.numel()
print(f"counted {per_token:,.0f} FLOPs/token; 6 x {weights_in_products:,}"
      f" weights = {6 * weights_in_products:,}")
assert per_token == 6 * weights_in_products  # fused attention is not counted

q = k = v = torch.randn(12, 4, 64, 32, requires_grad=True)  # one layer's heads
with FlopCounterMode(display=False) as counter:
    scaled_dot_product_attention(q, k, v)[0].sum().backward()
T, C = 64, 128
print(f"attention, one layer: {counter.get_total_flops() / (12 * T):,.0f}"
      f" FLOPs/token = 12 T C = {12 * T * C:,}")
''')

md(r'''
The first count matches $6N$ exactly: PyTorch's fused attention kernel on the CPU is not among the operations the counter knows, so it counted only the weight products. The second count, with attention written as two explicit products, matches $12TC$ per layer. For this small model with $T=64$ the attention products add $4 \cdot 12 \cdot 64 \cdot 128 \approx 0.39$M FLOPs per token to the 4.8M of the weights; for GPT-2 small at $T=1024$ they add 9%. The "6N" rule is a statement about large models with short contexts relative to their width.
''')

md(r'''
(sec-gpt-train)=
## Training on Tiny Shakespeare

nanoGPT's README gives a recipe for a laptop CPU: a 4-layer, 4-head, 128-wide model with a context of 64 characters, batches of 12, AdamW with learning rate $10^{-3}$ ($\beta_2 = 0.99$, weight decay 0.1 on matrices), 100 warmup steps and cosine decay to $10^{-4}$ over 2000 iterations, gradients clipped at norm 1, and no dropout; it reports a validation loss of about 1.88. `lmbook.train.Trainer` runs exactly this loop ({ref}`chap-training-faster` explains each ingredient and then beats the recipe's time). The 2000 iterations take about three minutes on the two-core CPU that builds this book, more than a page may spend, so this page runs the same recipe compressed to 600 iterations: the same warmup, and the cosine decay ending at step 600 instead of 2000. `bench/bench_speedrun.py` runs all 2000 and records the result, which the cell after the figure loads.
''')

code('''
text = lmbook.load_text("tinyshakespeare")
tok = CharTokenizer.from_text(text)
data = torch.tensor(tok.encode(text), dtype=torch.long)
n_train = int(0.9 * len(data))
train_data, val_data = data[:n_train], data[n_train:]  # last 10% validates
print(f"{len(text):,} characters, vocabulary of {tok.vocab_size}")

torch.manual_seed(1337)
config = GPTConfig.from_preset("gpt-micro", vocab_size=tok.vocab_size,
                               block_size=64, bias=False)
model = GPT(config).to(device)
recipe = TrainConfig(max_steps=600, batch_size=12, lr=1e-3, min_lr=1e-4,
                     warmup_steps=100, weight_decay=0.1, betas=(0.9, 0.99),
                     grad_clip=1.0, eval_interval=100, eval_steps=20,
                     log_interval=50, seed=1337)
trainer = Trainer(
    model, recipe,
    TokenBatchSampler(train_data.to(device), block_size=64, seed=1),
    TokenBatchSampler(val_data.to(device), block_size=64, seed=2),
)
history = trainer.fit()
''')

code('''
steps = [r.step for r in history]
fig, ax = plt.subplots(figsize=(6.8, 3.4))
ax.plot(steps, [r.train_loss for r in history], label="training batches")
evals = [r for r in history if r.val_loss is not None]
ax.plot([r.step for r in evals], [r.val_loss for r in evals], "o--",
        label="validation")
ax.axhline(1.88, color="gray", linewidth=1)
ax.text(steps[-1], 1.92, "nanoGPT's 1.88 after 2000 steps", ha="right",
        fontsize=10)
ax.set_xlabel("step", fontsize=11)
ax.set_ylabel("loss (nats/char)", fontsize=11)
ax.set_ylim(1.5, 3.5)
ax.legend(fontsize=10)
ax.tick_params(labelsize=10)
fig.tight_layout()
''', alt="Training and validation loss of the character GPT over 600 steps: "
      "both fall quickly from above 3 to about 2.5 in the first 200 steps "
      "and then slowly to about 2.3, above the 1.88 that nanoGPT reports "
      "after 2000 steps, drawn as a grey line.",
   caption="Loss of the 0.8M-parameter character GPT trained with nanoGPT's CPU "
           "recipe, compressed to 600 steps.", name="fig-gpt-train")

code('''
final = trainer.evaluate()
assert 2.0 < final < 2.4, final  # between the 250- and 1000-step losses below
print(f"validation loss after 600 steps: {final:.1f} nats/char"
      f" ({final / math.log(2):.1f} bits/char)")

# the full 2000 steps, as bench/bench_speedrun.py ran them (see its "commands")
bench = speedrun.load_bench_results()
full = next(r for r in bench["race"]["runs"] if r["name"] == "nanogpt")
print("nanoGPT's recipe in full, recorded by the bench:")
for step, _, _, val in full["evals"][::3] + full["evals"][-1:]:
    print(f"  step {step:4d}: validation loss {val:.2f}")
''')

md(r'''
The loss is printed with one decimal because the second is not stable: float32 sums are added in different orders on different CPUs and thread counts, and over hundreds of steps those differences grow to a few thousandths. The bench's numbers are read from its results file, so they print exactly; they were measured on the full validation split (1742 windows of 64 characters), where the page's Trainer averages 20 random batches. The full recipe ends near nanoGPT's 1.88. The compressed run here lands between the full run's losses at its 500th and 750th steps: squeezing the schedule into fewer steps buys little, and it is the number of steps that costs.
''')

md(r'''
(sec-gpt-house)=
## The house model

A few minutes of training give a model that has learnt the shape of a play (names in capitals, colons, line breaks) but not yet many words. The book ships a larger GPT of the same layout, trained for much longer on the same characters: `shakespeare-char`, trained by `tools/train_house_models.py`; its model card gives the recipe, the validation loss and the command. It is a folder in Hugging Face's format, so `transformers` loads it with no `lmbook` code at all, tokenizer included, and `lmbook.gpt.GPT.from_pretrained` loads the same files.
''')

code('''
folder = house_model_path("shakespeare-char")
hf_tok = AutoTokenizer.from_pretrained(folder)
hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
house = GPT.from_pretrained(folder).eval()
print(type(hf_model).__name__, f"{house.num_parameters():,} parameters,",
      f"context of {house.config.block_size}")
card = (folder / "README.md").read_text()
print(next(line for line in card.splitlines() if "Validation loss" in line))
assert hf_tok("ROMEO:")["input_ids"] == tok.encode("ROMEO:")  # same alphabet

# 64 windows of 129 characters spread evenly over the validation text
starts = torch.linspace(0, len(val_data) - 129, 64).long()
windows = torch.stack([val_data[s : s + 129] for s in starts])  # (64, 129)
x, y = windows[:, :-1], windows[:, 1:]                          # (64, 128)
model = model.cpu().eval()
with torch.no_grad():
    torch.testing.assert_close(hf_model(x).logits, house(x)[0],
                               atol=1e-4, rtol=1e-4)
    house_val = house(x, y)[1].item()
    ours_val = model(x[:, 64:], y[:, 64:])[1].item()  # its context is 64
print(f"validation loss on the same characters: house model {house_val:.2f},"
      f" ours {ours_val:.1f}")
''')

code('''
# NBVAL_IGNORE_OUTPUT  (sampled text can differ between CPUs; see the prose)
prompt = torch.tensor([tok.encode("ROMEO:\\n")])
for name, m in (("600 steps here", model), ("shakespeare-char", house)):
    g = torch.Generator().manual_seed(0)
    out = m.generate(prompt, 200, temperature=0.8, top_k=20, generator=g)
    print(f"--- {name} ---")
    print(tok.decode(out[0].tolist()))
''')

md(r'''
The samples are drawn with a seeded generator, but they are not stored as exact outputs: a difference in the last bit of one probability, from a different CPU, can change one sampled character, and every later character depends on it. Run the cell and judge for yourself; {ref}`chap-decoding` explains the sampling arguments.
''')

md(r'''
## Summary

- A GPT is embeddings, a stack of pre-norm causal Transformer blocks and an output layer tied to the token embedding; forty lines write it, and its logits equal `lmbook.gpt.GPT`'s and `transformers.GPT2LMHeadModel`'s.
- $N = L(12C^2 + 13C) + VC + T_{\max}C + 2C$: 124M for GPT-2 small, 85M outside the embeddings.
- Training costs 6 FLOPs per token for each weight in a matrix product, plus $12LTC$ for attention; `FlopCounterMode` confirms both.
- nanoGPT's CPU recipe reaches a validation loss near 1.9 nats per character in 2000 steps (about 2.3 in the 600 this page can afford); the house model `shakespeare-char` shows what a larger model and longer training buy.
- Print only stable digits of training results, and do not store sampled text as an exact output.

```{footbibliography}
```
''')

md(r'''
## Exercises

```{exercise}
:label: ex-gpt-params
How many parameters does GPT-2 medium have ($L = 24$, $C = 1024$, $V = 50\,257$, $T_{\max} = 1024$)? Check with `lmbook.exercises.check("gpt-medium-params", answer)`.
```

```{solution} ex-gpt-params
:class: dropdown
Use the formula, or build the model on the meta device: `with torch.device("meta"): GPT(GPTConfig.from_preset("gpt2-medium")).num_parameters()`. The two agree, as the chapter's loop checked.
```

```{exercise}
:label: ex-gpt-6nd
Training GPT-2 small's 85M non-embedding parameters on 10 billion tokens costs about how many FLOPs, by the $6ND$ rule? Give 3 significant figures and check with `lmbook.exercises.check("gpt-train-flops", answer)`.
```

```{solution} ex-gpt-6nd
:class: dropdown
$6 \cdot N \cdot D$ with $N$ = `GPT(GPTConfig.from_preset("gpt2")).num_parameters(exclude_embeddings=True)` (built on the meta device) and $D = 10^{10}$. Add the attention term $12LTC$ per token ($T = 1024$) and see by how much the estimate grows.
```

```{exercise}
:label: ex-gpt-untied
Build the chapter's `TinyGPT` with a separate output matrix instead of `token_emb.weight.T`. How many parameters does that add for $V = 65$, $C = 128$? What about for $V = 50\,257$, $C = 768$? Check the second with `lmbook.exercises.check("gpt-untied-extra", answer)`.
```

```{solution} ex-gpt-untied
:class: dropdown
An untied output layer adds a $V \times C$ matrix: $65 \cdot 128$ for the small model, and $50\,257 \cdot 768$ for GPT-2 small, almost a third of its parameters. Llama-family models untie it; at their sizes it is a small fraction.
```

```{exercise}
:label: ex-gpt-context
Train the chapter's model for 500 steps with `block_size=32` and again with `block_size=128` (same batch size, same steps). Which reaches the lower validation loss, and why is the comparison not quite fair?
```

```{solution} ex-gpt-context
:class: dropdown
The longer context usually wins at equal steps, because each step sees four times as many characters and each prediction has more to condition on; it also costs about four times the compute per step (and more for attention), so compare at equal tokens or equal time as well.
```
''')

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
nbf.write(nb, "/work/main/chapters/04-building/gpt-from-scratch.ipynb")
print("written")
