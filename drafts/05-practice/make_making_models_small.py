# ruff: noqa: E501  (prose and LaTeX lines of the chapter)
"""Writes chapters/05-practice/making-models-small.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-making-models-small)=
# Making models small and fast

A trained model is a file of numbers, nearly all of them the weights of its linear layers, stored as 32- or 16-bit floats. Serving it costs memory to hold those numbers and, when it generates one token at a time, the time to read all of them from memory for every token. This chapter takes three ways to make a model cheaper, and measures each on the book's house model instead of trusting the usual claims.

{term}`Quantization` stores each weight as an 8- or 4-bit integer with a floating-point scale shared by a small group of weights. It is written here by hand, then done with ONNX Runtime's quantization tools, whose int4 format runs on CPUs with kernels that read the packed integers. {term}`Knowledge distillation` {footcite}`hinton2015distillation` trains a smaller student to imitate the model's output distribution. And export to {term}`ONNX` hands the model to ONNX Runtime {footcite}`onnxruntime2021`, a separate inference engine, whose output must equal PyTorch's before its speed means anything.

```{admonition} Learning goals
:class: tip
After this chapter you can

- quantize a weight matrix group-wise to int8 and int4 by hand, pack two 4-bit integers in a byte, and predict the size of the result;
- measure what quantization costs in held-out loss, and explain why 4-bit weights need small groups;
- say why weight-only quantization saves memory but does not by itself make a CPU faster, and measure it;
- write the distillation loss with its temperature and its $\tau^2$ factor, and train a student with it;
- export a model to ONNX, check that ONNX Runtime computes the same logits, and compare their latency;
- quantize the exported graph with ONNX Runtime to int8 and to 4-bit blocks, and check its 4-bit integers and scales against your own.
```
""")

code(r"""
import copy
import io
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # local folders only (before HF imports)

import tempfile
import timeit
import warnings

import matplotlib.pyplot as plt
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
import transformers
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import (
    MatMulNBitsQuantizer)
from torch.testing import assert_close
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import GPT, GPTConfig, house_model_path
from lmbook.quantize import (QuantLinear, bytes_per_weight, dequantize,
                             model_size_bytes, pack_int4,
                             quantize_groupwise, quantize_model,
                             unpack_int4)
from lmbook.utils import release_memory

# The ONNX exporter logs operators of torchvision (not needed here), and
# importing ONNX Runtime's 4-bit quantizer sets Python's logging to INFO.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)
logging.getLogger().setLevel(logging.WARNING)

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations
plt.style.use("tableau-colorblind10")
# One thread: for a model this small, two threads that wait for each other
# on a machine shared with other jobs can be many times slower.
torch.set_num_threads(1)
print("onnx", onnx.__version__, "| onnxruntime", ort.__version__)
""")

md(r"""
## One model variable

Every cell uses the model named in `MODEL`: offline, and in the book's tests, the house model `shakespeare-bpe`, a 2.6-million-parameter model with Llama's block ({ref}`chap-modern-llm`), trained on the first 90% of Tiny Shakespeare with a byte-level BPE tokenizer of 1024 tokens. The measurements use the last 10%, which it never saw: `held_out_loss` is its mean {term}`cross-entropy` on the first 32 windows of 128 tokens there, in nats per token.

```{admonition} Running online: use a model from the Hub
:class: note
Set the environment variable `LMBOOK_MODEL` (or edit the cell) to run the chapter on a Hub model with Llama's layout, such as `HuggingFaceTB/SmolLM2-135M` (135M parameters) or `Qwen/Qwen2.5-0.5B`; remove the `HF_HUB_OFFLINE` line above so that it can be downloaded. Quantization and ONNX export run unchanged, and on a model of this size the difference in speed between the formats is far larger than on the house model; the student of the distillation section is sized for the house model.
```
""")

code(r"""
MODEL = os.environ.get("LMBOOK_MODEL",
                       str(house_model_path("shakespeare-bpe")))
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForCausalLM.from_pretrained(MODEL).eval()

_, val_text = lmbook.train_val_split(lmbook.load_text("tinyshakespeare"))
val_ids = torch.tensor(tokenizer(val_text)["input_ids"])
N_WIN, T = 32, 128  # held-out windows, tokens per window
x_val = val_ids[:N_WIN * T].view(N_WIN, T)
y_val = val_ids[1:N_WIN * T + 1].view(N_WIN, T)


@torch.no_grad()
def held_out_loss(m):  # mean cross-entropy in nats per token
    losses = [F.cross_entropy(m(x).logits.flatten(0, 1), y.flatten())
              for x, y in zip(x_val.split(8), y_val.split(8))]  # memory
    return torch.stack(losses).mean().item()


def file_size(m):  # bytes of the saved state dict (shared tensors once)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    return buffer.tell()


fp32_loss, fp32_size = held_out_loss(model), file_size(model)
n_linear = sum(mod.weight.numel() for name, mod in model.named_modules()
               if isinstance(mod, torch.nn.Linear) and name != "lm_head")
print(f"{model.num_parameters():,} parameters, {n_linear:,} of them in the "
      f"blocks' linear layers")
print(f"fp32: {fp32_size / 1e6:.2f} MB, held-out loss {fp32_loss:.3f}")
""")

md(r"""
The output layer shares its matrix with the token {term}`embedding` (weight tying), so the model has one large matrix outside its blocks; the chapter quantizes the seven linear layers of every block and keeps the embedding in float, which is also what the usual quantization libraries do by default with the output layer. They hold 92% of the weights here. In a large model the share is higher, because the width grows and the vocabulary does not. Llama 2 7B {footcite}`touvron2023llama2` has the same block with 32 layers of width 4096, an MLP of width 11008 and 32000 tokens; built on PyTorch's `meta` device, which records shapes and allocates no memory, it can be counted without a download:
""")

code(r"""
llama2_7b = LlamaConfig(hidden_size=4096, intermediate_size=11008,
                        num_hidden_layers=32, num_attention_heads=32,
                        vocab_size=32000)  # untied embedding and head
with torch.device("meta"):  # shapes only, no memory
    big = AutoModelForCausalLM.from_config(llama2_7b)
n_big = sum(p.numel() for p in big.parameters())
n_big_linear = sum(
    mod.weight.numel() for name, mod in big.named_modules()
    if isinstance(mod, torch.nn.Linear) and name != "lm_head")
print(f"Llama 2 7B: {n_big / 1e9:.2f} B parameters, "
      f"{n_big_linear / n_big:.1%} of them in the blocks' linear layers")
del big
""")

md(r"""
So about 96% of a 7B model sits in the layers that quantization shrinks, against 92% here: the larger the model, the less the float embedding weighs in the size of a quantized one.

(sec-quant-by-hand)=
## Group-wise quantization by hand

Symmetric "absmax" quantization with $b$ bits maps a group of weights $w_1, \dots, w_g$ to integers in $[-q_\text{max}, q_\text{max}]$, $q_\text{max} = 2^{b-1} - 1$ (127 for int8, 7 for int4), with one scale per group:

$$
s = \frac{\max_i |w_i|}{q_\text{max}}, \qquad q_i = \operatorname{round}\!\left(\frac{w_i}{s}\right), \qquad \hat w_i = s\, q_i .
$$

The largest weight of the group lands exactly on $\pm q_\text{max}$, and every $\hat w_i$ is within $s/2$ of $w_i$. The group is the knob. One scale for a whole row of the matrix ("per-channel") costs almost nothing to store, but a single large weight in the row makes $s$ large and rounds its small neighbours to 0. Small groups (32 to 128 consecutive weights along the input dimension) confine the damage of such an outlier to its group, at the price of one more scale per group. GPTQ {footcite}`frantar2023gptq` and AWQ {footcite}`lin2024awq` both quantize 4-bit weights in groups of 128, and Dettmers and Zettlemoyer found across model families that small blocks are what makes 4 bits work {footcite}`dettmers2023case4bit`. The integers need $b$ bits each, so a 4-bit matrix packs two weights in a byte. The package's version, `lmbook.quantize.quantize_groupwise`:

```{literalinclude} ../../lmbook/quantize.py
:language: python
:pyobject: quantize_groupwise
```

On one matrix of the model, the query projection of the first block:
""")

code(r"""
w = model.model.layers[0].self_attn.q_proj.weight.detach()  # (192, 192)
for bits, group in ((8, None), (8, 32), (4, None), (4, 32)):
    q, scale = quantize_groupwise(w, bits, group)
    w_hat = dequantize(q, scale)
    step = scale.repeat_interleave(w.shape[1] // scale.shape[1], dim=1)
    assert ((w_hat - w).abs() <= step / 2 + 1e-7).all()  # within s/2
    rel = ((w_hat - w).norm() / w.norm()).item()
    zeros = (q == 0).float().mean().item()
    print(f"int{bits} groups of {group or w.shape[1]:3d}: {scale.numel():4d} "
          f"scales, relative error {rel:.3f}, rounded to 0: {zeros:.0%}")

packed = pack_int4(q)
assert torch.equal(unpack_int4(packed), q)
print(f"int4 packed: {tuple(q.shape)} int8 -> {tuple(packed.shape)} uint8")
""")

md(r"""
With int8 the rounding error is a fraction of a percent whatever the group; with int4 it is a sixth of the weight's norm for whole rows, and a small grouping removes a good part of it. The next cell does this to every linear layer of the blocks. `quantize_model` replaces each `nn.Linear` by a `QuantLinear`, which keeps only the integers (packed when $b = 4$) and the scales, and rebuilds the weight when it is called:

```{literalinclude} ../../lmbook/quantize.py
:language: python
:pyobject: QuantLinear.forward
```

For each width and group size the cell measures the size of the saved model and its held-out loss, and compares the size with a prediction: a weight costs $b/8$ bytes (8 bits for 3-bit integers, which are not packed here) plus its share of a float32 scale, `bytes_per_weight`.
""")

code(r"""
print(f"{'weights':8s} {'group':>5s} {'MB':>6s} {'predicted':>9s} "
      f"{'loss':>6s} {'change':>7s}")
print(f"{'fp32':8s} {'':5s} {fp32_size / 1e6:6.2f} {'':9s} {fp32_loss:6.3f}")
sweep = {}
for bits in (8, 4, 3):
    for group in (32, 64, None):
        q_model = quantize_model(copy.deepcopy(model), bits, group)
        size, loss = file_size(q_model), held_out_loss(q_model)
        predicted = fp32_size - 4 * n_linear + sum(
            m.weight().numel() * bytes_per_weight(bits, m.group_size)
            for m in q_model.modules() if isinstance(m, QuantLinear))
        assert abs(size - predicted) < 0.02 * size  # the formula holds
        sweep[bits, group] = (size, loss)
        print(f"{f'int{bits}':8s} {group or 'row':>5} {size / 1e6:6.2f} "
              f"{predicted / 1e6:9.2f} {loss:6.3f} {loss - fp32_loss:+7.3f}")
""")

md(r"""
Int8 is free: the loss moves in the fourth decimal whatever the group, for a model a third of the size (the embedding stays in float32). Int4 with groups of 32 costs a hundredth of a nat per token and shrinks the model to about a fifth; whole rows cost more. At 3 bits the loss starts to climb, and the smaller the group the less it climbs. The int8 result is usually explained as "8 bits are enough precision", and the int4 result as "4 bits are too few"; the table says something more precise: 4 bits are enough *if* the scale is local. On large models the argument is stronger, because large models have a few hidden dimensions with activations and weights far larger than the rest {footcite}`dettmers2022llmint8`, which per-row scales handle badly.
""")

code(r"""
fig, ax = plt.subplots(figsize=(6.4, 3.0))
groups = (32, 64, None)
width = 0.26
for i, bits in enumerate((8, 4, 3)):
    change = [sweep[bits, g][1] - fp32_loss for g in groups]
    ax.bar([j + (i - 1) * width for j in range(len(groups))], change,
           width, label=f"int{bits}")
ax.set_xticks(range(len(groups)), ["groups of 32", "groups of 64",
                                   "one scale per row"])
ax.set_ylabel("held-out loss change (nats)")
ax.legend(frameon=False)
fig.tight_layout()
plt.show()
""",
    alt="A grouped bar chart of the held-out loss change against float32 "
    "for int8, int4 and int3 weights, with groups of 32, groups of 64 and "
    "one scale per row. The int8 bars are too small to see; the int4 bars "
    "are about 0.01 nats and grow from groups of 32 to whole rows; the "
    "int3 bars are five to ten times taller and grow the same way.",
    caption="What quantization costs the house model, by width and group "
    "size: the change of the held-out loss against float32.",
    name="fig-quant-sweep",
)

code(r"""
assert sweep[8, None][1] - fp32_loss < 0.01
assert sweep[4, 32][1] - fp32_loss < 0.05
assert sweep[4, 32][1] < sweep[4, None][1]  # groups help at 4 bits
assert sweep[8, None][0] < 0.35 * fp32_size
assert sweep[4, 32][0] < 0.25 * fp32_size
print("int8: change below 0.01 nats; int4 (groups of 32): below 0.05 nats")
""")

md(r"""
(sec-quant-speed)=
### Smaller is not automatically faster

A common claim is that a quantized model runs faster because integers are cheaper than floats. `QuantLinear` shows what is wrong with it: it stores integers but computes in float32, so each call first rebuilds the float weight, which is extra work. Whether a quantized model is faster depends on the kernel that multiplies. Generating one token at a time is limited by memory bandwidth (each weight is read once per token and used for a single multiply-add), so a kernel that reads packed integers and converts them in registers saves time on a large model; one that dequantizes to a full float matrix first, as ours does, cannot. The cell times one forward pass of a 64-token prompt.
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (timings depend on the machine and its load)
prompt = x_val[:1, :64]


def latency_ms(m, ids=prompt, number=10):  # best of 5 runs, per call
    with torch.no_grad():
        m(ids)  # warm-up
        runs = timeit.repeat(lambda: m(ids), number=number, repeat=5)
    return 1e3 * min(runs) / number


hand = {bits: quantize_model(copy.deepcopy(model), bits, 32)
        for bits in (8, 4)}
latency = {"fp32": latency_ms(model), "int8 (ours)": latency_ms(hand[8]),
           "int4 (ours)": latency_ms(hand[4])}
for name, ms in latency.items():
    print(f"{name:12s} {ms:6.2f} ms ({ms / latency['fp32']:.2f} x fp32)")
""")

md(r"""
Our int8 layer costs about as much as float32: rebuilding a matrix of this size is cheap next to the rest of the forward pass. Our int4 layer is several times slower, because it also unpacks the nibbles with a handful of tensor operations on every call.

Quantization libraries for GPUs were also designed for memory first. `bitsandbytes`, the library behind LLM.int8() {footcite}`dettmers2022llmint8` and QLoRA {footcite}`dettmers2023qlora`, quantizes a model as `transformers` loads it, in two formats that are not quite ours:

- **LLM.int8()** stores the weights in int8 with one absmax scale per output row, like our per-row int8, and at run time quantizes the *activations* too, to int8 per token, so that the product runs on integers; the input columns with outliers above a threshold (6 by default) are multiplied in 16-bit floats instead {footcite}`dettmers2022llmint8`.
- **NF4** is weight-only, in blocks of 64 weights with an absmax scale each, like our groups, but its 16 levels are not evenly spaced integers: they sit at quantiles of a normal distribution, which suits weights that are roughly normal {footcite}`dettmers2023qlora`. It is the format of QLoRA.

The design goal of LLM.int8() was memory (to fit a 175B model on a few GPUs at all), not speed, and its paper reports it slower than 16-bit for models below about 6.7B parameters {footcite}`dettmers2022llmint8`.

Where quantization does pay for speed is in engines whose kernels read the packed integers directly. On GPUs that means the kernels written for GPTQ {footcite}`frantar2023gptq` and AWQ {footcite}`lin2024awq` checkpoints (in vLLM, TensorRT-LLM, `transformers`' GPTQ and AWQ integrations). On CPUs, and on laptops, the common route is llama.cpp {footcite}`gerganov2023llamacpp` and its GGUF files: the same idea of blocks of 32 weights with a scale each (`Q8_0`, `Q4_K` and relatives), with hand-written SIMD kernels that make generation faster the fewer bits are read. ONNX Runtime has 4-bit kernels for CPUs too; {ref}`sec-quant-ort` uses them.

(sec-distillation)=
## Distillation into a smaller student

Quantization keeps the model and stores it with fewer bits. Distillation keeps the bits and trains a smaller model: a student learns from the teacher's predicted distribution over the next token, not only from the one token that actually came next. Hinton et al. {footcite}`hinton2015distillation` soften both distributions with a temperature $\tau$ and minimise

$$
\mathcal{L}_\text{KD} = \tau^2\, \mathrm{KL}\big(\operatorname{softmax}(z_t/\tau) \,\big\|\, \operatorname{softmax}(z_s/\tau)\big),
$$

averaged over positions, with $z_t$ and $z_s$ the teacher's and the student's {term}`logit`s. The soft targets carry more information per example than a single label: that "thou" was likely and "you" nearly as likely. The factor $\tau^2$ compensates for the temperature: the gradient of the KL term with respect to $z_s$ shrinks like $1/\tau^2$, so with the factor the loss's gradients keep their size when $\tau$ changes and it can be mixed with the ordinary cross-entropy. DistilBERT {footcite}`sanh2019distilbert` trained a student of half BERT's depth this way.

Written by hand, and checked against PyTorch's `F.kl_div`, which takes the student's log-probabilities and the teacher's probabilities, and whose `"batchmean"` divides by the number of rows:
""")

code(r"""
def kd_loss(student_logits, teacher_logits, tau):
    # tau^2 KL(p_teacher || p_student) at temperature tau, mean over rows
    log_p_s = F.log_softmax(student_logits / tau, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / tau, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # per row
    return tau**2 * kl.mean()


torch.manual_seed(0)
z_s, z_t = torch.randn(6, 1024), 3 * torch.randn(6, 1024)
reference = F.kl_div(F.log_softmax(z_s / 2, -1), F.softmax(z_t / 2, -1),
                     reduction="batchmean") * 2**2
assert_close(kd_loss(z_s, z_t, tau=2.0), reference)
print(f"kd_loss == 4 * F.kl_div(..., 'batchmean'): {reference:.4f}")
""")

md(r"""
The student is an `lmbook.GPT` with the teacher's tokenizer and block type but 2 layers instead of 6 and width 96 instead of 192. Two copies start from the same initialisation and see the same batches of the training text for the same number of steps: one learns from the next tokens (cross-entropy), the other from the teacher's soft targets at $\tau = 1$, where the loss is the cross-entropy against the teacher's distribution minus the teacher's entropy, a constant. 150 steps of 16 windows of 64 tokens are far from convergence; the point is the comparison. The distilled run takes longer, because every step also runs the teacher's forward pass.
""")

code(r"""
del hand, q_model
release_memory()  # memory: the page stays under 1 GB (lmbook.utils)
teacher = model
train_text, _ = lmbook.train_val_split(lmbook.load_text("tinyshakespeare"))
train_ids = torch.tensor(tokenizer(train_text)["input_ids"])
t_cfg = GPT.from_pretrained(MODEL).config  # the teacher's, as GPTConfig
s_cfg = GPTConfig(vocab_size=t_cfg.vocab_size, block_size=t_cfg.block_size,
                  n_layer=2, n_head=4, n_kv_head=2, n_embd=96, n_inner=256,
                  bias=False, activation="swiglu", norm="rmsnorm",
                  position="rope")
STEPS, BATCH, CTX, TAU = 150, 16, 64, 1.0


def train_student(use_teacher):
    lmbook.set_seed(0)
    student = GPT(s_cfg)
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)  # the same batches in both runs
    label = "distilled" if use_teacher else "hard labels"
    for _ in tqdm(range(STEPS), desc=label):
        i = torch.randint(len(train_ids) - CTX - 1, (BATCH, 1), generator=gen)
        x = train_ids[i + torch.arange(CTX)]  # (B, T)
        y = train_ids[i + 1 + torch.arange(CTX)]
        logits, ce = student(x, y)
        if use_teacher:
            with torch.no_grad():
                t_logits = teacher(x).logits
            loss = kd_loss(logits.flatten(0, 1), t_logits.flatten(0, 1), TAU)
        else:
            loss = ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return student.eval()


students = {False: train_student(False), True: train_student(True)}
""")

code(r"""
@torch.no_grad()
def student_loss(m):  # lmbook's GPT returns (logits, loss)
    return m(x_val, y_val)[1].item()


rows = [("teacher", model.num_parameters(), fp32_size, fp32_loss)]
for use_teacher, s in students.items():
    name = "distilled" if use_teacher else "hard labels"
    rows.append((f"student, {name}", s.num_parameters(),
                 model_size_bytes(s), student_loss(s)))
print(f"{'model':22s} {'parameters':>10s} {'MB':>5s} {'held-out loss':>13s}")
for name, n, size, loss in rows:  # students: 1 decimal (stable on any CPU)
    digits = 2 if name == "teacher" else 1
    print(f"{name:22s} {n:10,} {size / 1e6:5.2f} {loss:13.{digits}f}")
kd_gain = rows[1][3] - rows[2][3]
assert kd_gain > 0.1  # the distilled student is clearly better
""")

md(r"""
With the same steps and data, the student trained on the teacher's distributions reaches a clearly lower held-out loss than the one trained on the next tokens alone: each position gives it a full distribution to match, not one sample of it, which is a less noisy training signal. The gap is what the soft targets are worth at this budget, and neither student comes near its teacher, whose 6 layers and width they do not have. The temperature is a setting to tune, not a constant: a raised $\tau$ asks the student to match the teacher's ranking of unlikely tokens as well, and Hinton et al. mix the soft loss with the ordinary cross-entropy on the next tokens {footcite}`hinton2015distillation`. Trying $\tau = 2$, or a mix of both losses, is a change to one line of `train_student`. Distillation and quantization combine: the student can be quantized like any other model ({ref}`ex-compress-own`).

(sec-onnx)=
## Export to ONNX

ONNX stores a model as a graph of standard operators plus its weights, and ONNX Runtime {footcite}`onnxruntime2021` executes such graphs with its own kernels and graph optimisations (operator fusion, constant folding), on CPUs, GPUs and phones, without PyTorch. `torch.onnx.export(..., dynamo=True)` traces the model with `torch.export` and translates the traced graph. Three details matter: the export should trace the plain forward pass, without the key-value cache, so a small wrapper returns only the logits; the batch and sequence dimensions are declared dynamic, so the exported graph accepts any prompt length up to the context window; and the exporter annotates every node with the PyTorch module and source line it came from, which helps debugging but here is about a megabyte of text whose size depends on where the code lives, so the cell removes it before measuring the file.
""")

code(r"""
class LogitsOnly(torch.nn.Module):  # input_ids (B, T) -> logits (B, T, V)
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        return self.lm(input_ids=input_ids, use_cache=False).logits


release_memory()  # what distillation freed, before the exporter's peak
tmp = tempfile.TemporaryDirectory()
onnx_path = os.path.join(tmp.name, "model.onnx")
dims = {"input_ids": {0: torch.export.Dim("batch"),
                      1: torch.export.Dim("seq", max=T)}}
torch.onnx.export(LogitsOnly(model).eval(), (x_val[:2, :64],), onnx_path,
                  dynamo=True, input_names=["input_ids"],
                  output_names=["logits"], dynamic_shapes=dims,
                  external_data=False, verbose=False)
exported = onnx.load(onnx_path)
for node in exported.graph.node:  # the exporter's notes: source lines
    del node.metadata_props[:]
onnx.save(exported, onnx_path)
del exported
release_memory()  # the exporter's traced graphs hold cycles

options = ort.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
options.enable_cpu_mem_arena = False  # memory: return buffers after a run
session = ort.InferenceSession(onnx_path, options,
                               providers=["CPUExecutionProvider"])
x_check = x_val[:8]  # a batch of 8 windows of 128 tokens
onnx_logits = session.run(None, {"input_ids": x_check.numpy()})[0]
with torch.no_grad():
    eager_logits = model(x_check).logits
assert_close(torch.from_numpy(onnx_logits), eager_logits,
             atol=1e-4, rtol=1e-4)
del onnx_logits, eager_logits
onnx_size = os.path.getsize(onnx_path)
print(f"ONNX file {onnx_size / 1e6:.2f} MB; logits for {tuple(x_check.shape)}"
      f" (another shape than traced) equal PyTorch's within 1e-4")
""")

md(r"""
The logits agree to float32 rounding, for a batch and a length other than the ones traced.

(sec-quant-ort)=
## The same with ONNX Runtime

ONNX Runtime quantizes an exported graph with two tools, which rewrite the graph's `MatMul` nodes whose second input is a stored matrix:

- `quantize_dynamic` stores those matrices in int8, per tensor by default or with `per_channel=True` one scale per output column, and quantizes the *activations* to 8 bits on the fly, as LLM.int8() does without the outliers; the products run on integers (`MatMulInteger`). It also stores the embedding in int8.
- `MatMulNBitsQuantizer` is weight-only: each such `MatMul` becomes a `MatMulNBits` node holding 4-bit integers in blocks of `block_size` weights along the input dimension (32, 64 or 128 are usual), with a float32 scale per block and, unless `is_symmetric=True`, a 4-bit zero point per block. Its CPU kernel reads the packed integers directly. Symmetric with blocks of 32 it is our int4 with groups of 32, apart from one detail checked below. The output layer stays in float32: in the exported graph it multiplies by the transpose of the embedding, which the graph computes, not by a stored matrix.

The losses are computed from the logits of each graph:
""")

code(r"""
int8_path = os.path.join(tmp.name, "model-int8.onnx")
logging.disable(logging.WARNING)  # its advice on graph pre-processing
quantize_dynamic(onnx_path, int8_path, weight_type=QuantType.QInt8,
                 per_channel=True)
logging.disable(logging.NOTSET)

int4_path = os.path.join(tmp.name, "model-int4.onnx")
quantizer = MatMulNBitsQuantizer(onnx.load(onnx_path), bits=4,
                                 block_size=32, is_symmetric=True)
quantizer.process()  # MatMul -> MatMulNBits, in quantizer.model
quantizer.model.save_model_to_file(int4_path)

sessions = {name: ort.InferenceSession(path, options,
                                       providers=["CPUExecutionProvider"])
            for name, path in (("int8", int8_path), ("int4", int4_path))}


def onnx_loss(s):  # as held_out_loss, with ONNX Runtime
    losses = []
    for x, y in zip(x_val.split(8), y_val.split(8)):
        logits = s.run(None, {"input_ids": x.numpy()})[0]
        losses.append(F.cross_entropy(torch.from_numpy(logits).flatten(0, 1),
                                      y.flatten()))
    return torch.stack(losses).mean().item()


ort_results = {"int8": (os.path.getsize(int8_path),
                        onnx_loss(sessions["int8"])),
               "int4": (os.path.getsize(int4_path),
                        onnx_loss(sessions["int4"]))}
for name, (size, loss) in ort_results.items():
    digits = 2 if name == "int8" else 3  # int8 rounds activations too
    print(f"ONNX {name}: {size / 1e6:.2f} MB, held-out loss "
          f"{loss:.{digits}f} ({loss - fp32_loss:+.{digits}f})")
assert ort_results["int8"][0] < 0.5 * onnx_size
assert ort_results["int4"][1] - fp32_loss < 0.05
assert abs(ort_results["int4"][0] - sweep[4, 32][0]) < 0.05 * onnx_size
""")

md(r"""
The int4 graph is the size of our int4 model with groups of 32, as the formats predict: half a byte per weight plus a float32 scale per 32 weights, and the embedding in float32. It loses a little less than ours, and the next cell shows why. The quantizer stores the matrix $W^\top$ that `MatMul` multiplies by, of shape (d_in, d_out), under a name of the exporter's choosing; the cell finds the query matrix of the first block by its values, then reads back the integers (`<name>_Q4`) and the scales (`<name>_scales`) that the quantizer put in its place, with `onnx.numpy_helper`. The integers are stored as unsigned nibbles $q + 8$ (a zero point of 8), two to a byte, the low nibble first as in `pack_int4`, one row of bytes per output unit.
""")

code(r"""
original = onnx.load(onnx_path).graph.initializer
w_t = w.T.numpy()  # (d_in, d_out): MatMul computes x @ W^T
name = next(t.name for t in original if tuple(t.dims) == w_t.shape
            and (numpy_helper.to_array(t) == w_t).all())
stored = {t.name: numpy_helper.to_array(t).copy()
          for t in quantizer.model.model.graph.initializer}
packed = torch.from_numpy(stored[name + "_Q4"])  # (d_out, d_in/32, 16)
ort_scale = torch.from_numpy(stored[name + "_scales"]).view(w.shape[0], -1)
nibbles = torch.stack([packed & 0xF, packed >> 4], dim=-1)  # low first
ort_q = nibbles.view(w.shape).to(torch.int8) - 8  # (d_out, d_in)
del original, stored
release_memory()

q, scale = quantize_groupwise(w, 4, 32)
groups = w.view(w.shape[0], -1, 32)  # (d_out, n_groups, 32)
extreme = groups.gather(-1, groups.abs().argmax(-1, keepdim=True))[..., 0]
assert_close(ort_scale, extreme / -8)  # largest weight lands on -8
assert_close(ort_scale.abs(), scale * 7 / 8)  # a step 7/8 of ours
step = ort_scale.repeat_interleave(32, dim=1)
rounded = torch.round(w / step).clamp(-8, 7)  # our rounding, its scales
diff = (ort_q - rounded).abs()
share = (diff == 0).float().mean()
assert diff.max() <= 1 and share > 0.99
print(f"its integers are round(w / scale) for {share:.0%} of the weights,"
      f" in [{ort_q.min()}, {ort_q.max()}]")
for label, (q_, s_) in (("ONNX Runtime", (ort_q, ort_scale)),
                        ("ours", (q, scale))):
    rel = ((dequantize(q_, s_) - w).norm() / w.norm()).item()
    print(f"{label:12s} int4, blocks of 32: relative error {rel:.3f}")
""")

md(r"""
The scales are not ours, and the difference is instructive. Our absmax scale maps the largest weight of a group to $\pm 7$ and leaves the integer $-8$ unused, so a group has 15 levels. ONNX Runtime gives the scale the sign that sends the group's largest weight to $-8$, $s = w_\text{extreme} / (-8)$: its steps are $7/8$ of ours, all 16 levels are used, and the rounding error is smaller by about that factor. Given its scales, every integer is `round(w / s)` as in our code, clamped to $[-8, 7]$: a weight of the other sign almost as large as the extreme one would round to $+8$ and is stored as 7, the one case where the error exceeds half a step.

The speed of the three ONNX graphs, with the same 64-token prompt as before:
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (timings depend on the machine and its load)
def ort_latency_ms(s, ids=prompt, number=10):
    feed = {"input_ids": ids.numpy()}
    s.run(None, feed)  # warm-up
    runs = timeit.repeat(lambda: s.run(None, feed), number=number, repeat=5)
    return 1e3 * min(runs) / number


latency["ONNX Runtime"] = ort_latency_ms(session)
for name, s in sessions.items():
    latency[f"ONNX Runtime {name}"] = ort_latency_ms(s)
for name in ("fp32", "ONNX Runtime", "ONNX Runtime int8",
             "ONNX Runtime int4"):
    print(f"{name:18s} {latency[name]:6.2f} ms "
          f"({latency[name] / latency['fp32']:.2f} x eager PyTorch)")
""")

md(r"""
For a model this small, eager PyTorch spends much of each call in Python, launching one small operator after another; ONNX Runtime runs the whole graph in C++ and fuses operators, which usually makes it the faster of the two here. Its int8 graph, whose kernels multiply 8-bit integers, is usually faster again; the int4 graph is about as fast as the float32 one on a 64-token prompt. Its kernel unpacks the 4-bit weights to floats as it goes, and a 192-wide model reads too few weights for the saved memory traffic to show. How large each ratio is depends on the CPU and its load, so the book prints the measured ratios and asserts nothing about them. `bench/bench_quantize.py` repeats every timing of this chapter side by side in one process, for the prompt and for a single token.

## Closing note: what each format costs

The table collects the chapter's measurements on the house model: the size of the saved model, the held-out loss, and the latency of one 64-token forward pass relative to eager float32 PyTorch (measured on the machine that ran this page; on yours the ratios will differ).
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (the latency column is measured on this machine)
table = [("fp32 (PyTorch)", fp32_size, fp32_loss, "fp32"),
         ("int8, groups of 32 (ours)", *sweep[8, 32], "int8 (ours)"),
         ("int4, groups of 32 (ours)", *sweep[4, 32], "int4 (ours)"),
         ("fp32 ONNX Runtime", onnx_size, fp32_loss, "ONNX Runtime"),
         ("int8 dynamic (ONNX RT)", *ort_results["int8"],
          "ONNX Runtime int8"),
         ("int4, blocks of 32 (ONNX RT)", *ort_results["int4"],
          "ONNX Runtime int4")]
print(f"{'format':28s} {'MB':>5s} {'loss':>6s} {'change':>7s} {'time':>6s}")
for name, size, loss, key in table:
    print(f"{name:28s} {size / 1e6:5.2f} {loss:6.3f} "
          f"{loss - fp32_loss:+7.3f} {latency[key] / latency['fp32']:5.2f}x")
""")

md(r"""
Read the table by column. **Size** is what quantization reliably buys: int8 takes a third of the float32 file (ONNX Runtime's int8 graph less, because it stores the embedding in int8 too) and 4-bit formats a fifth to a quarter; the rest is the embedding left in float32. **Loss**: int8 weights cost nothing measurable (ONNX Runtime's int8, which also rounds the activations, costs a few thousandths); 4-bit costs less than a hundredth of a nat per token when the scales are per group of 32. **Time** is not a property of the format but of the kernel: PyTorch with our dequantizing layer is no faster than float32 at 8 bits and slower at 4, while ONNX Runtime, which runs the whole graph without Python, is faster than eager PyTorch in every format, and its int8 graph, whose kernels multiply 8-bit integers directly, is usually the fastest. For real deployments on a CPU, llama.cpp's GGUF formats combine both: 4- to 8-bit blocks and kernels that read them directly.

## Summary

- Group-wise absmax quantization stores $q = \operatorname{round}(w/s)$ with $s = \max|w|/q_\text{max}$ per group of $g$ weights: $b/8$ bytes per weight plus $4/g$ for a float32 scale, every weight within $s/2$.
- On the house model int8 is lossless to three decimals; int4 costs less than 0.01 nats per token with groups of 32 and about twice that with one scale per row. Small groups contain the damage of outliers, which is why GPTQ, AWQ, NF4 and GGUF all use blocks.
- Our dequantizing layer saves memory, not time: quantization is faster only with kernels that compute with the packed integers.
- ONNX Runtime quantizes an exported graph: `quantize_dynamic` to int8 weights and activations, `MatMulNBitsQuantizer` to 4-bit weights in blocks. Its symmetric int4 is our group-wise int4 with one more level: the scale sends each block's largest weight to $-8$, so the steps are $7/8$ of ours and the loss a little lower.
- Distillation trains a student on $\tau^2\,\mathrm{KL}(p_t^{(\tau)} \| p_s^{(\tau)})$. A 2-layer student trained for 150 steps on the teacher's distributions ($\tau = 1$) reached a clearly lower held-out loss than the same student trained on the next tokens; each of its steps also runs the teacher.
- `torch.onnx.export(..., dynamo=True)` with dynamic batch and sequence dimensions gives a graph whose ONNX Runtime logits equal PyTorch's within $10^{-4}$; check this before timing anything.

## Exercises

```{exercise}
:label: ex-compress-int4-value
A group of four weights is $(0.12, -0.53, 0.31, 0.07)$. Quantize it to int4 with one absmax scale ($q_\text{max} = 7$) and dequantize: what value does $0.31$ come back as? Check with `lmbook.exercises.check("compress-int4-value", v)`. Which of the four weights has the largest error, and is it below $s/2$?
```

```{solution} ex-compress-int4-value
:class: dropdown
$s = 0.53/7 \approx 0.0757$; $0.31/s \approx 4.09$ rounds to 4, so $0.31$ comes back as $4s \approx 0.303$. The errors are at most $s/2 \approx 0.038$; the largest is that of $0.12$ ($0.12/s \approx 1.58 \to 2$, back as $0.151$).

    q, s = quantize_groupwise(torch.tensor([[0.12, -0.53, 0.31, 0.07]]), 4)
    v = dequantize(q, s)[0, 2].item()
    lmbook.exercises.check("compress-int4-value", v)
```

```{exercise}
:label: ex-compress-gigabytes
A model has 7 billion weights in its linear layers. How many gigabytes ($10^9$ bytes) do they take as int4 in groups of 128 with one float16 scale per group? Check with `lmbook.exercises.check("compress-int4-gigabytes", gb)`. How many as float16?
```

```{solution} ex-compress-gigabytes
:class: dropdown
Each weight costs half a byte plus $2/128$ bytes of scale, $0.515625$ bytes, so $7 \cdot 10^9 \cdot 0.515625 \approx 3.61$ GB, against 14 GB in float16.

    gb = 7e9 * bytes_per_weight(4, 128, scale_bits=16) / 1e9
    lmbook.exercises.check("compress-int4-gigabytes", gb)
```

```{exercise}
:label: ex-compress-kd
A teacher's logits over three tokens are $(2, 1, 0)$ and a student's $(1, 1, 1)$. What is the distillation loss $\tau^2\,\mathrm{KL}(p_t \| p_s)$ at $\tau = 2$? Check with `lmbook.exercises.check("compress-kd-loss", loss)`. What happens to the teacher's distribution as $\tau$ grows?
```

```{solution} ex-compress-kd
:class: dropdown
At $\tau = 2$ the teacher's distribution is $\operatorname{softmax}(1, 0.5, 0) \approx (0.506, 0.307, 0.186)$ and the student's is uniform, so $\mathrm{KL} = \sum p_t \log(3 p_t) \approx 0.0784$ and the loss is $4 \times 0.0784 \approx 0.314$. As $\tau$ grows the teacher's distribution flattens towards uniform, and the differences between the unlikely tokens, the "dark knowledge", weigh more.

    loss = kd_loss(torch.tensor([[1.0, 1.0, 1.0]]),
                   torch.tensor([[2.0, 1.0, 0.0]]), tau=2.0)
    lmbook.exercises.check("compress-kd-loss", loss.item())
```

```{exercise}
:label: ex-compress-own
Combine the two methods: quantize the distilled student with `quantize_model` to int8 and to int4 with groups of 32. How large is it, and how much loss does each cost? Then try groups of 16 and 128 on the teacher (its 512-wide `down_proj` accepts 128; the 192-wide layers do not, so quantize them per row): is there a group size past which the loss stops improving?
```

```{solution} ex-compress-own
:class: dropdown
`quantize_model(copy.deepcopy(students[True]), 4, 32)` works unchanged: the student's layers are plain `nn.Linear`s (its fused `c_attn` too); skip `lm_head`, which is tied to the embedding. Expect the same pattern as on the teacher, int8 free and int4 costing a little more on a narrower model, because each group of 32 is a larger share of a row. For mixed group sizes, call `quantize_model` twice with different `skip` lists, or replace the layers one by one with `QuantLinear`.
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters/05-practice/making-models-small.ipynb"
    )
)
