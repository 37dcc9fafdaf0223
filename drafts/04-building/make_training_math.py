"""Writes chapters/03-mathematics/training-math.ipynb.

Then run: python tools/execute_notebook.py chapters/03-mathematics/training-math.ipynb
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

md(r'''
(chap-training-math)=
# The mathematics of training

{ref}`chap-gradient-descent` trained a 49-parameter network with plain gradient descent. Training a language model uses the same idea with a handful of additions, and this chapter writes each of them as equations and checks each against the implementation that `lmbook` and PyTorch use: the loss, {term}`cross-entropy`, and why it is the right one; minibatches; the optimisers SGD with momentum, Adam and AdamW; the learning-rate schedule; {term}`gradient clipping`; and the initialisation that lets a deep network start training at all, including GPT-2's special scaling of the residual projections.

```{admonition} Learning goals
:class: tip
After this chapter you can

- show that minimising cross-entropy is {term}`maximum likelihood estimation`, and that $H(p, q) = H(p) + \mathrm{KL}(p \,\|\, q)$, so that the loss cannot fall below the entropy of the data;
- explain why a minibatch gradient is an unbiased estimate of the full gradient and how its noise falls with the batch size;
- write the update equations of SGD with momentum, Adam and AdamW, implement each by hand, and match `torch.optim` step for step;
- explain Adam's bias correction and why decoupled {term}`weight decay` (AdamW) is not Adam with an L2 penalty;
- compute a warmup-plus-cosine learning rate and a clipped gradient, and match `lmbook.train` and `torch.nn.utils`;
- derive the Xavier/Glorot and He initialisations from the variance of a layer's output, and measure the effect of GPT-2's $0.02/\sqrt{2L}$ scaling on the residual stream.
```
''')

code('''
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence
from torch.testing import assert_close

from lmbook.gpt import GPT, GPTConfig
from lmbook.train import TrainConfig, lr_at

plt.style.use("tableau-colorblind10")
torch.set_printoptions(precision=3, sci_mode=False)
torch.set_default_dtype(torch.float64)  # tight checks, same digits on any CPU
gen = torch.Generator().manual_seed(0)
''')

# ------------------------------------------------------------ MLE
md(r'''
(sec-ce-mle)=
## Cross-entropy is maximum likelihood

A language model with parameters $\theta$ gives every possible next token $x$ a probability $q_\theta(x \mid c)$ in its context $c$. Training text supplies $N$ pairs $(c_n, x_n)$. The *likelihood* of $\theta$ is the probability the model gives to the text, $\prod_n q_\theta(x_n \mid c_n)$ ({ref}`chap-sequence-probability`), and the maximum-likelihood estimate is the $\theta$ that makes it largest. The logarithm turns the product into a sum without moving the maximum, and dividing by $-N$ turns the maximum into a minimum:

$$
\hat\theta = \arg\max_\theta \prod_{n=1}^{N} q_\theta(x_n \mid c_n)
= \arg\min_\theta \; -\frac{1}{N} \sum_{n=1}^{N} \log q_\theta(x_n \mid c_n) .
$$

The quantity on the right is the cross-entropy loss that every model in this book minimises. Grouping equal outcomes shows where its name comes from. Without a context, if outcome $x$ occurs $N_x$ times, the loss is $-\sum_x \frac{N_x}{N} \log q_\theta(x) = H(\hat p, q_\theta)$, the cross-entropy between the *empirical distribution* $\hat p(x) = N_x / N$ of the data and the model, where

$$
H(p, q) = -\sum_x p(x) \log q(x) .
$$

The cell draws $N = 1000$ samples from a distribution $p$ over 5 outcomes and checks that `F.cross_entropy` over the samples equals $H(\hat p, q)$ for a model $q = \operatorname{softmax}(\theta)$.
''')

code('''
p_true = torch.tensor([0.40, 0.25, 0.20, 0.10, 0.05])
V, N = len(p_true), 1000
samples = torch.multinomial(p_true, N, replacement=True, generator=gen)
p_hat = torch.bincount(samples, minlength=V) / N     # empirical distribution

theta = torch.randn(V, generator=gen)                # the model's logits
q = torch.softmax(theta, dim=-1)
loss = F.cross_entropy(theta.expand(N, V), samples)  # mean over N samples
assert_close(loss, -(p_hat * q.log()).sum())
print(f"mean negative log-likelihood = H(p_hat, q) = {loss:.3f} nats")
''')

md(r'''
Which $q$ minimises it? The gradient of softmax cross-entropy with respect to the logits is $q - \hat p$ ({ref}`sec-ce-gradient`), which is zero exactly when $q = \hat p$: the maximum-likelihood model of a categorical variable is its empirical frequencies. Gradient descent on $\theta$ finds it.
''')

code('''
theta = torch.zeros(V, requires_grad=True)
for step in range(1000):
    loss = -(p_hat * torch.log_softmax(theta, dim=-1)).sum()
    theta.grad = None
    loss.backward()
    if step == 0:
        assert_close(theta.grad, torch.softmax(theta, -1).detach() - p_hat)
    with torch.no_grad():
        theta -= 1.0 * theta.grad
q_fit = torch.softmax(theta, dim=-1).detach()
assert_close(q_fit, p_hat)
entropy_hat = -(p_hat * p_hat.log()).sum()
print("true p   ", p_true)
print("p_hat    ", p_hat)
print("fitted q ", q_fit)
print(f"final loss {loss:.3f} nats = H(p_hat) = {entropy_hat:.3f} nats")
''')

md(r'''
The fitted model equals the empirical frequencies, not the true $p$: maximum likelihood can only see the data. And the loss did not reach zero. Its minimum is the entropy of the data, as the next section shows.

(sec-ce-kl)=
## Cross-entropy, entropy and KL divergence

Add and subtract $\sum_x p(x) \log p(x)$:

$$
H(p, q) = -\sum_x p(x) \log p(x) + \sum_x p(x) \log \frac{p(x)}{q(x)} = H(p) + \mathrm{KL}(p \,\|\, q) .
$$

The entropy $H(p)$ depends only on the data. The {term}`KL divergence` $\mathrm{KL}(p \,\|\, q)$ is never negative and is zero only when $q = p$ (Gibbs' inequality {footcite}`cover2006elements`). Two consequences:

1. Minimising cross-entropy and minimising $\mathrm{KL}(p \,\|\, q)$ over the model are the same problem, with the same gradients.
2. The lowest possible loss is $H(p)$, not 0. Natural text is not deterministic, so a language model's loss has a floor above zero, the {term}`irreducible loss` of scaling laws.

The cell checks the identity for random distributions over 10 outcomes, and each term against PyTorch: `torch.distributions` gives the entropy and the KL divergence; `F.cross_entropy` accepts a distribution as target; and `F.kl_div` computes $\mathrm{KL}(p \,\|\, q)$ from the arguments `(log q, p)`, in the opposite order to the notation, a frequent source of bugs.
''')

code('''
p = torch.softmax(torch.randn(10, generator=gen), dim=-1)
q = torch.softmax(torch.randn(10, generator=gen), dim=-1)
cross_entropy = -(p * q.log()).sum()
entropy = -(p * p.log()).sum()
kl = (p * (p / q).log()).sum()
assert_close(cross_entropy, entropy + kl)
print(f"H(p, q) = {cross_entropy:.3f} = H(p) {entropy:.3f} "
      f"+ KL(p||q) {kl:.3f}")

assert_close(Categorical(probs=p).entropy(), entropy)
assert_close(kl_divergence(Categorical(probs=p), Categorical(probs=q)), kl)
assert_close(F.cross_entropy(q.log(), p), cross_entropy)  # target: p
assert_close(F.kl_div(q.log(), p, reduction="sum"), kl)   # (log q, p)
print("ok: torch.distributions, F.cross_entropy and F.kl_div agree")
kl_reverse = (q * (q / p).log()).sum()
print(f"KL is not symmetric: KL(p||q) = {kl:.3f}, "
      f"KL(q||p) = {kl_reverse:.3f}")
''')

# ------------------------------------------------------------ minibatch
md(r'''
(sec-minibatch)=
## Minibatch stochastic gradient descent

The loss over a training set is an average, $L(\theta) = \frac1N \sum_{n=1}^N \ell_n(\theta)$, so its gradient is the average of $N$ per-example gradients. For a language model $N$ is billions of tokens, far too many for one step. {term}`Stochastic gradient descent <stochastic gradient descent>` {footcite}`robbins1951stochastic` estimates the gradient from a *minibatch* $\mathcal{B}$ of $B$ examples,

$$
g_{\mathcal B} = \frac{1}{B} \sum_{n \in \mathcal{B}} \nabla \ell_n(\theta), \qquad \theta \leftarrow \theta - \eta\, g_{\mathcal B} .
$$

If the examples of $\mathcal B$ are drawn uniformly, $g_{\mathcal B}$ is *unbiased*: $\mathbb{E}[g_{\mathcal B}] = \nabla L(\theta)$. Its error shrinks with the batch size: if the $B$ examples are drawn independently (with replacement), their per-example gradients are independent with covariance $\Sigma$ each, so

$$
\mathbb{E}\,\lVert g_{\mathcal B} - \nabla L \rVert^2 = \frac{\operatorname{tr} \Sigma}{B} .
$$

We check both on a least-squares problem with $N = 1024$ examples and 8 parameters, $\ell_n = \tfrac12 (x_n^\top \theta - y_n)^2$, whose per-example gradient is $(x_n^\top \theta - y_n)\, x_n$. First, an exact form of unbiasedness: one epoch splits the data into $N/B$ batches, and the average of their gradients is exactly the full gradient.
''')

code('''
N, d = 1024, 8
X = torch.randn(N, d, generator=gen)
y = X @ torch.randn(d, generator=gen) + 0.5 * torch.randn(N, generator=gen)
theta = torch.zeros(d)


def batch_gradient(rows):
    """Autograd's gradient of the mean loss over the examples `rows`."""
    t = theta.clone().requires_grad_()
    (0.5 * (X[rows] @ t - y[rows]) ** 2).mean().backward()
    return t.grad


per_example = (X @ theta - y)[:, None] * X          # (N, d), by hand
full = per_example.mean(dim=0)                      # (d,)
assert_close(full, batch_gradient(torch.arange(N)))
epoch = torch.randperm(N, generator=gen).view(-1, 32)   # 32 batches of 32
assert_close(torch.stack([batch_gradient(b) for b in epoch]).mean(0), full)
print("ok: the mean of one epoch's 32 batch gradients is the full gradient")
''')

md(r'''
Second, the noise. For each batch size we draw 4000 batches with replacement and compare $B \cdot \mathbb{E}\lVert g_{\mathcal B} - \nabla L\rVert^2$ with $\operatorname{tr}\Sigma$; their ratio should be 1 up to sampling error.
''')

code('''
centred = per_example - full
trace_sigma = (centred ** 2).sum(dim=1).mean()       # tr(Sigma)
print("    B   E||g_B - grad L||^2   B * that / tr(Sigma)")
for B in (1, 4, 16, 64, 256):
    rows = torch.randint(0, N, (4000, B), generator=gen)
    g_B = per_example[rows].mean(dim=1)              # (4000, d)
    mse = ((g_B - full) ** 2).sum(dim=1).mean()
    print(f"{B:5d}   {mse:19.3g}   {B * mse / trace_sigma:20.2f}")
    assert abs(B * mse / trace_sigma - 1) < 0.1
''')

md(r'''
Quadrupling the batch divides the squared error by four, that is, halves its typical size: a larger batch buys a more accurate step, but with diminishing returns per example. Beyond some size, the *critical batch size*, a larger batch mostly buys accuracy that the step does not need {footcite}`mccandlish2018empirical`.

(sec-momentum)=
## Momentum

Plain SGD follows each noisy gradient. *Momentum*, Polyak's heavy ball {footcite}`polyak1964some`, keeps a running direction instead. PyTorch's `torch.optim.SGD` writes it with a buffer $b$, an optional L2 weight decay $\lambda$ added to the gradient, and no dampening by default:

$$
\begin{aligned}
g_t &= \nabla \ell(\theta_{t-1}) + \lambda\, \theta_{t-1}, \\
b_t &= \mu\, b_{t-1} + g_t \qquad (b_1 = g_1), \\
\theta_t &= \theta_{t-1} - \eta\, b_t .
\end{aligned}
$$

With a constant gradient $g$, $b_t$ approaches $g / (1 - \mu)$: momentum $\mu = 0.9$ takes steps up to ten times as long in directions where the gradients agree, while components that change sign from step to step average out. The harness below optimises a small softmax regression, 3 classes and 4 features, and records the parameters after every step, so that a hand-written optimiser can be compared with `torch.optim` step by step.
''')

code('''
X_cls = torch.randn(32, 4, generator=gen)
y_cls = torch.randint(0, 3, (32,), generator=gen)
theta0 = 0.5 * torch.randn(3, 4, generator=gen)


def loss_fn(theta):
    return F.cross_entropy(X_cls @ theta.T, y_cls)


def gradient(theta):
    t = theta.clone().requires_grad_()
    loss_fn(t).backward()
    return t.grad


def torch_run(make_optimizer, steps=5):
    """Parameters after each step of a torch.optim optimizer."""
    theta = nn.Parameter(theta0.clone())
    optimizer = make_optimizer([theta])
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(theta).backward()
        optimizer.step()
        history.append(theta.detach().clone())
    return history


def sgd_momentum(lrs, mu, weight_decay=0.0):
    """PyTorch's SGD with momentum, one learning rate per step."""
    theta, buf, history = theta0.clone(), None, []
    for lr in lrs:
        g = gradient(theta) + weight_decay * theta
        buf = g if buf is None else mu * buf + g
        theta = theta - lr * buf
        history.append(theta)
    return history


ours = sgd_momentum([0.1] * 5, mu=0.9, weight_decay=0.01)
reference = torch_run(lambda params: torch.optim.SGD(
    params, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=False))
for a, b in zip(ours, reference):
    assert_close(a, b)
print("ok: 5 steps of hand-written momentum equal torch.optim.SGD")
''')

md(r'''
Another form is common in papers, for instance Sutskever and colleagues' {footcite}`sutskever2013importance`: a velocity $v_t = \mu v_{t-1} - \eta\, g_t$ and $\theta_t = \theta_{t-1} + v_t$. With a constant $\eta$ the two are the same method, with $v_t = -\eta\, b_t$. With a schedule they differ: in PyTorch's form a new learning rate scales the whole step at once, including the accumulated buffer; in the velocity form, only the new gradients get the new rate, and the old velocity keeps coasting for about $1/(1-\mu)$ steps. The cell checks both statements.
''')

code('''
def sgd_velocity(lrs, mu):
    """The velocity form: v = mu v - lr g; theta = theta + v."""
    theta, v, history = theta0.clone(), torch.zeros_like(theta0), []
    for lr in lrs:
        v = mu * v - lr * gradient(theta)
        theta = theta + v
        history.append(theta)
    return history


constant = [0.1] * 10
assert_close(sgd_velocity(constant, 0.9)[-1], sgd_momentum(constant, 0.9)[-1])
print("ok: constant learning rate: the two forms agree")
schedule = [0.1] * 5 + [0.01] * 5                    # cut the rate by 10
gap = (sgd_velocity(schedule, 0.9)[-1] - sgd_momentum(schedule, 0.9)[-1])
assert gap.abs().max() > 1e-2
print(f"after a cut in the learning rate they differ by up to "
      f"{gap.abs().max():.2f}")
''')

# ------------------------------------------------------------ Adam
md(r'''
(sec-adam)=
## Adam

Adam {footcite}`kingma2015adam` keeps two running averages per parameter, of the gradient and of its square, and divides one by the square root of the other, so that every parameter moves by roughly the same amount whatever the scale of its gradient. With $g_t = \nabla \ell(\theta_{t-1})$ and all operations element-wise:

$$
\begin{aligned}
m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, &
v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2, \\
\hat m_t &= \frac{m_t}{1 - \beta_1^t}, &
\hat v_t &= \frac{v_t}{1 - \beta_2^t}, \\
\theta_t &= \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, & &
\end{aligned}
$$

starting from $m_0 = v_0 = 0$. The *bias correction* in the second line undoes that start: after $t$ steps of a constant gradient $g$, $m_t = (1 - \beta_1^t)\, g$, too small by exactly the factor that $\hat m_t$ divides by, and likewise for $v_t$. `torch.optim.Adam` with `weight_decay=λ` adds an L2 penalty, $g_t \leftarrow g_t + \lambda \theta_{t-1}$, before everything else. AdamW {footcite}`loshchilov2019adamw` instead *decouples* the decay from the gradient and shrinks the weights directly, $\theta_t = (1 - \eta\lambda)\,\theta_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$. One function implements all three.
''')

code('''
def adam(steps, lr, betas, eps=1e-8, weight_decay=0.0, decoupled=False,
         bias_correction=True):
    """Adam (L2 penalty) or AdamW (decoupled decay), by hand."""
    b1, b2 = betas
    theta, history = theta0.clone(), []
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t in range(1, steps + 1):
        g = gradient(theta)
        if decoupled:
            theta = theta * (1 - lr * weight_decay)   # AdamW: shrink weights
        else:
            g = g + weight_decay * theta              # Adam: L2 penalty
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m, v
        if bias_correction:
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
        history.append(theta)
    return history


optim = torch.optim
cases = {
    "Adam": (dict(), lambda p: optim.Adam(p, lr=0.01)),
    "Adam, L2 0.1": (dict(weight_decay=0.1),
                     lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1)),
    "AdamW, decay 0.1": (
        dict(weight_decay=0.1, decoupled=True, betas=(0.9, 0.95)),
        lambda p: optim.AdamW(p, lr=0.01, betas=(0.9, 0.95),
                              weight_decay=0.1)),
}
for name, (kwargs, make) in cases.items():
    kwargs = {"betas": (0.9, 0.999), **kwargs}
    for a, b in zip(adam(5, 0.01, **kwargs), torch_run(make)):
        assert_close(a, b)
    print(f"ok: 5 steps of {name} by hand equal torch.optim")
''')

md(r'''
The first step shows what the bias correction is for. At $t = 1$, $\hat m_1 = g_1$ and $\hat v_1 = g_1^2$, so the update is $-\eta\, g_1 / (\lvert g_1 \rvert + \epsilon) \approx -\eta \operatorname{sign}(g_1)$: every parameter moves by almost exactly $\eta$, whatever the size of its gradient. Without the correction the first step would be $\eta (1 - \beta_1) / \sqrt{1 - \beta_2}$ per parameter, about $3.16\,\eta$ with PyTorch's default $\beta_2 = 0.999$ and about $0.45\,\eta$ with $\beta_2 = 0.95$, the value of `lmbook.train.TrainConfig`.
''')

code('''
g1 = gradient(theta0)
step1 = adam(1, 0.01, (0.9, 0.999))[0] - theta0
assert g1.abs().min() > 1e-4                  # so that eps is negligible
assert_close(step1.abs(), torch.full_like(step1, 0.01), rtol=1e-4, atol=0)
print(f"gradient entries from {g1.abs().min():.3f} to {g1.abs().max():.3f};"
      f" every first step has size lr = 0.01")
for b2 in (0.999, 0.95):
    raw = adam(1, 0.01, (0.9, b2), bias_correction=False)[0] - theta0
    expected = 0.01 * 0.1 / (1 - b2) ** 0.5   # lr (1 - b1) / sqrt(1 - b2)
    assert_close(raw.abs(), torch.full_like(raw, expected), rtol=1e-4, atol=0)
    print(f"without bias correction, beta2 = {b2}: first step "
          f"{raw.abs().max() / 0.01:.2f} lr")
''')

md(r'''
(sec-adamw)=
### AdamW is not Adam with an L2 penalty

For plain SGD, an L2 penalty $\tfrac{\lambda}{2}\lVert\theta\rVert^2$ and weight decay are the same thing: the penalty adds $\lambda\theta$ to the gradient, and the step subtracts $\eta\lambda\theta$. In Adam they are not, because the penalty's gradient $\lambda\theta$ goes through the division by $\sqrt{\hat v_t}$ like any other gradient. A weight whose loss gradient is small is then decayed strongly (its $\sqrt{\hat v_t}$ is small), and one whose loss gradient is large hardly at all. AdamW decays every weight at the same rate $\eta\lambda$ per step, which is what Loshchilov and Hutter showed to regularise better {footcite}`loshchilov2019adamw`, and what `lmbook.train` uses (on matrices only; biases and norm gains are not decayed).

The cell makes the difference visible with two parameters, both starting at 1: the loss $10 (\theta_2 - 0.5)^2$ ignores the first, so only the decay acts on it. After 50 steps with $\eta = \lambda = 0.01$, AdamW has shrunk it by exactly $(1 - \eta\lambda)^{50}$. Adam with the L2 penalty normalises the tiny gradient $\lambda\theta_1$ to a step of about $\eta$, and removes almost half of the weight.
''')

code('''
def two_weights(optimizer_class, steps=50, lr=0.01, decay=0.01):
    theta = nn.Parameter(torch.tensor([1.0, 1.0]))
    optimizer = optimizer_class([theta], lr=lr, weight_decay=decay)
    for _ in range(steps):
        optimizer.zero_grad()
        (10 * (theta[1] - 0.5) ** 2).backward()   # ignores theta[0]
        optimizer.step()
    return theta.detach()


l2, decoupled = two_weights(optim.Adam), two_weights(optim.AdamW)
assert_close(decoupled[0], torch.tensor((1 - 0.01 * 0.01) ** 50))
print(f"ignored weight after 50 steps: Adam + L2 {l2[0]:.3f}, "
      f"AdamW {decoupled[0]:.3f} = (1 - lr * decay)^50")
gap = (adam(5, 0.01, (0.9, 0.999), weight_decay=0.1)[-1]
       - adam(5, 0.01, (0.9, 0.999), weight_decay=0.1, decoupled=True)[-1])
assert gap.abs().max() > 1e-4
print(f"softmax regression, 5 steps: the two differ by up to "
      f"{gap.abs().max():.4f}")
''')

# ------------------------------------------------------------ schedules
md(r'''
(sec-lr-schedule)=
## Warmup and cosine decay

Language models are trained with a learning rate that changes with the step. `lmbook.train` uses the most common schedule of the last years: a linear *warmup* over the first $W$ steps {footcite}`goyal2017accurate`, then a cosine decay from the peak $\eta_{\max}$ to $\eta_{\min}$ at the last step $S$ {footcite}`loshchilov2017sgdr`. For step $t = 0, 1, 2, \dots$

$$
\eta_t =
\begin{cases}
\eta_{\max}\, \dfrac{t + 1}{W} & t < W, \\[2ex]
\eta_{\min} + (\eta_{\max} - \eta_{\min})\, \dfrac{1 + \cos\!\big(\pi \frac{t - W}{S - W}\big)}{2} & W \le t < S, \\[2ex]
\eta_{\min} & t \ge S .
\end{cases}
$$

Warmup keeps the first updates small while Adam's averages $\hat v_t$ still rest on a few gradients {footcite}`liu2020radam` and the gradients of a freshly initialised model can be large, which is what makes post-LN Transformers diverge without it ({ref}`sec-pre-post-ln`); the cosine lowers the rate smoothly so that the parameters settle. The code is a vectorised translation, checked at every step against `lmbook.train.lr_at`, and against the same schedule assembled from PyTorch's schedulers.
''')

code('''
def warmup_cosine(steps, lr, min_lr, warmup, max_steps):
    """The learning rate of each step in `steps` (a NumPy array)."""
    progress = np.clip((steps - warmup) / (max_steps - warmup), 0, 1)
    cosine = min_lr + (lr - min_lr) * (1 + np.cos(np.pi * progress)) / 2
    return np.where(steps < warmup, lr * (steps + 1) / warmup, cosine)


cfg = TrainConfig(max_steps=1000, warmup_steps=100, lr=3e-4, min_lr=3e-5)
steps = np.arange(1100)
ours = warmup_cosine(steps, cfg.lr, cfg.min_lr, cfg.warmup_steps,
                     cfg.max_steps)
assert_close(ours, np.array([lr_at(int(t), cfg) for t in steps]))
print("ok: warmup_cosine equals lmbook.train.lr_at at all 1100 steps")

W, S = cfg.warmup_steps, cfg.max_steps
optimizer = optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
scheduler = optim.lr_scheduler.SequentialLR(optimizer, [
    optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / W,
                                end_factor=1.0, total_iters=W - 1),
    optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=S - W,
                                         eta_min=cfg.min_lr),
], milestones=[W])
torch_lrs = []
for _ in range(S):
    torch_lrs.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
assert_close(ours[:S], np.array(torch_lrs))
print("ok: and PyTorch's LinearLR then CosineAnnealingLR")
''')

code('''
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(steps, ours * 1e4)
ax.axvline(W, color="grey", ls=":", lw=1)
ax.axvline(S, color="grey", ls=":", lw=1)
ax.text(W + 15, 1.6, "end of warmup")
ax.text(S + 15, 1.6, "max_steps")
ax.set(xlabel="optimizer step t", ylabel="learning rate (x 1e-4)",
       ylim=(0, 3.3))
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
''', alt="Learning rate against step from 0 to 1100. It rises linearly from "
         "almost 0 to 3e-4 over the first 100 steps, then falls along a "
         "half cosine to 3e-5 at step 1000, and stays there.",
     caption="The warmup-plus-cosine schedule of `lmbook.train` for lr = 3e-4, "
             "min_lr = 3e-5, 100 warmup steps and 1000 steps in all.",
     name="fig-lr-schedule")

md(r'''
A cosine schedule needs the number of steps in advance. Many recent pretraining runs instead keep the rate constant after warmup and decay it only in a short final phase (*warmup–stable–decay*), so that a run can be extended or branched from any checkpoint of the stable phase {footcite}`hu2024minicpm,hagele2024scaling`.

(sec-grad-clip)=
## Gradient clipping

A single bad batch can produce a gradient far larger than usual, and one step with it can undo much of the training so far. Clipping by the *global* norm {footcite}`pascanu2013difficulty` rescales all gradients together when their joint norm exceeds a threshold $c$:

$$
\lVert g \rVert = \sqrt{\sum_{\text{parameters } p} \lVert g_p \rVert^2},
\qquad
g_p \leftarrow g_p \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert + 10^{-6}}\Big).
$$

The $10^{-6}$ is PyTorch's, against division by zero. Because every gradient is multiplied by the same number, the direction of the step is unchanged; only its length is capped. Clipping each entry to $[-c, c]$ (`clip_grad_value_`) is a different operation, which does change the direction. `lmbook.train.Trainer` clips the global norm to `grad_clip = 1.0` by default and records the norm before clipping.
''')

code('''
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3))
inputs = 5 * torch.randn(64, 10, generator=gen)
targets = torch.randint(0, 3, (64,), generator=gen)
F.cross_entropy(model(inputs), targets).backward()
grads = [p.grad.clone() for p in model.parameters()]


def clip_global_norm(grads, max_norm):
    total = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (total.item() + 1e-6))
    return [g * scale for g in grads], total


clipped, total = clip_global_norm(grads, max_norm=0.1)
torch_total = nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.1)
assert_close(total, torch_total)
for ours, p in zip(clipped, model.parameters()):
    assert_close(ours, p.grad)
print(f"ok: global norm {total:.2f} clipped to 0.1, as clip_grad_norm_ does")


def flat(gs):
    return torch.cat([g.flatten() for g in gs])


by_value = [g.clamp(-0.01, 0.01) for g in grads]   # clip_grad_value_
cos_norm = F.cosine_similarity(flat(clipped), flat(grads), dim=0)
cos_value = F.cosine_similarity(flat(by_value), flat(grads), dim=0)
assert_close(cos_norm, torch.tensor(1.0))
assert cos_value < 0.99
print(f"cosine with the original gradient: norm clipping {cos_norm:.3f}, "
      f"value clipping {cos_value:.3f}")
''')

# ------------------------------------------------------------ init
md(r'''
(sec-init-variance)=
## Initialisation and variance

Before the first step, the weights are random, and their scale decides whether a signal can pass through a deep network at all. Take a linear layer $y = W x$ with $n_{\text{in}}$ inputs, weights drawn independently with mean 0 and variance $\sigma^2$, independent of the input. Each output is a sum of $n_{\text{in}}$ independent terms, so

$$
\mathbb{E}[y_i^2] = n_{\text{in}}\, \sigma^2\, \mathbb{E}[x_j^2] .
$$

The signal keeps its size through the layer when $\sigma^2 = 1/n_{\text{in}}$. The backward pass multiplies by $W^\top$, and keeps the gradient's size when $\sigma^2 = 1/n_{\text{out}}$. Glorot and Bengio's compromise, *Xavier* initialisation, takes $\sigma^2 = 2/(n_{\text{in}} + n_{\text{out}})$ {footcite}`glorot2010understanding`. A ReLU sets the negative half of a symmetric input to zero, which halves the mean square, $\mathbb{E}[\operatorname{ReLU}(z)^2] = \tfrac12 \mathbb{E}[z^2]$; He and colleagues compensate with $\sigma^2 = 2/n_{\text{in}}$ {footcite}`he2015delving`. PyTorch's own default for `nn.Linear` is a uniform distribution with variance $1/(3 n_{\text{in}})$. First the statistics of PyTorch's initialisers against these formulas, on a $512 \times 256$ weight ($n_{\text{out}} = 512$, $n_{\text{in}} = 256$):
''')

code('''
n_out, n_in = 512, 256
inits = {
    "xavier_normal_": (nn.init.xavier_normal_, 2 / (n_in + n_out)),
    "kaiming_normal_ (relu)": (
        lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        2 / n_in),
    "nn.Linear default": (
        lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
        1 / (3 * n_in)),
}
torch.manual_seed(0)
print(f"{'initialiser':24s} {'std formula':>11s} {'measured':>9s}")
for name, (init, variance) in inits.items():
    w = init(torch.empty(n_out, n_in))
    print(f"{name:24s} {math.sqrt(variance):11.4f} {w.std().item():9.4f}")
    assert abs(w.std().item() / math.sqrt(variance) - 1) < 0.01
linear = nn.Linear(n_in, n_out)
assert abs(linear.weight.var().item() * 3 * n_in - 1) < 0.02
print("ok: nn.Linear's own weights have variance 1 / (3 n_in)")
''')

md(r'''
Now stacks of 30 layers of width 256, applied to 64 random inputs with unit variance, and the mean square of the activations after each layer, for 8 random stacks of each kind. By the formula, each layer multiplies it by $n\sigma^2$, times $\tfrac12$ after a ReLU: by 1 for linear layers with Xavier weights and for ReLU layers with He weights, by $\tfrac12$ for ReLU with Xavier weights, and by $\tfrac16$ for ReLU with PyTorch's default.
''')

code('''
def mean_squares(init, relu, seed, depth=30, width=256):
    \"\"\"Mean square of the activations after each layer of a stack.\"\"\"
    torch.manual_seed(seed)
    h = torch.randn(64, width)
    out = [h.pow(2).mean().item()]
    for _ in range(depth):
        h = h @ init(torch.empty(width, width)).T
        h = torch.relu(h) if relu else h
        out.append(h.pow(2).mean().item())
    return np.array(out)


stacks = {  # name: (initialiser, ReLU?, predicted factor per layer)
    "linear, Xavier": (nn.init.xavier_normal_, False, 1.0),
    "ReLU, He": (inits["kaiming_normal_ (relu)"][0], True, 1.0),
    "ReLU, Xavier": (nn.init.xavier_normal_, True, 0.5),
    "ReLU, nn.Linear default": (inits["nn.Linear default"][0], True, 1 / 6),
}
curves = {}                             # name: (8 stacks, 31 layers)
print(f"{'median of 8 stacks':24s} {'layer 10':>8s} {'layer 20':>8s}"
      f" {'layer 30':>8s} {'predicted':>9s}  range at 30")
for name, (init, relu, factor) in stacks.items():
    curves[name] = np.stack([mean_squares(init, relu, s) for s in range(8)])
    median = np.median(curves[name], axis=0)
    row = " ".join(f"{median[k]:8.2g}" for k in (10, 20, 30))
    low, high = curves[name][:, 30].min(), curves[name][:, 30].max()
    print(f"{name:24s} {row} {factor ** 30:9.2g}  {low:.1g} to {high:.1g}")
    assert abs(math.log(median[30] / factor ** 30)) < math.log(4)
''')

code('''
fig, ax = plt.subplots(figsize=(7, 3.5))
colours = ["#0072B2", "#E69F00", "#009E73", "#D55E00"]  # Okabe-Ito
styles = ["-", "--", "-", "-"]
for (name, runs), colour, marker, ls in zip(curves.items(), colours,
                                            "os^v", styles):
    for run in runs:
        ax.plot(run, color=colour, lw=0.6, alpha=0.4)
    ax.plot(np.median(runs, axis=0), color=colour, marker=marker, ms=3.5,
            lw=1.8, ls=ls, label=name)
ax.set(yscale="log", xlabel="layer", ylabel="mean square of activations",
       ylim=(1e-27, 1e2))
ax.legend(loc="lower left")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
''', alt="Mean square of the activations on a log scale against the layer, "
         "0 to 30, for 8 random stacks of each kind (thin lines) and their "
         "median (thick lines with markers). The medians for linear layers "
         "with Xavier weights and for ReLU layers with He weights stay near "
         "1, the He stacks spreading over about one order of magnitude. ReLU "
         "with Xavier weights falls on a straight line to about 1e-9 at layer "
         "30; ReLU with PyTorch's default falls much faster, to about 1e-24.",
     caption="Mean square of the activations through 30-layer stacks at "
             "initialisation: 8 random stacks of each kind (thin) and their "
             "median (thick). The right variance for the nonlinearity keeps "
             "the scale; too small a variance loses a constant factor per "
             "layer.",
     name="fig-init-variance")

md(r'''
The medians follow their predicted factors. A factor of $\tfrac12$ per layer looks harmless and still loses nine orders of magnitude in 30 layers, and a factor of $\tfrac16$, PyTorch's default with ReLU, loses twenty-three. With the right variance the scale is kept *on average*, but a single stack is a product of 30 random factors and wanders: the He stacks end anywhere from 0.2 to 3 at layer 30. This spread comes from the finite width, and it grows with the ratio of depth to width {footcite}`hanin2018start`.

This is the forward-pass twin of the vanishing gradient of {ref}`sec-residual-math`, where the same default initialisation with tanh made the gradient vanish without residual connections.

(sec-gpt2-init)=
## GPT-2's scaled residual initialisation

A Transformer adds a different problem. Its residual stream is a sum: with $L$ blocks, $x_L = x_0 + \sum_{k=1}^{2L} r_k$, where the $r_k$ are the outputs of the $L$ attention and $L$ MLP branches. At initialisation the branch outputs are roughly independent with mean 0, so their variances add:

$$
\operatorname{Var}(x_L) \approx \operatorname{Var}(x_0) + \sum_{k=1}^{2L} \operatorname{Var}(r_k) .
$$

Each branch ends with a projection `c_proj`, and since the branch reads a normalised input (pre-LN, {ref}`sec-pre-post-ln`), $\operatorname{Var}(r_k)$ is proportional to the variance $\sigma^2$ of the `c_proj` weights. GPT-2 therefore initialises these weights with a standard deviation divided by $\sqrt{N}$ for $N$ residual layers {footcite}`radford2019gpt2`. In nanoGPT {footcite}`karpathy2022nanogpt` and `lmbook` it is $\sigma = 0.02 / \sqrt{2L}$, and then the $2L$ branches together add about as much variance as a single branch with the ordinary $\sigma = 0.02$, at any depth. The rule lives at the end of `GPT.__init__`,

```{literalinclude} ../../lmbook/gpt.py
:language: python
:start-at: self.apply(self._init_weights)
:end-at: nn.init.normal_(p, mean=0.0, std=std)
:dedent: 8
```

after `_init_weights` has drawn every `nn.Linear` and `nn.Embedding` weight from $\mathcal{N}(0, 0.02^2)$ and set the biases to zero:

```{literalinclude} ../../lmbook/gpt.py
:language: python
:pyobject: GPT._init_weights
:dedent: 4
```

We measure it on `lmbook.gpt.GPT` with 24 layers of width 128 at initialisation: the variance of the residual stream over the features of each token, averaged over 4 × 64 random tokens, after the embeddings ($x_0$) and after every block, once with GPT-2's initialisation and once with every `c_proj` weight re-drawn with the unscaled $\sigma = 0.02$.
''')

code('''
def stream_variance(n_layer, scaled, n_embd=128, T=64):
    """Var over features of the residual stream after each block, / x_0's."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=T, n_layer=n_layer, n_head=4,
                    n_embd=n_embd)
    model = GPT(cfg).eval()
    if not scaled:                         # undo GPT-2's 1 / sqrt(2L)
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02)
    idx = torch.randint(0, 65, (4, T), generator=torch.Generator()
                        .manual_seed(1))
    variances = []
    with torch.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(
            torch.arange(T))
        variances.append(x.var(dim=-1).mean().item())
        for block in model.transformer.h:
            x = block(x)[0]
            variances.append(x.var(dim=-1).mean().item())
    return np.array(variances) / variances[0]


growth = {scaled: stream_variance(24, scaled) for scaled in (True, False)}
print("layer   Var(x_l) / Var(x_0)")
print("        0.02 / sqrt(2L)   0.02")
for layer in (0, 1, 6, 12, 18, 24):
    print(f"{layer:5d}   {growth[True][layer]:15.1f}   "
          f"{growth[False][layer]:5.0f}")
added = {s: growth[s][-1] - 1 for s in growth}
print(f"variance added by 24 blocks: {added[True]:.1f} x Var(x_0) scaled, "
      f"{added[False]:.0f} x unscaled ({added[False] / added[True]:.0f} "
      f"times more)")
assert added[False] / added[True] > 2 * 24 / 2
''')

code('''
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(growth[False], "s-", ms=3.5, label="c_proj std 0.02")
ax.plot(growth[True], "o-", ms=3.5,
        label="c_proj std 0.02 / sqrt(2L) (GPT-2, lmbook)")
ax.set(yscale="log", xlabel="block l", ylabel="Var(x_l) / Var(x_0)")
ax.legend(loc="center right")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
''', alt="Variance of the residual stream relative to the embeddings "
         "against the block index, 0 to 24, on a log scale. With GPT-2's "
         "scaled initialisation it rises gently from 1 to about 3. With the "
         "unscaled standard deviation 0.02 it jumps to about 5 after the "
         "first block and keeps rising to about 130.",
     caption="Growth of the residual stream's variance through a 24-layer "
             "`lmbook.gpt.GPT` at initialisation, with and without GPT-2's "
             "scaling of the residual projections.",
     name="fig-gpt2-init")

md(r'''
Both curves grow roughly linearly, as a sum of branch outputs should, but at very different rates. With the scaled initialisation the whole stack adds about twice the variance of the embeddings; without it, the stream grows to over a hundred times the embeddings' variance, and the added variance is 63 times that of the scaled model. Independent branches would give $2L = 48$; large branches also become correlated with each other, which adds more. Does the scaled version really not depend on depth? The next cell repeats the measurement for 6 and 12 layers.
''')

code('''
print("layers   added variance / Var(x_0)")
print("         scaled   unscaled")
for n_layer in (6, 12):
    a = stream_variance(n_layer, True)[-1] - 1
    b = stream_variance(n_layer, False)[-1] - 1
    print(f"{n_layer:6d}   {a:6.1f}   {b:8.0f}")
    assert abs(a / added[True] - 1) < 0.5
print(f"{24:6d}   {added[True]:6.1f}   {added[False]:8.0f}")
''')

md(r'''
With GPT-2's scaling the variance that the blocks add stays the same from 6 to 24 layers, about twice the embeddings'; without it, it doubles with every doubling of the depth. Because every pre-LN branch reads a normalised input, the growth does not stop the forward pass; its cost is elsewhere. A large stream makes each later branch a small relative change, and, as {ref}`sec-residual-math` showed, large branches make the gradient grow with depth. Keeping the residual branches small at initialisation avoids both.

## Summary

- Minimising cross-entropy is maximum likelihood; for a categorical variable the optimum is the empirical distribution. $H(p, q) = H(p) + \mathrm{KL}(p\,\|\,q)$, so the loss cannot fall below the entropy of the data; `torch.distributions`, `F.cross_entropy` and `F.kl_div` (argument order: $\log q$, then $p$) agree with the formulas.
- A minibatch gradient is an unbiased estimate of the full gradient, with squared error $\operatorname{tr}\Sigma / B$.
- SGD with momentum: $b_t = \mu b_{t-1} + g_t$, $\theta_t = \theta_{t-1} - \eta b_t$ (PyTorch's form, which differs from the velocity form under a schedule). Adam: running averages $m_t$, $v_t$ with bias correction, and the step $\eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)$, whose first step is $\eta$ per parameter. AdamW shrinks the weights by $(1 - \eta\lambda)$ per step; Adam with an L2 penalty does something else, measurably. All matched `torch.optim` step for step.
- The schedule of `lmbook.train`: linear warmup to $\eta_{\max}$, then a cosine to $\eta_{\min}$. Clipping by the global norm rescales all gradients by $\min(1, c / \lVert g \rVert)$ and keeps their direction.
- Xavier ($\sigma^2 = 2/(n_{\text{in}} + n_{\text{out}})$) and He ($\sigma^2 = 2/n_{\text{in}}$ for ReLU) keep the activations' scale through depth; other scales lose or gain a constant factor per layer. GPT-2's $0.02/\sqrt{2L}$ on the residual projections keeps the variance the blocks add to the residual stream independent of depth.

## Exercises
''')

md(r'''
```{exercise}
:label: ex-tm-kl
Let $p = (0.5, 0.5)$ and $q = (0.9, 0.1)$. Compute $H(p, q)$ and $\mathrm{KL}(p \,\|\, q)$ in nats, and check with `lmbook.exercises.check("cross-entropy-kl", [H_pq, KL])`. Which is larger, $\mathrm{KL}(p\,\|\,q)$ or $\mathrm{KL}(q\,\|\,p)$?
```

```{solution} ex-tm-kl
:class: dropdown
$H(p, q) = -\tfrac12(\ln 0.9 + \ln 0.1) \approx 1.204$, $H(p) = \ln 2 \approx 0.693$, so $\mathrm{KL}(p\,\|\,q) = 1.204 - 0.693 \approx 0.511$.

    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    H_pq = -(p * q.log()).sum()
    KL = kl_divergence(Categorical(probs=p), Categorical(probs=q))
    lmbook.exercises.check("cross-entropy-kl", [H_pq, KL])

$\mathrm{KL}(q\,\|\,p) = 0.9 \ln 1.8 + 0.1 \ln 0.2 \approx 0.368$ is smaller: $\mathrm{KL}(p\,\|\,q)$ punishes $q$ hard for giving only $0.1$ to an outcome that $p$ gives $0.5$.
```

```{exercise}
:label: ex-tm-adam
A parameter gets the gradient $g_1 = 0.004$ at the first step of Adam ($\eta = 10^{-3}$, $\beta = (0.9, 0.999)$, $\epsilon = 10^{-8}$, PyTorch's defaults) and $g_2 = -0.004$ at the second. What are its changes $\theta_1 - \theta_0$ and $\theta_2 - \theta_1$? Check with `lmbook.exercises.check("adam-two-steps", [step_1, step_2])`, then with `torch.optim.Adam`. Why is the second step so small, and in which direction does it go?
```

```{solution} ex-tm-adam
:class: dropdown
Step 1: $\hat m_1 = g_1$ and $\sqrt{\hat v_1} = |g_1|$, so the change is $-\eta\, g_1 / (|g_1| + \epsilon) \approx -1.00 \times 10^{-3}$. Step 2: $m_2 = 0.9 \cdot 0.0004 + 0.1 \cdot (-0.004) = -0.00004$ and $\hat m_2 = m_2 / (1 - 0.9^2) \approx -2.11 \times 10^{-4}$; $g^2$ is the same at both steps, so $\hat v_2 = g^2$ and $\sqrt{\hat v_2} = 0.004$. The change is $-\eta\, \hat m_2 / 0.004 \approx +5.26 \times 10^{-5}$.

    theta = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([theta], lr=1e-3)
    steps = []
    for g in (0.004, -0.004):
        theta.grad = torch.tensor([g])
        before = theta.item()
        optimizer.step()
        steps.append(theta.item() - before)
    lmbook.exercises.check("adam-two-steps", steps)

$\hat m_2$ averages the two opposite gradients with weights $0.09/0.19 \approx 0.47$ and $0.1/0.19 \approx 0.53$, so they nearly cancel: the step is $\eta/19$, against the new gradient, but only just. Plain SGD would have taken a full step back.
```

```{exercise}
:label: ex-tm-schedule
With `TrainConfig`'s defaults (`lr=3e-4`, `min_lr=3e-5`, `warmup_steps=100`, `max_steps=1000`), what is the learning rate at step 49 and at step 550? Compute both from the formula, then check with `lmbook.exercises.check("warmup-cosine-lr", [lr_49, lr_550])` and with `lr_at`.
```

```{solution} ex-tm-schedule
:class: dropdown
Step 49 is in the warmup: $3 \times 10^{-4} \cdot 50/100 = 1.5 \times 10^{-4}$. Step 550 is half-way through the cosine, $(550 - 100)/900 = 0.5$, where $(1 + \cos(\pi/2))/2 = 0.5$: $3 \times 10^{-5} + 0.5 \cdot 2.7 \times 10^{-4} = 1.65 \times 10^{-4}$.

    cfg = TrainConfig()
    lmbook.exercises.check("warmup-cosine-lr", [lr_at(49, cfg), lr_at(550, cfg)])
```

```{exercise}
:label: ex-tm-clip
A model has two parameter tensors with gradients $(2, -1)$ and $(2, 4)$. What is the global gradient norm, and what does the entry $-1$ become after `clip_grad_norm_(..., max_norm=2.0)`? Check with `lmbook.exercises.check("clip-global-norm", [norm, clipped])`. What would clipping each tensor by its own norm give instead?
```

```{solution} ex-tm-clip
:class: dropdown
$\lVert g \rVert = \sqrt{4 + 1 + 4 + 16} = 5$, and every gradient is multiplied by $2/5$ (up to PyTorch's $10^{-6}$), so $-1$ becomes $-0.4$.

    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([2.0, -1.0]), torch.tensor([2.0, 4.0])
    norm = nn.utils.clip_grad_norm_([a, b], max_norm=2.0)
    lmbook.exercises.check("clip-global-norm", [norm, a.grad[1]])

Clipped on its own, the first tensor (norm $\sqrt 5 \approx 2.24$) would be scaled by $2/\sqrt 5$, giving $-0.894$, and the second by $2/\sqrt{20}$: the two tensors would be scaled differently, and the direction of the whole step would change.
```

```{exercise}
:label: ex-tm-init
GPT-2 small has $C = 768$ and an MLP of width $4C = 3072$: `mlp.c_fc` maps $768 \to 3072$ and `mlp.c_proj` maps $3072 \to 768$. What standard deviation would Xavier initialisation give `c_fc`, and He initialisation `c_proj`? Check with `lmbook.exercises.check("init-std", [xavier_fc, he_proj])`. Compare both with GPT-2's $0.02$, and with the $0.02/\sqrt{24}$ that GPT-2 actually gives `c_proj`.
```

```{solution} ex-tm-init
:class: dropdown
Xavier: $\sqrt{2/(768 + 3072)} \approx 0.0228$. He: $\sqrt{2/3072} \approx 0.0255$ ($n_{\text{in}} = 3072$).

    fc, proj = torch.empty(3072, 768), torch.empty(768, 3072)  # (out, in)
    nn.init.xavier_normal_(fc)
    nn.init.kaiming_normal_(proj, nonlinearity="relu")
    print(fc.std(), proj.std())
    lmbook.exercises.check("init-std", [math.sqrt(2 / 3840),
                                        math.sqrt(2 / 3072)])

GPT-2's $0.02$ is close to both, the Xavier scale of its widest matrices. Its residual projections, though, get $0.02/\sqrt{24} \approx 0.0041$, six times less than He's value: at initialisation each block is meant to add only a little to the residual stream ({ref}`sec-gpt2-init`), not to pass on a signal of full size as a layer of a plain stack must.
```

## References

```{footbibliography}
```
''')

nb.write("/work/main/chapters/03-mathematics/training-math.ipynb")
