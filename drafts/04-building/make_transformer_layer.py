"""Writes chapters/03-mathematics/transformer-layer.ipynb.

Then run: python tools/execute_notebook.py chapters/03-mathematics/transformer-layer.ipynb
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

md(r'''
(chap-transformer-layer)=
# The mathematics of a Transformer layer

A Transformer layer is attention and a small MLP, each wrapped in two more pieces: a *normalisation* that rescales the vectors it reads, and a *residual connection* that adds its result to what came in. The two wrappers are what make it possible to stack dozens of layers and still train them. This chapter writes both as equations, checks each against PyTorch, measures what the residual connection does to gradients in a deep stack, and compares the two ways of placing the normalisation, *post-LN* (the original Transformer) and *pre-LN* (GPT-2, Llama and nearly every model since), with the gradient argument of Xiong and colleagues {footcite}`xiong2020layernorm`. It ends with the backward pass of attention, derived by hand and checked against autograd.

```{admonition} Learning goals
:class: tip
After this chapter you can

- write {term}`layer normalisation` and RMSNorm as formulas, say over which dimension their statistics are taken, and reproduce `torch.nn.LayerNorm` and `torch.nn.RMSNorm` exactly;
- show that the Jacobian of a {term}`residual connection` $x + f(x)$ is $I + J_f$, and explain with a measurement why it keeps gradients from vanishing in a deep stack;
- write pre-LN and post-LN blocks as equations, implement them from a dictionary of weights, and match `lmbook.gpt.Block` and `torch.nn.TransformerEncoderLayer`;
- explain and measure how the gradient at the last layer depends on depth in pre-LN and post-LN stacks;
- derive the gradients of attention with respect to $Q$, $K$ and $V$ and check them against autograd.
```
''')

code('''
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from lmbook.gpt import GPT, Block, GPTConfig

plt.style.use("tableau-colorblind10")
torch.set_printoptions(precision=4, sci_mode=False)
torch.set_default_dtype(torch.float64)  # tight checks, same digits on any CPU
''')

# ---------------------------------------------------------------- LayerNorm
md(r'''
(sec-layernorm-math)=
## Layer normalisation

Inside a Transformer every token is a vector $x \in \mathbb{R}^{C}$, one row of the $(B, T, C)$ tensor that flows from layer to layer (the *residual stream*). Layer normalisation {footcite}`ba2016layernorm` rescales each such vector on its own. It computes the mean and the variance of the $C$ features of the token,

$$
\mu = \frac{1}{C} \sum_{i=1}^{C} x_i ,
\qquad
\sigma^2 = \frac{1}{C} \sum_{i=1}^{C} (x_i - \mu)^2 ,
$$

and returns

$$
\operatorname{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta ,
$$

where $\gamma, \beta \in \mathbb{R}^{C}$ are a learned gain and bias (initialised to ones and zeros), $\odot$ is the element-wise product and $\epsilon$ (here $10^{-5}$) keeps the division safe. Three details matter, and each is easy to get wrong:

1. The statistics are taken over the **feature** dimension $C$, separately for every token. Batch normalisation {footcite}`ioffe2015batchnorm` instead averages each feature over the examples of a batch; layer normalisation never mixes tokens or examples.
2. The variance divides by $C$, not $C - 1$: it is the *biased* variance, not the unbiased estimate that `torch.var` returns by default.
3. $\epsilon$ is added to the variance, inside the square root.

The code is the formula. The check compares it with `torch.nn.LayerNorm`, with a random $\gamma$ and $\beta$ so that they are tested too.
''')

code('''
def layer_norm(x, gamma, beta, eps=1e-5):
    """LN over the last dimension: x (..., C), gamma and beta (C,)."""
    mu = x.mean(dim=-1, keepdim=True)                  # (..., 1)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)   # (..., 1), biased
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


gen = torch.Generator().manual_seed(0)
B, T, C = 2, 3, 8
x = 3 * torch.randn(B, T, C, generator=gen) + 1
gamma = torch.randn(C, generator=gen)
beta = torch.randn(C, generator=gen)

torch_ln = nn.LayerNorm(C, eps=1e-5)
with torch.no_grad():
    torch_ln.weight.copy_(gamma)
    torch_ln.bias.copy_(beta)
    assert_close(layer_norm(x, gamma, beta), torch_ln(x))
    assert_close(layer_norm(x, gamma, beta),
                 F.layer_norm(x, (C,), gamma, beta, eps=1e-5))
print("ok: layer_norm equals torch.nn.LayerNorm and F.layer_norm")
''')

md(r'''
Before $\gamma$ and $\beta$ are applied, every token has mean 0 and (biased) variance 1, whatever the other tokens hold. The next cell checks both, and shows that the unbiased variance, a common slip, gives a different function.
''')

code('''
z = layer_norm(x, torch.ones(C), torch.zeros(C))   # gamma = 1, beta = 0
assert z.mean(dim=-1).abs().max() < 1e-12
assert_close(z.var(dim=-1, unbiased=False), torch.ones(B, T),
             rtol=0, atol=1e-5)
print("ok: each token has mean 0 and variance 1 over its", C, "features")

# the same token in a different batch: its output does not change
other = torch.randn(5, T, C, generator=gen)
together = torch.cat([x[:1], other])             # token rows of x[0] + others
assert_close(layer_norm(together, gamma, beta)[0],
             layer_norm(x, gamma, beta)[0])
print("ok: a token's output does not depend on the other tokens")

mu = x.mean(dim=-1, keepdim=True)
wrong = gamma * (x - mu) / torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-5)
wrong = wrong + beta                     # unbiased variance: divides by C - 1
with torch.no_grad():
    gap = (wrong - torch_ln(x)).abs().max().item()
assert gap > 1e-2
print(f"unbiased variance instead: off by up to {gap:.2f}, "
      f"a factor sqrt((C-1)/C) = {math.sqrt((C - 1) / C):.3f}")
''')

md(r'''
Layer normalisation is invariant to scaling and shifting its input: for a number $a > 0$ and any $b$, $\operatorname{LN}(a x + b) = \operatorname{LN}(x)$, because $\mu$ moves to $a\mu + b$ and $\sigma$ to $a \sigma$ (exactly when $\epsilon = 0$, as in the check below; with $\epsilon > 0$ up to a relative change of about $\epsilon / (a^2\sigma^2)$, which matters only for tiny inputs). A sub-layer that reads $\operatorname{LN}(x)$ therefore does not see how large the residual stream has grown, which matters for deep stacks ({ref}`sec-pre-post-ln`).
''')

code('''
def ln_no_eps(v):
    return F.layer_norm(v, (C,), gamma, beta, eps=0.0)


for a, b in [(10.0, 0.0), (0.1, 0.0), (2.0, -7.0)]:
    assert_close(ln_no_eps(a * x + b), ln_no_eps(x))
print("ok: LN(a x + b) = LN(x) for a = 10, 0.1, 2 and b = 0, 0, -7")
''')

# ---------------------------------------------------------------- RMSNorm
md(r'''
(sec-rmsnorm-math)=
## RMSNorm

RMSNorm {footcite}`zhang2019rmsnorm` drops the centring and the bias. It divides by the root mean square of the features and multiplies by a gain:

$$
\operatorname{RMSNorm}(x) = \gamma \odot \frac{x}{\sqrt{\tfrac{1}{C}\sum_{i=1}^{C} x_i^2 + \epsilon}} .
$$

That is one reduction over the features instead of two, and it is what Llama {footcite}`touvron2023llama` and most open models of 2026 use (`GPTConfig(norm="rmsnorm")` in `lmbook`). It keeps invariance to scaling, $\operatorname{RMSNorm}(a x) = \operatorname{RMSNorm}(x)$ for $a > 0$, but loses invariance to shifting. When the features of a token already have mean 0, RMSNorm equals LayerNorm with $\beta = 0$, since then $\tfrac1C \sum_i x_i^2 = \sigma^2$. The cell checks all of this, and the formula against `torch.nn.RMSNorm`.
''')

code('''
def rms_norm(x, gamma, eps=1e-5):
    """RMSNorm over the last dimension: x (..., C), gamma (C,)."""
    mean_square = (x ** 2).mean(dim=-1, keepdim=True)   # (..., 1)
    return gamma * x / torch.sqrt(mean_square + eps)


torch_rms = nn.RMSNorm(C, eps=1e-5)
with torch.no_grad():
    torch_rms.weight.copy_(gamma)
    assert_close(rms_norm(x, gamma), torch_rms(x))
    print("ok: rms_norm equals torch.nn.RMSNorm")
    assert_close(torch_rms(10 * x), torch_rms(x), rtol=1e-4,
                 atol=1e-4)
    print("ok: RMSNorm(10 x) = RMSNorm(x)")
    shift = (torch_rms(x + 3) - torch_rms(x)).abs().max().item()
    assert shift > 0.1
    print(f"but RMSNorm(x + 3) differs from RMSNorm(x) by up to {shift:.1f}")
    centred = x - x.mean(dim=-1, keepdim=True)
    assert_close(rms_norm(centred, gamma),
                 layer_norm(centred, gamma, torch.zeros(C)))
    print("ok: for zero-mean tokens RMSNorm = LayerNorm with beta = 0")
''')

# ---------------------------------------------------------------- residuals
md(r'''
(sec-residual-math)=
## Residual connections keep gradients alive

A residual connection {footcite}`he2016resnet` adds a sub-layer's output to its input: $y = x + f(x)$. Differentiating,

$$
\frac{\partial y}{\partial x} = I + J_f , \qquad J_f = \frac{\partial f}{\partial x} .
$$

First the check, with a small MLP as $f$ and autograd's full Jacobian:
''')

code('''
torch.manual_seed(0)
f = nn.Sequential(nn.Linear(5, 16), nn.GELU(), nn.Linear(16, 5))
x5 = torch.randn(5)
J_f = torch.autograd.functional.jacobian(f, x5)                   # (5, 5)
J_y = torch.autograd.functional.jacobian(lambda v: v + f(v), x5)  # (5, 5)
assert_close(J_y, torch.eye(5) + J_f)
print("ok: the Jacobian of x + f(x) is I + J_f")
''')

md(r'''
Now stack $L$ such layers, $x_{l} = x_{l-1} + f_l(x_{l-1})$. By the chain rule the gradient of a loss $\ell$ at the input is the gradient at the output multiplied by the transposed Jacobians of all layers:

$$
\frac{\partial \ell}{\partial x_0}
= \Big(\prod_{l=1}^{L} (I + J_{f_l})\Big)^{\!\top} \frac{\partial \ell}{\partial x_L}
\quad\text{with residuals},
\qquad
\frac{\partial \ell}{\partial x_0}
= \Big(\prod_{l=1}^{L} J_{f_l}\Big)^{\!\top} \frac{\partial \ell}{\partial x_L}
\quad\text{without}.
$$

Multiplying out the first product gives $I + \sum_l J_{f_l} + \sum_{l > k} J_{f_l} J_{f_k} + \dots$: its first term passes the output gradient to the input unchanged, however deep the stack {footcite}`he2016identity`. Without residuals only the last term, the product of all $L$ Jacobians, remains; if the Jacobians typically shrink vectors it shrinks exponentially with $L$, the vanishing gradient that {ref}`sec-vanishing` measures in recurrent networks. The cell measures it at initialisation. Each layer is $f_l(x) = \tanh(W_l x + b_l)$ of width 64, with PyTorch's default initialisation; the loss is $\ell = x_L \cdot w$ for a fixed random $w$, and we record the ratio $\lVert \partial \ell / \partial x_0 \rVert / \lVert \partial \ell / \partial x_L \rVert$, the geometric mean over 3 random initialisations.
''')

code('''
def gradient_ratio(depth, residual, seed, width=64, batch=32):
    """||d loss / d x_0|| / ||d loss / d x_L|| for a tanh stack at init."""
    torch.manual_seed(seed)
    layers = [nn.Linear(width, width) for _ in range(depth)]
    x0 = torch.randn(batch, width, requires_grad=True)
    w = torch.randn(width)
    h = x0
    for layer in layers:
        h = h + torch.tanh(layer(h)) if residual else torch.tanh(layer(h))
    (h @ w).sum().backward()
    return (x0.grad.norm() / (w.norm() * math.sqrt(batch))).item()


depths = [1, 2, 4, 8, 16, 32, 64]
ratios = {}
for residual in (True, False):
    ratios[residual] = [
        math.exp(np.mean([math.log(gradient_ratio(d, residual, s))
                          for s in range(3)]))
        for d in depths]
print("depth   with residuals   without")
for d, r, p in zip(depths, ratios[True], ratios[False]):
    print(f"{d:5d}   {r:14.2g}   {p:7.2g}")
assert min(ratios[True]) > 0.5 and ratios[False][-1] < 1e-10
''')

md(r'''
Without residuals the gradient that reaches the input falls by a roughly constant factor per layer, to about $10^{-16}$ of its size at depth 64: the first layers of such a network would not learn. With residuals it never falls below its size at the output; it *grows*, slowly, to about 15 times at depth 64, because $\prod_l (I + J_{f_l})$ also contains every product of the $J_{f_l}$, and these add up. Residual connections stop the vanishing, but a deep residual stack still has to keep its branches $f_l$ small at initialisation so that the growth stays modest; {ref}`sec-gpt2-init` measures how GPT-2 does it. {numref}`fig-residual-gradients` draws the table.
''')

code('''
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(depths, ratios[True], "o-", label="with residuals: x + tanh(Wx + b)")
ax.plot(depths, ratios[False], "s-", label="without: tanh(Wx + b)")
ax.axhline(1, color="grey", lw=0.8, ls=":")
ax.set(xscale="log", yscale="log", xlabel="number of layers L",
       ylabel="gradient at input / at output")
ax.set_xticks(depths, [str(d) for d in depths])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.legend(loc="lower left")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
''', alt="Log-log plot of the ratio of the gradient norm at the input to the "
         "gradient norm at the output against the number of layers, 1 to 64. "
         "With residuals the ratio starts near 1 and rises slowly to about 15 "
         "at 64 layers. Without residuals it falls along a roughly straight "
         "line on the log scale, from 0.5 at one layer to about 1e-16 at 64 "
         "layers.",
     caption="How much of the output gradient reaches the input of a stack of "
             "tanh layers at initialisation. Without residual connections it "
             "vanishes exponentially with depth; with them it does not vanish, "
             "and grows slowly.",
     name="fig-residual-gradients")

# ---------------------------------------------------------------- pre/post LN
md(r'''
(sec-pre-post-ln)=
## Pre-LN and post-LN

A Transformer layer has two sub-layers, causal self-attention ({ref}`chap-attention-math`) and a position-wise MLP, each inside a residual connection and each with a normalisation. There are two ways to place the normalisation. The original Transformer {footcite}`vaswani2017attention` normalises *after* adding the residual, **post-LN**:

$$
h = \operatorname{LN}_1\big(x + \operatorname{Attn}(x)\big),
\qquad
y = \operatorname{LN}_2\big(h + \operatorname{MLP}(h)\big).
$$

GPT-2 {footcite}`radford2019gpt2` moved the normalisation to the *input* of each sub-layer, **pre-LN**, and added a final normalisation after the last layer:

$$
h = x + \operatorname{Attn}\big(\operatorname{LN}_1(x)\big),
\qquad
y = h + \operatorname{MLP}\big(\operatorname{LN}_2(h)\big).
$$

In pre-LN the residual path from the input of the stack to its output is a plain sum, $x_L = x_0 + \sum_{l} (\text{branch outputs})$, exactly the situation of {ref}`sec-residual-math`; in post-LN every layer divides the whole stream by its standard deviation. Llama and most open models of 2026 are pre-LN with RMSNorm. Some also normalise each branch's output: Gemma 2 normalises both the input and the output of each sub-layer {footcite}`gemma2024gemma2`, and OLMo 2 only the output, $x + \operatorname{RMSNorm}(\operatorname{Attn}(x))$ {footcite}`olmo2024olmo2`.

The two sub-layers, written with the weights the way `nn.Linear` stores them (as $W^\top$, so a layer computes $x W^\top + b$), are

$$
\begin{aligned}
[Q \mid K \mid V] &= x W_{\text{attn}}^\top + b_{\text{attn}}, &
\operatorname{Attn}(x) &= \operatorname{Concat}_{\text{heads}}\Big(\operatorname{softmax}\big(\tfrac{Q_i K_i^\top}{\sqrt{d_h}} + M\big) V_i\Big)\, W_{\text{proj}}^\top + b_{\text{proj}}, \\
&& \operatorname{MLP}(x) &= \operatorname{GELU}(x W_{\text{fc}}^\top + b_{\text{fc}})\, W_{\text{out}}^\top + b_{\text{out}},
\end{aligned}
$$

with $M$ the causal mask ($0$ on and below the diagonal, $-\infty$ above) and $d_h = C / n_h$ the head size. The next cell implements both blocks from a plain dictionary of weights, with the names of `lmbook.gpt.Block`, whose state dictionary supplies the names and shapes. The weights are random, and the norms' $\gamma$ and $\beta$ are not ones and zeros, so that every weight is exercised.
''')

code('''
def attention(x, W, n_head):
    """Causal multi-head self-attention: x (B, T, C) -> (B, T, C)."""
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ W["attn.c_attn.weight"].T + W["attn.c_attn.bias"]  # (B, T, 3C)
    q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2)
               for t in qkv.split(C, dim=-1))                # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)          # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
    y = (weights @ v).transpose(1, 2).reshape(B, T, C)           # (B, T, C)
    return y @ W["attn.c_proj.weight"].T + W["attn.c_proj.bias"]


def mlp(x, W):
    """Position-wise MLP with exact GELU: (B, T, C) -> (B, T, C)."""
    h = F.gelu(x @ W["mlp.c_fc.weight"].T + W["mlp.c_fc.bias"])  # (B, T, 4C)
    return h @ W["mlp.c_proj.weight"].T + W["mlp.c_proj.bias"]


def norm(x, W, i):
    return layer_norm(x, W[f"ln_{i}.weight"], W[f"ln_{i}.bias"])


def pre_ln_block(x, W, n_head):
    h = x + attention(norm(x, W, 1), W, n_head)
    return h + mlp(norm(h, W, 2), W)


def post_ln_block(x, W, n_head):
    h = norm(x + attention(x, W, n_head), W, 1)
    return norm(h + mlp(h, W), W, 2)


config = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2,
                   n_embd=8)
block = Block(config).eval()
W = {name: 0.5 * torch.randn(t.shape, generator=gen)
     for name, t in block.state_dict().items()}
W["ln_1.weight"] += 1
W["ln_2.weight"] += 1
block.load_state_dict(W)
for name, t in W.items():
    print(f"{name:18s} {tuple(t.shape)}")
''')

md(r'''
`lmbook.gpt.Block` is pre-LN, so it must agree with `pre_ln_block`. PyTorch's `nn.TransformerEncoderLayer` implements both placements (`norm_first=True` is pre-LN) with the same fused $[W^Q; W^K; W^V]$ layout, so the same weights can be copied into it and both of our blocks checked, the post-LN one included. It needs a float causal mask with $-\infty$ above the diagonal.
''')

code('''
xb = torch.randn(3, 8, 8, generator=gen)  # (B, T, C)
with torch.no_grad():
    assert_close(pre_ln_block(xb, W, config.n_head), block(xb)[0])
print("ok: pre_ln_block equals lmbook.gpt.Block")

names = {  # torch's names -> lmbook's
    "self_attn.in_proj_weight": "attn.c_attn.weight",
    "self_attn.in_proj_bias": "attn.c_attn.bias",
    "self_attn.out_proj.weight": "attn.c_proj.weight",
    "self_attn.out_proj.bias": "attn.c_proj.bias",
    "linear1.weight": "mlp.c_fc.weight", "linear1.bias": "mlp.c_fc.bias",
    "linear2.weight": "mlp.c_proj.weight", "linear2.bias": "mlp.c_proj.bias",
    "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
    "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
}
mask = nn.Transformer.generate_square_subsequent_mask(
    8, dtype=torch.float64)
for norm_first, ours in [(True, pre_ln_block), (False, post_ln_block)]:
    layer = nn.TransformerEncoderLayer(
        8, 2, dim_feedforward=32, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=norm_first).eval()
    layer.load_state_dict({t: W[o] for t, o in names.items()})
    with torch.no_grad():
        reference = layer(xb, src_mask=mask, is_causal=True)
    assert_close(ours(xb, W, config.n_head), reference)
    print(f"ok: {ours.__name__} equals nn.TransformerEncoderLayer"
          f"(norm_first={norm_first})")
''')

md(r'''
### Gradients at initialisation

Post-LN Transformers are hard to train without a learning-rate *warmup*, a first phase in which the learning rate grows from near zero ({ref}`chap-training-math` gives the schedule); pre-LN ones train without it. Xiong and colleagues {footcite}`xiong2020layernorm` explain this with the gradients at initialisation. For Xavier-initialised weights ({ref}`sec-init-variance`) and width $d$, they prove that the norm of the gradient of the last layer's MLP weights is bounded by a term of order $d\sqrt{\ln d}$ in a post-LN Transformer, independent of the number of layers $L$, but by a term of order $d\sqrt{\ln d / L}$ in a pre-LN one. The reason is visible in the equations. In pre-LN, the final normalisation divides the output by the size of $x_L$, and $x_L$ is a sum of about $2L$ branch outputs, so its size grows like $\sqrt{L}$ and every gradient is scaled down by it; in post-LN each layer renormalises the stream, so the last layer sees the same scale at any depth. Large gradients near the output together with a large learning rate make the first updates of a post-LN model unstable, which warmup avoids.

We measure it on `lmbook`'s GPT at initialisation, with every weight matrix Xavier-initialised as in their analysis (each of $W^Q$, $W^K$, $W^V$ as its own $C \times C$ matrix). For post-LN, each block's forward is replaced by the post-LN equations on the same modules, and the final normalisation is dropped (the last block already ends with one). The loss is the cross-entropy of random next tokens, and we record the gradient norm of the last block's `mlp.c_proj.weight` (Xiong's $W^{2,L}$), as a geometric mean over 2 initialisations, together with the root mean square of the stream $x_L$ before the final normalisation.
''')

code('''
def post_ln_forward(blk, x):
    """The post-LN equations on a Block's own modules."""
    a, _ = blk.attn(x)
    h = blk.ln_1(x + a)
    return blk.ln_2(h + blk.mlp(h))


def xavier_(model, C):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_attn.weight"):
                for part in p.split(C):          # W^Q, W^K, W^V separately
                    nn.init.xavier_normal_(part)
            elif p.dim() == 2 and ".h." in name:
                nn.init.xavier_normal_(p)


def last_layer_gradient(n_layer, post_ln, seed, C=64, T=16):
    """Gradient norm of the last block's mlp.c_proj.weight at init."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=64, block_size=T, n_layer=n_layer,
                    n_head=4, n_embd=C)
    model = GPT(cfg)
    xavier_(model, C)
    idx, targets = torch.randint(0, 64, (2, 8, T))
    h = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T))
    for blk in model.transformer.h:
        h = post_ln_forward(blk, h) if post_ln else blk(h)[0]
    rms = h.pow(2).mean().sqrt().item()
    if not post_ln:
        h = model.transformer.ln_f(h)
    logits = model.lm_head(h)                                # (B, T, V)
    F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    grad = model.transformer.h[-1].mlp.c_proj.weight.grad
    return grad.norm().item(), rms


n_layers = [3, 6, 12, 24]
last_grad, stream_rms = {}, {}
for post_ln in (False, True):
    runs = [[last_layer_gradient(L, post_ln, s) for s in range(2)]
            for L in n_layers]
    last_grad[post_ln] = [math.exp(np.mean([math.log(g) for g, _ in r]))
                          for r in runs]
    stream_rms[post_ln] = [np.mean([rms for _, rms in r]) for r in runs]
print("layers |  last-layer gradient  |  rms of x_L")
print("       |  pre-LN    post-LN    |  pre-LN  post-LN")
for i, L in enumerate(n_layers):
    print(f"{L:6d} |  {last_grad[False][i]:.1e}   {last_grad[True][i]:.1e}"
          f"    |  {stream_rms[False][i]:5.1f}  {stream_rms[True][i]:6.1f}")
slopes = {p: np.polyfit(np.log(n_layers), np.log(last_grad[p]), 1)[0]
          for p in (False, True)}
print(f"slope of log gradient against log L: pre-LN {slopes[False]:.2f}, "
      f"post-LN {slopes[True]:.2f}")
assert -0.75 < slopes[False] < -0.35 and abs(slopes[True]) < 0.15
''')

md(r'''
The measurement follows the theorem. In the post-LN stack, the last layer's gradient has the same size at 3 and at 24 layers (a slope of $0.01$ on the log–log scale), and the stream stays at unit scale, since it leaves every layer through a LayerNorm. In the pre-LN stack the stream's size grows roughly like $\sqrt{L}$, from 1.5 to 5.1, and the last layer's gradient falls roughly like $1/\sqrt{L}$ (a slope of $-0.58$, against $-\tfrac12$ in the theorem). At 24 layers the post-LN gradient is more than four times the pre-LN one, and the gap widens with depth; {numref}`fig-pre-post-ln` draws it.
''')

code('''
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(n_layers, last_grad[True], "s-", label="post-LN: LN(x + f(x))")
ax.plot(n_layers, last_grad[False], "o-", label="pre-LN: x + f(LN(x))")
reference = [last_grad[False][0] * math.sqrt(n_layers[0] / L)
             for L in n_layers]
ax.plot(n_layers, reference, ":", color="grey", label="slope -1/2")
ax.set(xscale="log", yscale="log", xlabel="number of layers L",
       ylabel="gradient norm, last MLP")
ax.set_xticks(n_layers, [str(L) for L in n_layers])
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
''', alt="Log-log plot of the gradient norm of the last layer's MLP weight "
         "against the number of layers, 3 to 24. The post-LN line is flat. "
         "The pre-LN line starts at a similar value and falls parallel to a "
         "dotted reference line of slope minus one half, ending about four "
         "times below the post-LN line at 24 layers.",
     caption="Gradient norm of the last layer's MLP weight at initialisation "
             "(Xavier weights), against depth. Post-LN: independent of L; "
             "pre-LN: falls like 1/sqrt(L), as Xiong et al. (2020) prove.",
     name="fig-pre-post-ln")

md(r'''
The GPT-2 initialisation that `lmbook.gpt.GPT` uses by default changes this picture: it scales the residual projections down by $\sqrt{2L}$, so that the variance the blocks add to the stream does *not* grow with depth. {ref}`sec-gpt2-init` measures that.

The Part IV chapter "The Transformer block, assembled" builds the block of this section as a module and trains it.
''')

# ---------------------------------------------------------------- backprop
md(r'''
(sec-attention-backward)=
## Backpropagation through softmax and attention

Autograd differentiates attention for us, but knowing its gradients by hand explains why attention trains well or badly, and it is what fused kernels such as FlashAttention {footcite}`dao2022flashattention` implement. We use the notation of {ref}`sec-backprop-by-hand`: $\bar M = \partial \ell / \partial M$ has the shape of $M$.

### The softmax Jacobian

For one row of scores $s \in \mathbb{R}^{T}$ with weights $a = \operatorname{softmax}(s)$, $a_i = e^{s_i} / \sum_k e^{s_k}$, the quotient rule gives $\partial a_i / \partial s_j = a_i [i = j] - a_i a_j$, that is

$$
\frac{\partial a}{\partial s} = \operatorname{diag}(a) - a a^\top ,
$$

the Jacobian whose size {ref}`sec-why-sqrt-dk` measured. It is symmetric, and backpropagation never builds it: it only needs its product with the incoming gradient $\bar a$,

$$
\bar s = \big(\operatorname{diag}(a) - a a^\top\big)\, \bar a = a \odot \big(\bar a - (a \cdot \bar a)\big),
$$

which costs $O(T)$ instead of $O(T^2)$. The cell checks both against autograd.
''')

code('''
s = torch.randn(6, generator=gen)
a = torch.softmax(s, dim=-1)
jacobian = torch.autograd.functional.jacobian(
    lambda z: torch.softmax(z, dim=-1), s)                      # (6, 6)
assert_close(torch.diag(a) - torch.outer(a, a), jacobian)
print("ok: d softmax / d s = diag(a) - a a^T")

a_bar = torch.randn(6, generator=gen)
s_bar = a * (a_bar - (a * a_bar).sum())
assert_close(s_bar, jacobian.T @ a_bar)
print("ok: the backward pass a * (a_bar - a . a_bar) = J^T a_bar")
assert jacobian.sum(dim=1).abs().max() < 1e-12
print("ok: every row of the Jacobian sums to 0")
''')

md(r'''
The rows of the Jacobian sum to 0 (each row is $a_i(e_i - a)$, and $\sum_j a_j = 1$): adding the same number to all scores changes nothing, the shift invariance of {ref}`chap-softmax`, so the gradient has no component along $(1, \dots, 1)$.

### The gradients of attention

Take one head, with queries $Q \in \mathbb{R}^{T_q \times d}$, keys $K \in \mathbb{R}^{T_k \times d}$ and values $V \in \mathbb{R}^{T_k \times d_v}$:

$$
S = \frac{Q K^\top}{\sqrt{d}}, \qquad A = \operatorname{softmax}(S) \text{ (by rows)}, \qquad Y = A V .
$$

Given $\bar Y = \partial \ell / \partial Y$, go through the three lines backwards. $Y = AV$ is a matrix product, so, as for a linear layer in {ref}`sec-backprop-by-hand`, $\bar V = A^\top \bar Y$ and $\bar A = \bar Y V^\top$. The softmax acts on each row on its own, so each row of $\bar S$ is the product above, with $a$ and $\bar a$ the rows of $A$ and $\bar A$. Last, $S$ is again a matrix product. Altogether:

$$
\begin{aligned}
\bar V &= A^\top \bar Y , & \bar A &= \bar Y V^\top , \\
\bar S &= A \odot \big(\bar A - \operatorname{rowsum}(\bar A \odot A)\big) , & & \\
\bar Q &= \bar S K / \sqrt{d} , & \bar K &= \bar S^\top Q / \sqrt{d} ,
\end{aligned}
$$

where $\operatorname{rowsum}(\cdot)$ is the column of row sums, broadcast along each row. With a causal mask, the masked weights are exactly 0, so $\bar S$ is 0 there too: no gradient reaches a masked score. The cell implements the formulas and checks them against autograd through PyTorch's own fused `F.scaled_dot_product_attention`, for a causal head with $T = 5$, $d = 4$ and $d_v = 3$.
''')

code('''
def attention_backward(Q, K, V, Y_bar, causal=True):
    """Gradients (Q_bar, K_bar, V_bar) of causal attention, by hand."""
    d = Q.shape[-1]
    S = Q @ K.transpose(-2, -1) / math.sqrt(d)                 # (T_q, T_k)
    if causal:
        future = torch.ones_like(S, dtype=torch.bool).triu(1)
        S = S.masked_fill(future, float("-inf"))
    A = torch.softmax(S, dim=-1)                               # (T_q, T_k)
    V_bar = A.transpose(-2, -1) @ Y_bar                        # (T_k, d_v)
    A_bar = Y_bar @ V.transpose(-2, -1)                        # (T_q, T_k)
    S_bar = A * (A_bar - (A_bar * A).sum(dim=-1, keepdim=True))
    Q_bar = S_bar @ K / math.sqrt(d)                           # (T_q, d)
    K_bar = S_bar.transpose(-2, -1) @ Q / math.sqrt(d)         # (T_k, d)
    return Q_bar, K_bar, V_bar, A, S_bar


T_q, d, d_v = 5, 4, 3
Q, K = (torch.randn(T_q, d, generator=gen)
        for _ in range(2))
V = torch.randn(T_q, d_v, generator=gen)
Y_bar = torch.randn(T_q, d_v, generator=gen)

leaves = [t.clone().requires_grad_() for t in (Q, K, V)]
Y = F.scaled_dot_product_attention(*leaves, is_causal=True)
Y.backward(Y_bar)                        # autograd: vector-Jacobian product
Q_bar, K_bar, V_bar, A, S_bar = attention_backward(Q, K, V, Y_bar)
for name, ours, leaf in zip("QKV", (Q_bar, K_bar, V_bar), leaves):
    assert_close(ours, leaf.grad)
    print(f"ok: {name}_bar by hand equals autograd, shape "
          f"{tuple(ours.shape)}")
assert (S_bar.triu(1) == 0).all()
print("ok: masked scores get exactly zero gradient")
''')

md(r'''
One more identity makes the backward pass cheap. The row sums in $\bar S$ need the $T_q \times T_k$ matrices $\bar A$ and $A$, but

$$
\operatorname{rowsum}(\bar A \odot A)_i = \sum_j (\bar Y_i \cdot V_j) A_{ij} = \bar Y_i \cdot \sum_j A_{ij} V_j = \bar Y_i \cdot Y_i ,
$$

the dot product of a row of the output with its gradient. FlashAttention computes exactly this vector, $D = \operatorname{rowsum}(\bar Y \odot Y)$, before its backward pass, so that it never has to store $A$ {footcite}`dao2022flashattention`.
''')

code('''
Y = A @ V
assert_close((Y_bar @ V.T * A).sum(dim=-1), (Y_bar * Y).sum(dim=-1))
print("ok: rowsum(A_bar * A) = rowsum(Y_bar * Y)")
''')

md(r'''
Autograd and our formulas could share a mistake, so the last check uses nothing but the forward pass. We wrap the hand-written backward in a `torch.autograd.Function` and let `torch.autograd.gradcheck` compare it with central finite differences ({ref}`sec-finite-differences`).
''')

code('''
class HandAttention(torch.autograd.Function):
    """Causal attention whose backward pass is attention_backward."""

    @staticmethod
    def forward(ctx, Q, K, V):
        ctx.save_for_backward(Q, K, V)
        d = Q.shape[-1]
        S = Q @ K.T / math.sqrt(d)
        future = torch.ones_like(S, dtype=torch.bool).triu(1)
        return torch.softmax(S.masked_fill(future, float("-inf")), -1) @ V

    @staticmethod
    def backward(ctx, Y_bar):
        return attention_backward(*ctx.saved_tensors, Y_bar)[:3]


inputs = [t.clone().requires_grad_() for t in (Q, K, V)]
assert torch.autograd.gradcheck(HandAttention.apply, inputs)
print("ok: gradcheck passes: the hand-written backward matches "
      "finite differences")
''')

# ---------------------------------------------------------------- summary
md(r'''
## Summary

- Layer normalisation centres and scales each token over its $C$ features, $\gamma \odot (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta$, with the biased variance; it is invariant to scaling and shifting its input. RMSNorm divides by the root mean square and has no bias; it is invariant to scaling only. Both matched PyTorch's modules exactly.
- A residual connection has Jacobian $I + J_f$, so a product of them contains the identity and the gradient at the input of a deep stack does not vanish. Measured at initialisation on a 64-layer tanh stack: about $10^{-16}$ of the output gradient survives without residuals, none is lost with them.
- Post-LN: $\operatorname{LN}(x + f(x))$; pre-LN: $x + f(\operatorname{LN}(x))$, with a final norm. We built both from a dictionary of weights and matched `lmbook.gpt.Block` and `nn.TransformerEncoderLayer`. At initialisation the last layer's gradient is independent of depth in post-LN and falls like $1/\sqrt{L}$ in pre-LN, as Xiong et al. prove; this is why post-LN needs warmup and pre-LN trains more easily.
- The softmax Jacobian is $\operatorname{diag}(a) - aa^\top$. The gradients of attention are $\bar V = A^\top \bar Y$, $\bar A = \bar Y V^\top$, $\bar S = A \odot (\bar A - \operatorname{rowsum}(\bar A \odot A))$, $\bar Q = \bar S K/\sqrt d$, $\bar K = \bar S^\top Q/\sqrt d$, and $\operatorname{rowsum}(\bar A \odot A) = \operatorname{rowsum}(\bar Y \odot Y)$.

{ref}`chap-training-math` continues with the other half of training a Transformer: the loss, the optimiser, the schedule and the initialisation.

## Exercises
''')

md(r'''
```{exercise}
:label: ex-tl-layernorm
A token has the four features $x = (1, 2, 3, 6)$. Compute the last entry of $\operatorname{LN}(x)$ with $\gamma = 1$, $\beta = 0$ and $\epsilon = 0$, by hand. Check with `lmbook.exercises.check("layernorm-by-hand", answer)`, then with `nn.LayerNorm(4, eps=0.0)`.
```

```{solution} ex-tl-layernorm
:class: dropdown
$\mu = 12/4 = 3$ and $\sigma^2 = (4 + 1 + 0 + 9)/4 = 3.5$, so the last entry is $(6 - 3)/\sqrt{3.5} \approx 1.604$:

    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    print(nn.LayerNorm(4, eps=0.0)(x))
    lmbook.exercises.check("layernorm-by-hand", 3 / math.sqrt(3.5))

With the unbiased variance $14/3$ you would get $1.389$ instead.
```

```{exercise}
:label: ex-tl-layernorm-grad
Derive the Jacobian of LayerNorm without $\gamma$ and $\beta$. With $\mu$ and $\sigma$ the mean and the (biased) standard deviation of the $C$ features of $x$, and $\hat x = (x - \mu)/\sigma$, show that

$$
\frac{\partial \hat x_i}{\partial x_j} = \frac{1}{\sigma}\left(\delta_{ij} - \frac{1}{C} - \frac{\hat x_i \hat x_j}{C}\right).
$$

For $x = (1, 2, 3, 6)$ as in {ref}`ex-tl-layernorm`, compute the gradient of the last output, $\partial \hat x_4 / \partial x_j$ for $j = 1, \dots, 4$, and check it with `lmbook.exercises.check("layernorm-grad", g)` and with autograd. Why does $g$ sum to 0, and why is it orthogonal to $\hat x$?
```

```{solution} ex-tl-layernorm-grad
:class: dropdown
Both statistics depend on every feature: $\partial \mu / \partial x_j = 1/C$, and from $\sigma^2 = \frac1C \sum_k (x_k - \mu)^2$, $2\sigma\, \partial\sigma/\partial x_j = \frac{2}{C}(x_j - \mu)$ (the terms with $\partial \mu/\partial x_j$ cancel, because $\sum_k (x_k - \mu) = 0$), so $\partial \sigma / \partial x_j = \hat x_j / C$. The quotient rule on $\hat x_i = (x_i - \mu)/\sigma$ gives

$$
\frac{\partial \hat x_i}{\partial x_j} = \frac{\delta_{ij} - 1/C}{\sigma} - \frac{(x_i - \mu)\, \hat x_j}{C \sigma^2} = \frac{1}{\sigma}\left(\delta_{ij} - \frac{1}{C} - \frac{\hat x_i \hat x_j}{C}\right).
$$

Here $\mu = 3$, $\sigma = \sqrt{3.5}$ and $\hat x = (-2, -1, 0, 3)/\sqrt{3.5}$, so $\hat x_4 \hat x_j / 4 = (-6, -3, 0, 9)/14$ and

$$
g = \frac{1}{\sqrt{3.5}}\left((0, 0, 0, 1) - \tfrac14 - \tfrac{(-6, -3, 0, 9)}{14}\right) = \frac{(5, -1, -7, 3)}{28\sqrt{3.5}} \approx (0.0955, -0.0191, -0.134, 0.0573).
$$

    x = torch.tensor([1.0, 2.0, 3.0, 6.0], requires_grad=True)
    nn.LayerNorm(4, eps=0.0)(x)[-1].backward()
    print(x.grad)
    lmbook.exercises.check("layernorm-grad", x.grad.tolist())

Adding a constant to every feature, the direction $(1, 1, 1, 1)$, does not change $\hat x$, so the derivative in that direction, $\sum_j g_j$, is 0; scaling $x - \mu$ does not change it either, so $g \cdot \hat x = 0$ too (here $-10 + 1 + 0 + 9 = 0$). The gradient that LayerNorm passes back has no component along the two directions it normalises away.
```

```{exercise}
:label: ex-tl-residual
In a stack of $L = 24$ layers, suppose every branch has the Jacobian $J_{f_l} = 0.1\, I$. By what factor is the gradient multiplied between the output and the input (a) with residual connections, $x + f_l(x)$, and (b) without, $f_l(x)$? Check with `lmbook.exercises.check("residual-gradient-factor", [with_residuals, without])`. What does (a) say about the size a branch should have at initialisation?
```

```{solution} ex-tl-residual
:class: dropdown
With residuals each layer multiplies by $I + 0.1 I = 1.1\, I$, so the factor is $1.1^{24} \approx 9.85$; without, $0.1^{24} = 10^{-24}$.

    lmbook.exercises.check("residual-gradient-factor", [1.1**24, 0.1**24])

Without residuals the gradient vanishes. With them it grows like $(1 + c)^{L}$ for branches of size $c$, which stays bounded as $L$ grows only if $c$ shrinks like $1/L$: the reason deep models initialise their branches small, as GPT-2's $1/\sqrt{2L}$ scaling does ({ref}`sec-gpt2-init`).
```

```{exercise}
:label: ex-tl-attention-grad
One query $q = 1$ (so $d = 1$) attends to two keys $k = (0, 1)$ with scalar values $v = (1, 3)$, without a mask, and $\ell = y$, so $\bar y = 1$. Compute $\bar q$ with the formulas of {ref}`sec-attention-backward`, and check with `lmbook.exercises.check("attention-grad-q", answer)` and with autograd.
```

```{solution} ex-tl-attention-grad
:class: dropdown
$s = (0, 1)$ and $a = \operatorname{softmax}(s) \approx (0.269, 0.731)$, so $y = 0.269 + 3 \cdot 0.731 \approx 2.462$. Then $\bar a = \bar y\, v = (1, 3)$, $\operatorname{rowsum}(\bar a \odot a) = y \approx 2.462$, $\bar s = a \odot (\bar a - 2.462) \approx (-0.393, 0.393)$ and $\bar q = \bar s \cdot k = 0.393$.

    q = torch.tensor([[1.0]], requires_grad=True)
    k, v = torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]])
    F.scaled_dot_product_attention(q, k, v).sum().backward()
    lmbook.exercises.check("attention-grad-q", q.grad.item())

The gradient is positive: increasing $q$ moves weight towards the second key, whose value 3 is larger.
```

```{exercise}
:label: ex-tl-final-norm
A pre-LN GPT ends with a final normalisation `ln_f` before the output layer, and a post-LN Transformer does not. Why? Remove `ln_f` from the pre-LN measurement in {ref}`sec-pre-post-ln` (skip the line `h = model.transformer.ln_f(h)`) and look at how the loss at initialisation and the last-layer gradient change with depth.
```

```{solution} ex-tl-final-norm
:class: dropdown
In post-LN the last operation of the last block is already a LayerNorm, so the output layer always reads a normalised vector. In pre-LN the stream $x_L$ is a plain sum that grows with depth (its root mean square is printed in the table), so without `ln_f` the logits grow with $L$ too. Repeating the measurement of {ref}`sec-pre-post-ln` without `ln_f`, the loss at initialisation rises above $\ln 64 \approx 4.16$, to about 4.4 at 24 layers, and the last-layer gradient no longer shrinks with depth (it grows slightly). The final norm makes the output layer see the same scale at any depth.
```

## References

```{footbibliography}
```
''')

nb.write("/work/main/chapters/03-mathematics/transformer-layer.ipynb")
