"""lmbook.tokenizers: round trips (hypothesis), the fast BPE trainer against the
readable reference one, a hand-worked example, conversion to and from Hugging Face
tokenizers (same ids on hostile Unicode), file formats, and bad input."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections import Counter

import pytest
import regex
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmbook.data import DataUnavailableError, data_path
from lmbook.tokenizers import (
    GPT2_SPLIT_PATTERN,
    STDLIB_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    UnknownCharacterError,
    bytes_to_unicode,
    train_bpe_fast,
    train_bpe_reference,
)
from tests.conftest import skip_or_fail
from tests.reference_bpe import merge_ids, naive_encode

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak. We're 100% sure it's 3.14 -- isn't it?\n"
    "Ünïcödé: naïve café, 東京タワー, 中文分词, Ελληνικά, русский, 🙂🚀👩‍💻 😀😀\n"
    "\tTabs\tand  double  spaces   end   \n" * 3
)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer().train(SAMPLE, 330)


@pytest.fixture(scope="module")
def shakespeare() -> str:
    """The first 20,000 characters of Tiny Shakespeare (from $LMBOOK_DATA_DIR)."""
    try:
        path = data_path("tinyshakespeare", download_if_missing=False)
    except DataUnavailableError as err:
        skip_or_fail(str(err))
    return path.read_text(encoding="utf-8")[:20_000]


def word_counts(tok: BPETokenizer, text: str) -> dict[bytes, int]:
    """What `BPETokenizer.train` gives the trainers: chunk bytes -> count."""
    return {c.encode(): n for c, n in Counter(tok.pre_tokenize(text)).items()}


def segment(data: bytes, merges: list[tuple[int, int]]) -> tuple[int, ...]:
    """`data` after applying every merge in training order, as training does."""
    ids = list(data)
    for k, pair in enumerate(merges):
        ids = merge_ids(ids, pair, 256 + k)
    return tuple(ids)


# --- CharTokenizer -----------------------------------------------------------------


def test_char_vocab_is_sorted_unique_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.itos == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8
    assert tok.encode("hold") == [3, 5, 4, 1]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_char_round_trip(data):
    tok = CharTokenizer.from_text(SAMPLE)
    s = data.draw(st.text(alphabet=st.sampled_from(tok.itos)))
    ids = tok.encode(s)
    assert len(ids) == len(s)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == s
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == s


def test_char_save_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text(SAMPLE)
    tok.save(tmp_path / "chars.json")
    assert [p.name for p in tmp_path.iterdir()] == ["chars.json"]  # no temp left
    back = CharTokenizer.load(tmp_path / "chars.json")
    assert back.itos == tok.itos
    assert back.encode(SAMPLE) == tok.encode(SAMPLE)


def test_char_unknown_character_names_it_and_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharacterError, match=r"'z' at position 2") as info:
        tok.encode("abz")
    assert isinstance(info.value, ValueError)
    assert (info.value.char, info.value.position) == ("z", 2)


def test_char_decode_unknown_id_names_id_and_range():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"id 7 at position 1.*\[0, 3\)"):
        tok.decode([0, 7])


def test_char_decode_negative_id():
    with pytest.raises(ValueError, match=r"id -1 at position 0"):
        CharTokenizer.from_text("abc").decode([-1])


def test_char_decode_2d_tensor():
    with pytest.raises(ValueError, match=r"ids must be 1-D.*\(1, 2\)"):
        CharTokenizer.from_text("abc").decode(torch.zeros(1, 2, dtype=torch.long))


def test_char_decode_float_tensor():
    with pytest.raises(TypeError, match="integer tensor.*float32"):
        CharTokenizer.from_text("abc").decode(torch.zeros(2))


def test_char_decode_str():
    with pytest.raises(TypeError, match="ids must be a list of ints.*str"):
        CharTokenizer.from_text("abc").decode("ab")


def test_char_encode_non_str():
    with pytest.raises(TypeError, match="text must be a str, got list"):
        CharTokenizer.from_text("abc").encode(["a"])


def test_char_from_empty_text():
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer.from_text("")


def test_char_duplicate_characters():
    with pytest.raises(ValueError, match="unique.*'a'"):
        CharTokenizer(["a", "b", "a"])


def test_char_multi_character_entry():
    with pytest.raises(ValueError, match=r"chars\[1\] must be a single character"):
        CharTokenizer(["a", "bc"])


def test_char_load_corrupt_json(tmp_path):
    (tmp_path / "t.json").write_text('{"format": "lmbook.CharTokenizer", "chars": [')
    with pytest.raises(ValueError, match="not a valid JSON"):
        CharTokenizer.load(tmp_path / "t.json")


def test_char_load_wrong_format(tmp_path, bpe):
    bpe.save(tmp_path / "bpe.json")
    with pytest.raises(ValueError, match="format expected 'lmbook.CharTokenizer'"):
        CharTokenizer.load(tmp_path / "bpe.json")


def test_char_load_wrong_field_type(tmp_path):
    obj = {"format": "lmbook.CharTokenizer", "version": 1, "chars": "abc"}
    (tmp_path / "t.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="'chars' expected a list, got str"):
        CharTokenizer.load(tmp_path / "t.json")


def test_char_load_path_of_wrong_type():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        CharTokenizer.load(3)


# --- BPETokenizer ------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["gpt2", None])
def test_bpe_hand_worked_example(pattern):
    # "aaabdaaabac" as bytes a=97 b=98 c=99 d=100. Pair counts: (a,a) 4, (a,b) 2,
    # the rest 1, so merge 0 is (97, 97) -> 256 and the text becomes, merging left to
    # right, [256 a b d 256 a b a c]. Now (256, a) and (a, b) both occur twice; the
    # tie goes to the smaller pair (97, 98) -> 257: [256 257 d 256 257 a c]. Then
    # (256, 257) occurs twice -> 258 = b"aaab", leaving [258 d 258 a c].
    tok = BPETokenizer(pattern).train("aaabdaaabac", 259)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100]) == "aaabd"


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="ab c\n'é", max_size=80),
    n_merges=st.integers(1, 25),
    pattern=st.sampled_from(["gpt2", None]),
    method=st.sampled_from(["fast", "reference"]),
)
def test_bpe_training_matches_the_reference_trainer(text, n_merges, pattern, method):
    tok = BPETokenizer(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # running out of pairs is expected here
        tok.train(text, 256 + n_merges, method=method)
    words = word_counts(tok, text)
    assert tok.merges == train_bpe_reference(words, n_merges)
    # encoding a training chunk gives its segmentation at the end of training
    chunks = tok.pre_tokenize(text)
    assert [tuple(tok.encode(c)) for c in chunks] == [
        segment(c.encode(), tok.merges) for c in chunks
    ]


@settings(max_examples=150, deadline=None)
@given(
    words=st.dictionaries(
        st.lists(st.sampled_from(b"ab\x00\xc3 "), max_size=9).map(bytes),
        st.integers(1, 6),
        max_size=12,
    ),
    n_merges=st.integers(0, 30),
)
def test_fast_trainer_learns_the_reference_merges(words, n_merges):
    fast = train_bpe_fast(words, n_merges)
    assert fast == train_bpe_reference(words, n_merges)
    assert len(fast) <= n_merges and len(set(fast)) == len(fast)


@pytest.mark.parametrize("pattern, n_merges", [("gpt2", 200), (None, 40)])
def test_fast_and_reference_trainers_agree_on_shakespeare(
    shakespeare, pattern, n_merges
):
    fast = BPETokenizer(pattern).train(shakespeare, 256 + n_merges, method="fast")
    ref = BPETokenizer(pattern).train(shakespeare, 256 + n_merges, method="reference")
    assert len(fast.merges) == n_merges
    assert fast.merges == ref.merges
    assert fast.encode(shakespeare) == ref.encode(shakespeare)


@pytest.mark.parametrize("trainer", [train_bpe_fast, train_bpe_reference])
def test_trainers_break_ties_by_the_smallest_pair(trainer):
    # (c, d) and (a, b) tie at 3 occurrences: the smaller pair (97, 98) goes first.
    # "aaa" holds (a, a) twice (overlapping), and it is merged left to right.
    merges = trainer({b"cd": 3, b"ab": 3, b"aaa": 1}, 3)
    assert merges == [(97, 98), (99, 100), (97, 97)]
    assert segment(b"aaa", merges) == (258, 97)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="abc d\né🙂", max_size=60))
def test_bpe_encode_matches_naive_encoder(bpe, s):
    expected = [
        i for c in bpe.pre_tokenize(s) for i in naive_encode(c.encode(), bpe.merges)
    ]
    assert bpe.encode(s) == expected


@settings(max_examples=200, deadline=None)
@given(st.text())  # any Unicode string without lone surrogates
def test_bpe_round_trip(bpe, s):
    ids = bpe.encode(s)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == s
    assert b"".join(bpe.vocab[i] for i in ids) == s.encode("utf-8")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_bpe_round_trip_without_pre_split(s):
    tok = BPETokenizer(None).train(SAMPLE, 300)
    assert tok.decode(tok.encode(s)) == s


def test_bpe_compresses_its_training_text(bpe):
    ids = bpe.encode(SAMPLE)
    assert len(ids) < 0.7 * len(SAMPLE.encode("utf-8"))
    assert bpe.decode(torch.tensor(ids)) == SAMPLE


def test_untrained_bpe_is_bytes():
    tok = BPETokenizer()
    assert tok.vocab_size == 256
    assert tok.encode("hé") == list("hé".encode())


def test_bpe_decodes_invalid_utf8_with_replacement_character():
    tok = BPETokenizer()
    euro = list("€".encode())  # three bytes
    assert tok.decode(euro) == "€"
    assert tok.decode(euro[:2]) == "\ufffd"
    assert tok.decode([0xFF, 104]) == "\ufffdh"


def test_bpe_save_load_round_trip(tmp_path, bpe):
    bpe.save(tmp_path / "bpe.json")
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.json"]
    back = BPETokenizer.load(tmp_path / "bpe.json")
    assert back.merges == bpe.merges and back.pattern == bpe.pattern
    assert back.vocab == bpe.vocab
    assert back.encode(SAMPLE) == bpe.encode(SAMPLE)


def test_stdlib_pattern_agrees_with_gpt2_pattern():
    ours, gpt2 = re.compile(STDLIB_SPLIT_PATTERN), regex.compile(GPT2_SPLIT_PATTERN)

    @settings(max_examples=300, deadline=None)
    @given(
        st.text(
            st.characters(
                exclude_categories=("Cs", "Nl", "No", "Cn"),
                exclude_characters="\x1c\x1d\x1e\x1f",
            )
        )
    )
    def check(s):
        assert ours.findall(s) == gpt2.findall(s)

    check()
    for s in ("x²", ":\x1f"):  # the documented differences
        assert ours.findall(s) != gpt2.findall(s)


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_bpe_verbose_reports_each_merge(capsys, method):
    BPETokenizer(None).train("aaabdaaabac", 259, verbose=True, method=method)
    out = capsys.readouterr().out
    assert "merge 1: (97, 97) -> 256 b'aa' (4 times)" in out
    assert "merge 3: (256, 257) -> 258 b'aaab' (2 times)" in out


def test_pre_tokenize_splits_like_gpt2():
    tok = BPETokenizer()
    assert tok.pre_tokenize("Hello world's  end 42!\n") == [
        "Hello",
        " world",
        "'s",
        " ",
        " end",
        " 42",
        "!",
        "\n",
    ]
    assert BPETokenizer(None).pre_tokenize("a b") == ["a b"]


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_bpe_stops_early_with_a_warning(method):
    with pytest.warns(UserWarning, match="no pairs left to merge after 1 merges"):
        tok = BPETokenizer(None).train("ab", 300, method=method)
    assert tok.vocab_size == 257


def test_bpe_unknown_training_method():
    with pytest.raises(ValueError, match="method must be one of 'fast', 'reference'"):
        BPETokenizer().train("abc", 300, method="slow")


@pytest.mark.parametrize("trainer", [train_bpe_fast, train_bpe_reference])
@pytest.mark.parametrize(
    "words, n_merges, error, match",
    [
        (["ab"], 1, TypeError, "words must be a mapping of bytes to counts, got list"),
        ({"ab": 1}, 1, TypeError, "words must have bytes keys, got str 'ab'"),
        ({b"ab": 0}, 1, ValueError, r"words\[b'ab'\] must be >= 1, got 0"),
        ({b"ab": 1.0}, 1, TypeError, r"words\[b'ab'\] must be an int, got float"),
        ({b"ab": 1}, -1, ValueError, "n_merges must be >= 0, got -1"),
    ],
)
def test_trainers_reject_bad_arguments(trainer, words, n_merges, error, match):
    with pytest.raises(error, match=match):
        trainer(words, n_merges)


def test_gpt2_pattern_without_regex_is_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "regex", None)  # `import regex` now fails
    with pytest.raises(ImportError, match=r"pattern='gpt2'.*'regex'.*regex>=2023"):
        BPETokenizer("gpt2")
    with pytest.raises(ImportError, match=r"pattern=.*w\+.*'regex'.*with it"):
        BPETokenizer(r"\w+")
    assert BPETokenizer(None).train("aaab", 257).merges == [(97, 97)]


def test_bpe_vocab_size_too_small():
    with pytest.raises(ValueError, match="vocab_size must be >= 256, got 100"):
        BPETokenizer().train("abc", 100)


def test_bpe_vocab_size_not_int():
    with pytest.raises(TypeError, match="vocab_size must be an int, got float"):
        BPETokenizer().train("abc", 300.0)


def test_bpe_lone_surrogate_names_position():
    with pytest.raises(ValueError, match=r"surrogate '\\ud800' at position 2"):
        BPETokenizer().encode("ab\ud800c")


def test_bpe_decode_unknown_id(bpe):
    with pytest.raises(
        ValueError, match=rf"id 999 at position 0.*\[0, {bpe.vocab_size}\)"
    ):
        bpe.decode([999])


def test_bpe_pattern_that_skips_text():
    tok = BPETokenizer(r"\w+")
    with pytest.raises(ValueError, match="must match every character"):
        tok.encode("a b")


def test_bpe_pattern_that_does_not_compile():
    with pytest.raises(ValueError, match="does not compile"):
        BPETokenizer("(unclosed")


def test_bpe_pattern_of_wrong_type():
    with pytest.raises(TypeError, match="pattern must be a str or None, got int"):
        BPETokenizer(5)


def test_bpe_load_merge_that_refers_to_a_later_token(tmp_path):
    obj = {"format": "lmbook.BPETokenizer", "version": 1, "pattern": None}
    obj["merges"] = [[97, 98], [256, 257]]  # 257 does not exist before merge 1
    (tmp_path / "t.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"merges\[1\] expected .*\[0, 257\)"):
        BPETokenizer.load(tmp_path / "t.json")


def test_bpe_load_duplicate_merge(tmp_path):
    obj = {"format": "lmbook.BPETokenizer", "version": 1, "pattern": None}
    obj["merges"] = [[97, 98], [97, 98]]
    (tmp_path / "t.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"merges\[1\] expected a new pair"):
        BPETokenizer.load(tmp_path / "t.json")


def test_bpe_load_wrong_version(tmp_path):
    obj = {"format": "lmbook.BPETokenizer", "version": 7, "pattern": None, "merges": []}
    (tmp_path / "t.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="version expected 1, got 7"):
        BPETokenizer.load(tmp_path / "t.json")


def test_save_failure_keeps_the_previous_file(tmp_path, monkeypatch, bpe):
    path = tmp_path / "bpe.json"
    BPETokenizer().save(path)  # the previous, untrained tokenizer

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("lmbook.fileio.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        bpe.save(path)
    monkeypatch.undo()
    assert BPETokenizer.load(path).merges == []
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.json"]


@pytest.mark.parametrize("cls", [CharTokenizer, BPETokenizer])
def test_save_to_a_folder_names_the_argument(tmp_path, cls):
    tok = CharTokenizer.from_text("ab") if cls is CharTokenizer else BPETokenizer()
    with pytest.raises(ValueError, match=r"path '.*' is a folder; expected a file"):
        tok.save(tmp_path)
    with pytest.raises(ValueError, match=r"path '.*nowhere.*' cannot be written"):
        tok.save(tmp_path / "nowhere" / "tok.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cls", [CharTokenizer, BPETokenizer])
def test_load_a_folder_or_a_missing_file_names_the_argument(tmp_path, cls):
    with pytest.raises(ValueError, match=r"path '.*' is a folder; expected a lmbook"):
        cls.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"path '.*missing.json' does not"):
        cls.load(tmp_path / "missing.json")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        BPETokenizer().save(tmp_path / "bpe.json")
        CharTokenizer.from_text("ab").save(tmp_path / "chars.json")
    finally:
        os.umask(old)
    for name in ("bpe.json", "chars.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


# --- Hugging Face tokenizers: to_hf, from_hf, save_pretrained ----------------------

# Characters that split text in unusual ways: combining marks, zero-width joiners and
# spaces, a byte-order mark, emoji sequences (ZWJ, skin tone, flag), CJK, every kind
# of whitespace and control GPT-2's pattern treats differently, superscripts and
# other non-decimal numbers, and the letters of the "'s"-style contractions.
HOSTILE = (
    "aé東京タ🙂👩\u200d💻👍🏽🇫🇷x\u0301\u0300\u20dd\u200b\ufeff"
    " \t\n\r\x0b\x0c\x85\xa0\u2028\u3000\x00\x1c\x1f\x7f"
    "'sStTlLdDmMvVeErR09²٣½Ⅻ!?.-_"
)
PIECES = [
    "'s",
    "'S",
    "'ll",
    "'ve",
    "'re",
    "n't",
    " ",
    "  ",
    "   ",
    "\n",
    " \n ",
    "\n\n",
    "\t",
    "don't",
    "IT'S",
    "東京タワー",
    "中文分词",
    "👩\u200d💻",
    "🇫🇷",
    "e\u0301",
    "x\u0301\u0300",
    "42",
    " 3.14",
    "ｆｕｌｌ",
    "\u3000",
    "\xa0",
]
hostile_text = st.one_of(
    # Any assigned character: the Rust library's tables (Unicode 16 in tokenizers
    # 0.23) lack letters added later, which GPT-2's \p{L} reads differently there.
    st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=60),
    st.text(st.sampled_from(HOSTILE), max_size=60),
    st.lists(st.sampled_from(PIECES + list(HOSTILE)), max_size=16).map("".join),
)
HF_CORPUS = SAMPLE + "".join(PIECES) * 4 + HOSTILE * 4


@pytest.fixture(scope="module")
def hf_pair():
    """pattern -> (lmbook tokenizer trained on HF_CORPUS, its to_hf())."""
    pytest.importorskip("transformers")
    pairs = {}
    for pattern in ("gpt2", None):
        tok = BPETokenizer(pattern).train(HF_CORPUS, 400)
        pairs[pattern] = (tok, tok.to_hf())
    return pairs


def test_bytes_to_unicode_is_gpt2s_alphabet():
    tokenizers = pytest.importorskip("tokenizers")
    b2u = bytes_to_unicode()
    assert len(b2u) == 256 and len(set(b2u.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in b2u.values())
    assert (b2u[0x20], b2u[0x0A], b2u[0x09], b2u[0x00]) == ("Ġ", "Ċ", "ĉ", "Ā")
    assert (b2u[ord("A")], b2u[0xE9], b2u[0xAD]) == ("A", "é", "Ń")
    assert set(b2u.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    # the library's byte-level decoder reads our characters as the same bytes
    decoder = tokenizers.decoders.ByteLevel()
    text = "héllo 東京 🙂\n\t\x00"
    assert decoder.decode(["".join(b2u[b] for b in text.encode())]) == text


def test_to_hf_builds_a_split_and_byte_level_bpe(hf_pair):
    tok, hf = hf_pair["gpt2"]
    spec = json.loads(hf.backend_tokenizer.to_str())
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["behavior"] == "Isolated"
    assert split["pattern"] == {"Regex": GPT2_SPLIT_PATTERN}
    assert byte_level["type"] == "ByteLevel" and not byte_level["use_regex"]
    assert not byte_level["add_prefix_space"]
    assert spec["decoder"]["type"] == "ByteLevel" and spec["normalizer"] is None
    assert spec["model"]["type"] == "BPE" and spec["added_tokens"] == []
    vocab, b2u = spec["model"]["vocab"], bytes_to_unicode()
    assert len(vocab) == hf.vocab_size == tok.vocab_size
    assert all(vocab[b2u[b]] == b for b in range(256))
    for k, (a, b) in enumerate(spec["model"]["merges"]):
        assert vocab[a + b] == 256 + k
        assert tok.vocab[256 + k] == tok.vocab[vocab[a]] + tok.vocab[vocab[b]]
    plain = json.loads(BPETokenizer(None).to_hf().backend_tokenizer.to_str())
    assert plain["pre_tokenizer"]["type"] == "ByteLevel"  # no Split: one chunk
    assert not plain["pre_tokenizer"]["use_regex"]


@pytest.mark.parametrize("pattern", ["gpt2", None])
@settings(max_examples=150, deadline=None)
@given(s=hostile_text)
def test_hugging_face_encodes_hostile_unicode_to_the_same_ids(hf_pair, pattern, s):
    tok, hf = hf_pair[pattern]
    ids = tok.encode(s)
    assert hf.encode(s) == ids
    assert hf(s)["input_ids"] == ids
    assert hf.decode(ids) == tok.decode(ids) == s


def test_hugging_face_uses_the_learned_multibyte_merges(hf_pair):
    tok, hf = hf_pair["gpt2"]
    for word in ["東京タワー", "👩\u200d💻", " don't", "'s"]:
        ids = tok.encode(word)
        assert len(ids) < len(word.encode()), word  # merges learned from HF_CORPUS
        assert hf.encode(word) == ids
        assert hf.convert_ids_to_tokens(ids) == [
            "".join(bytes_to_unicode()[b] for b in tok.vocab[i]) for i in ids
        ]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_hugging_face_decodes_any_ids_like_lmbook(hf_pair, data):
    # arbitrary ids are often not valid UTF-8: both put U+FFFD in the same places
    tok, hf = hf_pair["gpt2"]
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=12))
    assert hf.decode(ids) == tok.decode(ids)


@pytest.mark.parametrize("pattern", ["gpt2", None])
def test_lone_surrogates_are_refused_by_both(hf_pair, pattern):
    # "\ud800" alone is no Unicode character and has no UTF-8 bytes to encode
    tok, hf = hf_pair[pattern]
    with pytest.raises(ValueError, match=r"surrogate '\\ud800' at position 1"):
        tok.encode("a\ud800b")
    with pytest.raises(Exception):  # noqa: B017  the Rust binding's TypeError
        hf.encode("a\ud800b")


@pytest.mark.parametrize("pattern", ["gpt2", None, r" ?[A-Za-z]+|\s+|[^\sA-Za-z]+"])
def test_from_hf_of_to_hf_gives_the_same_tokenizer(pattern):
    pytest.importorskip("transformers")
    tok = BPETokenizer(pattern).train(HF_CORPUS, 380)
    hf = tok.to_hf()
    for source in (hf, hf.backend_tokenizer):
        back = BPETokenizer.from_hf(source)
        assert back.merges == tok.merges and back.pattern == tok.pattern
        assert back.encode(HF_CORPUS) == tok.encode(HF_CORPUS) == hf.encode(HF_CORPUS)


def test_from_hf_reads_gpt2s_own_byte_level_pre_tokenizer():
    # a single ByteLevel with use_regex=True splits with GPT-2's pattern itself
    tokenizers = pytest.importorskip("tokenizers")
    tok = BPETokenizer().train(SAMPLE, 300)
    backend = tok.to_hf().backend_tokenizer
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=True
    )
    back = BPETokenizer.from_hf(backend)
    assert back.pattern == GPT2_SPLIT_PATTERN and back.merges == tok.merges
    assert backend.encode(SAMPLE).ids == back.encode(SAMPLE)


def test_save_pretrained_loads_unchanged_with_auto_tokenizer(tmp_path, hf_pair):
    transformers = pytest.importorskip("transformers")
    tok, hf = hf_pair["gpt2"]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # a model saved there first
    tok.save_pretrained(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "tokenizer.json", "tokenizer_config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporaries
    loaded = transformers.AutoTokenizer.from_pretrained(folder)
    assert loaded.backend_tokenizer.to_str() == hf.backend_tokenizer.to_str()
    assert loaded.encode(HF_CORPUS) == tok.encode(HF_CORPUS)
    assert loaded.decode(tok.encode(HF_CORPUS)) == HF_CORPUS
    for back in (BPETokenizer.from_hf(loaded), BPETokenizer.from_pretrained(folder)):
        assert back.merges == tok.merges and back.pattern == tok.pattern
    BPETokenizer(None).save_pretrained(folder)  # replaces the tokenizer files
    assert BPETokenizer.from_pretrained(folder).vocab_size == 256
    assert (folder / "config.json").read_text() == "{}"


def test_from_pretrained_needs_a_folder_with_tokenizer_json(tmp_path):
    pytest.importorskip("tokenizers")
    with pytest.raises(ValueError, match=r"is not a folder"):
        BPETokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"tokenizer.json not found"):
        BPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not a valid tokenizer.json"):
        BPETokenizer.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        BPETokenizer.from_pretrained(3)


def _hf_bpe(pre_tokenizer="byte_level", decoder=True, **model_kw):
    """A tokenizers.Tokenizer laid out as lmbook's, with parts to break in tests."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    backend = BPETokenizer().train(SAMPLE, 300).to_hf().backend_tokenizer
    spec = json.loads(backend.to_str())
    model = models.BPE(
        spec["model"]["vocab"], [tuple(m) for m in spec["model"]["merges"]], **model_kw
    )
    out = tokenizers.Tokenizer(model)
    if pre_tokenizer == "byte_level":
        pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if pre_tokenizer is not None:
        out.pre_tokenizer = pre_tokenizer
    if decoder:
        out.decoder = decoders.ByteLevel()
    return out


def _refused(hf, match):
    with pytest.raises(ValueError, match="cannot read this tokenizer as lmbook's"):
        BPETokenizer.from_hf(hf)
    with pytest.raises(ValueError, match=match):
        BPETokenizer.from_hf(hf)


def _byte_level_after_split():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def test_from_hf_refuses_a_wordpiece_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    wordpiece = tokenizers.models.WordPiece(
        {"[UNK]": 0, "un": 1, "##able": 2}, unk_token="[UNK]"
    )
    hf = tokenizers.Tokenizer(wordpiece)
    hf.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    _refused(hf, r"model is WordPiece, not BPE")


def test_from_hf_refuses_bpe_without_a_byte_level_pre_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    whitespace = tokenizers.pre_tokenizers.Whitespace()
    _refused(_hf_bpe(whitespace), r"pre-tokenizer is Whitespace, not byte-level")
    _refused(_hf_bpe(None), r"pre-tokenizer is none, not byte-level")
    two = tokenizers.pre_tokenizers.Sequence([whitespace, _byte_level_after_split()])
    _refused(_hf_bpe(two), r"pre-tokenizer is Sequence\[Whitespace, ByteLevel\]")
    prefix = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=True)
    _refused(_hf_bpe(prefix), r"add_prefix_space=True")
    split = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex(r"\s+"), behavior="removed"
    )
    seq = tokenizers.pre_tokenizers.Sequence([split, _byte_level_after_split()])
    _refused(_hf_bpe(seq), r"behavior='Removed'")
    twice = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Split(
                tokenizers.Regex(r"\s+|\S+"), behavior="isolated"
            ),
            tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    _refused(_hf_bpe(twice), r"use_regex=True after a Split, so it splits twice")


def test_from_hf_refuses_a_byte_level_bpe_trained_by_hugging_face():
    # HF's trainer numbers the bytes in the order of GPT-2's alphabet, not 0..255
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([SAMPLE], trainer)
    _refused(hf, r"byte 0x00 \('Ā'\) has id \d+; lmbook's layout gives byte i")


def test_from_hf_refuses_what_changes_the_ids():
    tokenizers = pytest.importorskip("tokenizers")
    _refused(_hf_bpe(decoder=False), r"decoder is none, not ByteLevel")
    _refused(_hf_bpe(dropout=0.1), r"dropout=0.1")
    _refused(_hf_bpe(byte_fallback=True), r"byte_fallback=True")
    hf = _hf_bpe()
    hf.normalizer = tokenizers.normalizers.NFC()
    _refused(hf, r"normalizer \(NFC\)")
    hf = _hf_bpe()
    hf.add_special_tokens(["<|endoftext|>"])
    _refused(hf, r"1 added or special tokens \('<\|endoftext\|>'\)")
    hf = _hf_bpe()
    hf.post_processor = tokenizers.processors.TemplateProcessing(
        single="Ġ $A", special_tokens=[("Ġ", 32)]
    )
    _refused(hf, r"post-processor \(TemplateProcessing\) adds tokens")


def test_from_hf_refuses_another_id_layout():
    tokenizers = pytest.importorskip("tokenizers")
    spec = json.loads(_hf_bpe().to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    first, second = ("".join(m) for m in merges[:2])
    vocab[first], vocab[second] = 257, 256  # the first two merges' ids swapped
    swapped = json.loads(json.dumps(spec))
    swapped["model"]["vocab"] = vocab
    _refused(
        tokenizers.Tokenizer.from_str(json.dumps(swapped)),
        r"merge 0 .* makes the token with id 257; .* 256 \+ k = 256",
    )
    spec["model"]["merges"] = merges[:-1]  # a token without its merge
    _refused(
        tokenizers.Tokenizer.from_str(json.dumps(spec)),
        r"vocabulary has 300 tokens and it has 43 merges",
    )


@pytest.mark.parametrize(
    "value", ["gpt2", None, {"model": "BPE"}, BPETokenizer(), CharTokenizer(["a"])]
)
def test_from_hf_of_something_else_is_a_type_error(value):
    pytest.importorskip("tokenizers")
    with pytest.raises(TypeError, match=r"hf_tokenizer must be a transformers .*got"):
        BPETokenizer.from_hf(value)


def test_to_hf_refuses_what_hugging_face_cannot_hold(tmp_path):
    pytest.importorskip("transformers")
    # merges 1 and 3 both make b"abc": HF's vocabulary maps a string to one id
    obj = {"format": "lmbook.BPETokenizer", "version": 1, "pattern": None}
    obj["merges"] = [[97, 98], [256, 99], [98, 99], [97, 258]]
    (tmp_path / "t.json").write_text(json.dumps(obj))
    tok = BPETokenizer.load(tmp_path / "t.json")
    with pytest.raises(
        ValueError, match=r"tokens 257 and 259 both stand for the bytes b'abc'"
    ):
        tok.to_hf()
    with pytest.raises(ValueError, match=r"does not compile in the tokenizers lib"):
        BPETokenizer(r"(?V1)\w+|\W").to_hf()  # `regex`-only syntax
