"""Writes chapters/05-practice/pipelines-and-generate.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-pipelines-and-generate)=
# Pipelines, Auto classes and `generate`

Part IV built a language model from its parts and decoded text from it with code written line by line. Most of the time, though, people work with somebody else's model through the Hugging Face `transformers` library {footcite}`wolf2020transformers`: three lines load a model and its tokenizer by name, and one method, `generate`, runs every decoding algorithm of {ref}`chap-decoding`. This chapter opens those three lines. It loads the book's own Llama-layout house model exactly as one loads a model from the Hugging Face Hub, follows a prompt through the tokenizer, the model and `generate`, and ties each argument of `generate` to the algorithm it runs, checking on the way that `generate` picks the same tokens as `lmbook.decoding`.

Three popular snippets for GPT-2 generation fail or mislead in the current library (transformers v5). They are run here as written, and corrected: sampling several sequences without turning sampling on, calling `generate` on a model without a language-model head, and batching prompts padded on the wrong side.

```{admonition} Learning goals
:class: tip
After this chapter you can

- load a causal language model and its tokenizer with `pipeline`, `AutoTokenizer` and `AutoModelForCausalLM`, and say what each Auto class picks and why `AutoModel` cannot generate;
- map every common argument of `generate` (`max_new_tokens`, `do_sample`, `temperature`, `top_k`, `top_p`, `repetition_penalty`, `num_beams`, `num_return_sequences`) to the algorithm of {ref}`chap-decoding` that it runs;
- batch prompts of different lengths with the right padding side and attention mask, and explain why a decoder-only model needs left padding;
- stream generated text as it is produced with `TextStreamer` and `TextIteratorStreamer`.
```
""")

code(r"""
import os
import threading

import torch
import transformers
from torch.testing import assert_close
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    TextIteratorStreamer,
    TextStreamer,
    pipeline,
)

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import GPT, house_model_path
from lmbook.decoding import beam_search, generate, logits_processors

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars
print("transformers", transformers.__version__)
""")

md(r"""
## One model variable

Every cell below uses the model named in `MODEL`. Offline, and in the book's tests, it is the folder of the house model `shakespeare-bpe`, a 2.6-million-parameter model with Llama's block, trained on Tiny Shakespeare with a byte-level BPE tokenizer of 1024 tokens (its card, `README.md` in that folder, gives the recipe; {ref}`chap-modern-llm` explains the block). `house_model_path` returns a folder in Hugging Face's format, so every loading function of `transformers` takes it where it would take a Hub name.

```{admonition} Running online: use a model from the Hub
:class: note
Set the environment variable `LMBOOK_MODEL` before starting the notebook, or edit the cell, to run every cell on a Hub model instead. Models that fit a free Colab session or a laptop: `gpt2` (124M, GPT-2 layout) and `HuggingFaceTB/SmolLM2-135M` (Llama layout). The cells that compare with `lmbook.GPT` need one of these two layouts. The printed text will differ; the checks still hold.
```
""")

code(r"""
HOUSE = "shakespeare-bpe"  # the default: a house model, offline
MODEL = os.environ.get("LMBOOK_MODEL") or str(house_model_path(HOUSE))
PROMPT = "ROMEO:"
print(os.path.basename(MODEL))
""")

md(r"""
## The pipeline, and what it hides

A `pipeline` bundles a tokenizer, a model and the pre- and post-processing of one task. For `"text-generation"` it encodes the prompt, calls `generate`, and decodes the result, prompt included. `do_sample=False` asks for {term}`greedy decoding`, so the output is the same on every run.
""")

code(r"""
generator = pipeline("text-generation", model=MODEL)
out = generator(PROMPT, max_new_tokens=30, do_sample=False)
print(out[0]["generated_text"])
""")

md(r"""
Underneath there are three steps, and doing them by hand gives the same text:

1. the **tokenizer** maps the string to token ids (and an attention mask, all ones for a single prompt);
2. `generate` runs the model token by token and returns the prompt's ids followed by the new ones;
3. the tokenizer **decodes** the ids back to a string.
""")

code(r"""
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForCausalLM.from_pretrained(MODEL).eval()

enc = tokenizer(PROMPT, return_tensors="pt")
print("input_ids     ", enc["input_ids"].tolist())
print("tokens        ", tokenizer.convert_ids_to_tokens(enc["input_ids"][0]))
print("attention_mask", enc["attention_mask"].tolist())

ids = model.generate(**enc, max_new_tokens=30, do_sample=False)
text = tokenizer.decode(ids[0])
assert text == out[0]["generated_text"]  # the pipeline did just this
print(ids.shape, "= 1 sequence of", enc["input_ids"].shape[1], "+ 30 tokens")
""")

md(r"""
The tokens are printed in GPT-2's byte-to-unicode alphabet (a space shows as `Ġ`, a newline as `Ċ`), which {ref}`chap-tokenizer` explained: every byte gets a printable character so that the merges can be stored as text.

## The Auto classes

A checkpoint folder holds a `config.json` whose `model_type` names an architecture. The Auto classes read it and build the matching class: `AutoConfig` the configuration, `AutoTokenizer` the tokenizer, and one Auto class per *head*. `AutoModelForCausalLM` builds the model with its language-model head, the final linear layer that turns hidden states into one logit per vocabulary entry. `AutoModel` builds the bare stack of blocks, which returns hidden states.
""")

code(r"""
config = AutoConfig.from_pretrained(MODEL)
base = AutoModel.from_pretrained(MODEL).eval()
print(config.model_type, "->", type(model).__name__, "and", type(base).__name__)

with torch.no_grad():
    hidden = base(**enc).last_hidden_state
    logits = model(**enc).logits
print("AutoModel hidden states", tuple(hidden.shape))
print("AutoModelForCausalLM logits", tuple(logits.shape))
# the head is one matrix product: logits = hidden @ W_out^T
assert_close(logits, model.lm_head(hidden))
n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params:,} parameters")
""")

md(r"""
The same weights load into the book's own model: `lmbook.GPT.from_pretrained` reads GPT-2 and Llama checkpoints, and its logits equal those of `transformers` ({ref}`chap-modern-llm` checked the layout block by block). That is what lets this chapter compare `generate` with `lmbook.decoding` below.
""")

code(r"""
gpt = GPT.from_pretrained(MODEL)
with torch.no_grad():
    assert_close(gpt(enc["input_ids"])[0], logits, rtol=1e-4, atol=1e-4)
print("lmbook.GPT gives the logits of", type(model).__name__)
""")

md(r"""
## The arguments of `generate`, one algorithm each

`generate` reads its settings from the arguments and from the model's `generation_config` (stored as `generation_config.json` beside the weights; the house model has none, so the library defaults apply). The table maps the arguments used most to the algorithms of {ref}`chap-decoding`.

| Argument | What it does | In `lmbook.decoding` |
|---|---|---|
| `max_new_tokens` | how many tokens to add (`max_length` counts the prompt too) | `max_new_tokens` |
| `do_sample=False`, `num_beams=1` | greedy: the most probable token each step | `generate(..., temperature=0)` |
| `do_sample=True` | draw from the processed distribution | `generate(...)`, temperature > 0 |
| `temperature` | divide the logits by $T$ before the softmax | `Temperature` |
| `top_k` | keep the $k$ largest logits | `TopK` |
| `top_p` | keep the smallest set of tokens whose probability reaches $p$ | `TopP` |
| `repetition_penalty` | shrink the logits of tokens already in the text (CTRL's rule) | `RepetitionPenalty` |
| `num_beams` | beam search with $B$ beams | `beam_search` |
| `num_return_sequences` | several outputs per prompt (samples, or the best beams) | `beam_search(..., num_return_sequences)` |

Greedy decoding first: `lmbook`'s `generate` runs the same model through its own KV cache and picks the same tokens as `transformers`.
""")

code(r"""
idx = enc["input_ids"]
ours = generate(gpt, idx, 30, temperature=0)  # 0: greedy
assert ours.tolist() == ids.tolist()
print("greedy: lmbook.decoding.generate == model.generate, 30 tokens")
""")

md(r"""
Sampling draws from a distribution that the *logits processors* reshape: temperature, then top-$k$, then top-$p$ (the order `transformers` applies them in). The processors are plain functions of the logits, so their output can be compared directly: `generate` builds its list with `model._get_logits_processor`, an internal method used here only to show that the two lists compute the same thing.
""")

code(r"""
settings = dict(temperature=0.8, top_k=50, top_p=0.9)
gen_config = GenerationConfig(do_sample=True, **settings)
hf_processors = model._get_logits_processor(
    generation_config=gen_config, input_ids_seq_length=idx.shape[1],
    encoder_input_ids=idx, prefix_allowed_tokens_fn=None,
    logits_processor=None, device="cpu",
)
print([type(p).__name__ for p in hf_processors])

context = ids[:, :5]  # "ROMEO:\nI have": an open next word
with torch.no_grad():
    scores = model(context).logits[:, -1, :]  # next-token logits
theirs = hf_processors(context, scores.clone())
mine = scores.clone()
for p in logits_processors(**settings):
    mine = p(context, mine)
assert_close(mine, theirs)
kept = int(theirs.isfinite().sum())
print(repr(tokenizer.decode(context[0])), "->")
print(f"both keep the same {kept} of {scores.shape[-1]} tokens")
# the count is stable across CPUs: no running sum of the top-50
# probabilities (what top-p sees) lies within float noise of 0.9
top50 = (scores / 0.8).topk(50).values.softmax(-1)
assert (top50.cumsum(-1) - 0.9).abs().min() > 1e-4
""")

md(r"""
With the processors equal, sampling is a draw from the same distribution. The draws themselves depend on the random-number generator, so set a seed for reproducible samples: `torch.manual_seed` before `generate`. Several samples per prompt come from `num_return_sequences`:
""")

code(
    r"""
torch.manual_seed(0)
samples = model.generate(
    **enc, max_new_tokens=20, do_sample=True, num_return_sequences=3,
    **settings,
)
print(samples.shape)  # (prompts x num_return_sequences, prompt + new)
for row in samples:
    print(repr(tokenizer.decode(row)))
""",
    tags=["nbval-ignore-output"],
)

md(r"""
The sampled text above is not compared by the book's tests: the same seed draws the same tokens on one machine, but another CPU may round a probability differently near the boundary between two tokens, and one different token changes the rest of the sample.

Beam search keeps the `num_beams` most probable partial sequences. `lmbook.decoding.beam_search` follows `transformers`' rules (length penalty, early stopping) and returns the same best beams:
""")

code(r"""
beams = model.generate(
    **enc, max_new_tokens=12, num_beams=4, num_return_sequences=2,
    do_sample=False, early_stopping=True,
)
mine = beam_search(gpt, idx, 12, num_beams=4, num_return_sequences=2,
                   early_stopping=True)
assert mine.sequences.tolist() == beams.tolist()
for row in beams:
    print(repr(tokenizer.decode(row)))
""")

md(r"""
A small model decoded greedily often falls into a loop, repeating a line or a name. The `repetition_penalty` of CTRL {footcite}`keskar2019ctrl` divides a positive logit (and multiplies a negative one) of every token already in the text by the penalty, once per token however often it occurred. Count the distinct tokens among 60 greedy ones, with and without it:
""")

code(r"""
plain = model.generate(**enc, max_new_tokens=60, do_sample=False)
penal = model.generate(
    **enc, max_new_tokens=60, do_sample=False, repetition_penalty=1.3
)
n_prompt = idx.shape[1]
for name, row in (("greedy", plain[0]), ("penalty 1.3", penal[0])):
    distinct = len(set(row[n_prompt:].tolist()))
    print(f"{name:12s} {distinct:2d} distinct of 60 new tokens")
mine = generate(gpt, idx, 60, temperature=0, repetition_penalty=1.3)
assert mine.tolist() == penal.tolist()
""")

md(r"""
`GenerationConfig` collects such settings in one object. Pass it as `generation_config=`, or save it beside a model with `save_pretrained`, and `generate` uses it as the model's defaults; explicit arguments still override it.

## Three popular snippets, corrected

**"Generate five continuations."** A widespread GPT-2 example calls `generate(input_ids, max_length=50, num_return_sequences=5)`. Without `do_sample=True` this is greedy decoding, which has only one answer, so five sequences cannot differ; transformers v5 refuses:
""")

code(r"""
try:
    model.generate(**enc, max_new_tokens=10, num_return_sequences=5)
except ValueError as err:
    print("ValueError:", err)
""")

md(r"""
Two corrections, for two different wishes. Five *different plausible* continuations: sample, `do_sample=True` (with a seed, as above). The five *most probable* continuations that the search can find: beam search with at least five beams, `num_beams=5, num_return_sequences=5`.

**"`GPT2Model.generate`."** Another version loads `GPT2Model` and calls `generate`. `GPT2Model`, like `AutoModel` in general, has no language-model head: it returns hidden states, not logits over the vocabulary, so there is nothing to pick a next token from. In v5 the bare model has no `generate` method at all:
""")

code(r"""
print(type(base).__name__, "has generate:", hasattr(base, "generate"))
try:
    base.generate(**enc, max_new_tokens=10)
except AttributeError as err:
    print("AttributeError:", err)
""")

md(r"""
The correction is the head-bearing class, `AutoModelForCausalLM` (for GPT-2, `GPT2LMHeadModel`), as used throughout this chapter.

**"Batch the prompts."** Prompts of different lengths must be padded to one length to form a batch, and the tokenizer's default pads on the *right*. For a decoder-only model that is wrong: the next token after a prompt is predicted from the *last* position of its row, and in a right-padded row the last position is a pad token. The {term}`attention mask` keeps the real tokens from attending to the pads, but it cannot move the prediction to the right position. {ref}`chap-decoding` generated one prompt at a time, so the question did not arise there.

The house tokenizer, like GPT-2's, has no padding token. Any id will do as long as the attention mask hides it; GPT-2 code commonly reuses the end-of-text token. The house tokenizer has no special tokens at all, so the cell uses byte 0, which never occurs in text.
""")

code(r"""
if tokenizer.pad_token is None:
    # end-of-text where there is one, else byte 0
    eos = tokenizer.eos_token
    tokenizer.pad_token = eos or tokenizer.convert_ids_to_tokens(0)
prompts = ["ROMEO:", "JULIET:\nO Romeo, Romeo!"]
alone = [
    model.generate(**tokenizer(p, return_tensors="pt"), max_new_tokens=15,
                   do_sample=False)[0].tolist()
    for p in prompts
]

results = {}
for side in ("right", "left"):
    tokenizer.padding_side = side
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=15, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    width = batch["input_ids"].shape[1]
    results[side] = [
        row[:width][mask.bool()].tolist() + row[width:].tolist()
        for row, mask in zip(out, batch["attention_mask"])
    ]
    same = [r == a for r, a in zip(results[side], alone)]
    print(f"{side:5s} padding: same as one prompt at a time: {same}")
print(batch["attention_mask"].tolist())  # left: zeros first
assert results["left"] == alone and results["right"][0] != alone[0]
""")

md(r"""
With left padding every row ends with its last real token, so the first generated token is predicted from the right place. The attention mask marks the pads, and `generate` derives the position of each token from it (the first real token gets position 0, whatever padding precedes it), so the rotary positions of the house model match those of the prompt alone. The longest prompt needs no padding, so its row is the same either way; the shorter one goes wrong with right padding. For models built for batched generation, set `tokenizer.padding_side = "left"` once after loading the tokenizer. Training, where every position is predicted, works with either side.

## Streaming

A chat interface shows text as it is produced rather than after the last token. `generate` accepts a *streamer*, which it calls with each new token. `TextStreamer` prints the decoded text to standard output as soon as it forms complete words:
""")

code(r"""
streamer = TextStreamer(tokenizer, skip_prompt=False)
_ = model.generate(**enc, max_new_tokens=25, do_sample=False,
                   streamer=streamer)
""")

md(r"""
In an application, generation runs in a background thread and `TextIteratorStreamer` hands the pieces to the main thread, which can send each one to a web page as it arrives. Joined, the pieces are the same text as the unstreamed call:
""")

code(r"""
streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
kwargs = dict(**enc, max_new_tokens=25, do_sample=False, streamer=streamer)
thread = threading.Thread(target=model.generate, kwargs=kwargs)
thread.start()
pieces = list(streamer)  # blocks until each piece arrives
thread.join()
print(len(pieces), "pieces:", pieces[:4], "...")
full = model.generate(**enc, max_new_tokens=25, do_sample=False)
assert "".join(pieces) == tokenizer.decode(full[0, idx.shape[1]:])
""")

md(r"""
## Summary

- `pipeline("text-generation")` is tokenizer, `generate` and decoding in one call; the Auto classes pick the architecture from `config.json`, and only the `...ForCausalLM` classes have the head that `generate` needs.
- Each argument of `generate` selects an algorithm of {ref}`chap-decoding`. `lmbook.decoding` gives the same greedy tokens, the same processed distribution and the same beams as `transformers`, checked above on the house model.
- `num_return_sequences` needs sampling or beams; a bare `AutoModel` cannot generate; batched prompts for a decoder-only model are padded on the left, with the attention mask passed along.
- Streamers deliver text as it is generated, in the same process or across threads.

## Exercises

```{exercise}
:label: ex-generate-shape
Three prompts, left-padded to 9 tokens, go through `model.generate(**batch, max_new_tokens=12, num_beams=4, num_return_sequences=2, do_sample=False)`, and no sequence stops early. What is the shape of the output? Check with `lmbook.exercises.check("generate-output-shape", (rows, columns))`, then run it.
```

```{solution} ex-generate-shape
:class: dropdown
Each prompt returns its 2 best beams, so there are $3 \times 2 = 6$ rows, and each row holds the 9 prompt positions (pads included) followed by 12 new tokens: $(6, 21)$.

    tokenizer.padding_side = "left"
    batch = tokenizer(["ROMEO:", "KING:", "First Citizen:\nBefore we"],
                      return_tensors="pt", padding="max_length",
                      max_length=9)
    out = model.generate(**batch, max_new_tokens=12, num_beams=4,
                         num_return_sequences=2, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    lmbook.exercises.check("generate-output-shape", tuple(out.shape))
```

```{exercise}
:label: ex-generate-position
Two prompts of 3 and 7 tokens are left-padded into one batch. `generate` gives each token the position "number of real tokens before it in its row". Which position does the *first new token* of the shorter prompt get? Check with `lmbook.exercises.check("left-pad-new-position", p)`. Which position would it get if positions were simply the column index?
```

```{solution} ex-generate-position
:class: dropdown
The shorter row is 4 pads followed by 3 real tokens at positions 0, 1, 2, so the first new token gets position 3, as it would without padding. Counting columns would give it position 7, as if the pads were text.

    mask = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    positions = mask.cumsum(-1) - 1  # real tokens: 0, 1, 2, ...
    lmbook.exercises.check("left-pad-new-position",
                           int(positions[0, -1]) + 1)
```

```{exercise}
:label: ex-generate-processors
The next-token logits are $(2.0, 1.0, 0.5, -1.0)$. With `temperature=0.5` and `top_k=2`, what probability does sampling give the first token? Work it out by hand, check with `lmbook.exercises.check("temperature-top-k-prob", p)`, and confirm it with `lmbook.decoding.logits_processors`.
```

```{solution} ex-generate-processors
:class: dropdown
Temperature divides the logits by 0.5, giving $(4, 2, 1, -2)$; top-$k$ keeps the two largest and sets the rest to $-\infty$. The softmax of $(4, 2)$ gives the first token $1/(1 + e^{-2}) \approx 0.881$.

    scores = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    for p in logits_processors(temperature=0.5, top_k=2):
        scores = p(None, scores)
    prob = scores.softmax(-1)[0, 0].item()
    lmbook.exercises.check("temperature-top-k-prob", prob)
```

```{exercise}
:label: ex-generate-hub
(Online.) Set `LMBOOK_MODEL=gpt2` and rerun the chapter. Which cells change their printed text, and which checks still pass? Then repeat the padding experiment with `tokenizer.padding_side = "right"` and explain what `transformers` prints about it.
```

```{solution} ex-generate-hub
:class: dropdown
Every generated text changes, because the model does. The checks all hold: the pipeline equals the three manual steps, `lmbook.GPT` loads GPT-2's weights and matches its logits, greedy, beam search and the repetition penalty pick the same tokens in both libraries, and left padding reproduces the unbatched outputs. With right padding, `transformers` warns that a decoder-only model is being given right-padded inputs and suggests `padding_side='left'` (this chapter silences warnings with `set_verbosity_error`, so restore the default with `transformers.logging.set_verbosity_warning()` to see it).
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters/05-practice/pipelines-and-generate.ipynb"
    )
)
