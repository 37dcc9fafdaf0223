"""lmbook's byte-level BPE in Hugging Face's format, both ways.

A Hugging Face tokenizer stores byte-level BPE the way GPT-2's ``encoder.py``
(Radford et al., 2019) did: every byte is shown as a printable character
(`bytes_to_unicode`), tokens and merges are strings of those characters, and a
pipeline of pieces from the ``tokenizers`` library does the work: a ``Split``
pre-tokenizer with the split regex, a ``ByteLevel`` pre-tokenizer that turns
each chunk's UTF-8 bytes into that alphabet, the ``BPE`` model with the merges,
and a ``ByteLevel`` decoder that turns them back. This is the layout of the
``tokenizer.json`` of GPT-2, Llama 3 and most byte-level models since.

`to_hf` builds such a tokenizer from a `BPETokenizer` (same ids for every
string); `from_hf` reads one back and refuses, with a ValueError that says what
differs, any tokenizer that would not encode like lmbook's (another model type,
a normalizer, no byte-level step, added tokens, or another id layout).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, NoReturn

from lmbook.checks import tname
from lmbook.fileio import atomic_folder, check_path, recover_folder

if TYPE_CHECKING:
    from lmbook.tokenizers.bpe import BPETokenizer

__all__ = ["bytes_to_unicode", "to_hf", "from_hf", "save_pretrained", "from_pretrained"]


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte value 0..255.

    Bytes that are printable Latin-1 characters (``!`` to ``~``, ``¡`` to ``¬``,
    ``®`` to ``ÿ``) stand for themselves; the other 68 (controls, the space,
    ...) are shifted to U+0100 and up, in order, so the space 0x20 is ``Ġ`` and
    the newline 0x0A is ``Ċ``. Every token then prints as visible characters.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in keep]
    out = {b: chr(b) for b in keep}
    out.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return out


def _import_hf(with_transformers: bool = True):
    try:
        import tokenizers

        transformers = None
        if with_transformers:
            import transformers
    except ImportError as err:
        raise ImportError(
            f"this needs Hugging Face's 'tokenizers' and 'transformers' packages "
            f"({err}): pip install 'lmbook[hf]'"
        ) from None
    return tokenizers, transformers


def _show(data: bytes) -> str:
    b2u = bytes_to_unicode()
    return "".join(b2u[b] for b in data)


def to_hf(tok: BPETokenizer):
    """`tok` as a ``transformers.PreTrainedTokenizerFast`` with the same ids."""
    tokenizers, transformers = _import_hf()
    from tokenizers import decoders, models, pre_tokenizers

    shown = [_show(tok._vocab[i]) for i in range(tok.vocab_size)]
    vocab = {s: i for i, s in enumerate(shown)}
    if len(vocab) != len(shown):
        i = next(i for i, s in enumerate(shown) if vocab[s] != i)  # the first
        raise ValueError(
            f"tokens {i} and {vocab[shown[i]]} both stand for the bytes "
            f"{tok._vocab[i]!r}; a Hugging Face BPE vocabulary maps each string to "
            "one id, so these merges cannot be exported"
        )
    merges = [(shown[a], shown[b]) for a, b in tok._merges]
    backend = tokenizers.Tokenizer(models.BPE(vocab, merges))
    # use_regex=False: ByteLevel would otherwise split again with GPT-2's regex
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if tok.pattern is None:
        backend.pre_tokenizer = byte_level
    else:
        try:
            regex = tokenizers.Regex(tok.pattern)
        except Exception as err:  # the Rust library's error type is not public
            raise ValueError(
                f"pattern {tok.pattern!r} does not compile in the tokenizers "
                f"library (Oniguruma syntax): {err}"
            ) from err
        split = pre_tokenizers.Split(regex, behavior="isolated", invert=False)
        backend.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    backend.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False
    )


def _backend(hf_tokenizer: object):
    """The ``tokenizers.Tokenizer`` inside `hf_tokenizer`, or a TypeError."""
    tokenizers = sys.modules.get("tokenizers")
    if tokenizers is not None and isinstance(hf_tokenizer, tokenizers.Tokenizer):
        return hf_tokenizer
    transformers = sys.modules.get("transformers")  # loaded if it is one of its
    if transformers is not None and isinstance(
        hf_tokenizer, transformers.PreTrainedTokenizerBase
    ):
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"{tname(hf_tokenizer)} is a Python ('slow') tokenizer with no "
                "tokenizer.json; load a fast one, e.g. "
                "AutoTokenizer.from_pretrained(folder, use_fast=True)"
            )
        return backend
    raise TypeError(
        "hf_tokenizer must be a transformers PreTrainedTokenizerFast or a "
        f"tokenizers.Tokenizer, got {tname(hf_tokenizer)}"
    )


def _refuse(why: str) -> NoReturn:
    raise ValueError(f"cannot read this tokenizer as lmbook's BPETokenizer: {why}")


def _kind(component: dict | None) -> str:
    return "none" if component is None else str(component.get("type"))


def _pattern(pre: dict | None) -> str | None:
    """lmbook's split pattern for a byte-level pre-tokenizer, or a ValueError."""
    from lmbook.tokenizers.bpe import GPT2_SPLIT_PATTERN

    not_byte_level = (
        f"its pre-tokenizer is {_describe(pre)}, not byte-level; lmbook's "
        "tokenizer needs ByteLevel, alone or after a Split by a regex, which "
        "turns the text into UTF-8 bytes in GPT-2's alphabet"
    )
    steps = pre.get("pretokenizers", []) if _kind(pre) == "Sequence" else [pre]
    shape = [_kind(step) for step in steps]
    if shape not in (["ByteLevel"], ["Split", "ByteLevel"]):
        _refuse(not_byte_level)
    split, byte_level = steps[0], steps[-1]
    if byte_level.get("add_prefix_space"):
        _refuse(
            "its ByteLevel pre-tokenizer has add_prefix_space=True, which puts a "
            "space before the text; lmbook's tokenizer encodes the text as given"
        )
    if len(steps) == 1:
        return GPT2_SPLIT_PATTERN if byte_level.get("use_regex", True) else None
    regex = split.get("pattern", {}).get("Regex")
    if regex is None:
        _refuse(
            f"its Split pre-tokenizer splits at a literal string "
            f"({split.get('pattern')}), not a regex; lmbook's tokenizer "
            "keeps the matches of a regex"
        )
    if split.get("behavior") != "Isolated" or split.get("invert"):
        _refuse(
            f"its Split pre-tokenizer has behavior={split.get('behavior')!r}, "
            f"invert={split.get('invert')}; lmbook's tokenizer keeps each "
            "match of the regex as a chunk (behavior 'Isolated', invert False)"
        )
    if byte_level.get("use_regex", True):
        _refuse(
            "its ByteLevel pre-tokenizer has use_regex=True after a Split, so it "
            "splits twice; lmbook's tokenizer splits once"
        )
    return GPT2_SPLIT_PATTERN if regex == GPT2_SPLIT_PATTERN else regex


def _describe(component: dict | None) -> str:
    if _kind(component) == "Sequence":
        inner = component.get("pretokenizers") or component.get("processors") or []
        return "Sequence[" + ", ".join(_kind(c) for c in inner) + "]"
    return _kind(component)


def _check_pipeline(spec: dict) -> str | None:
    """Check that the pipeline encodes as lmbook's does; return the pattern."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        _refuse(
            f"its model is {model.get('type')}, not BPE (a tokenizer of another "
            "kind, e.g. BERT's WordPiece); lmbook reads byte-level BPE only"
        )
    pattern = _pattern(spec.get("pre_tokenizer"))
    for field, want in [
        ("dropout", None),
        ("continuing_subword_prefix", None),
        ("end_of_word_suffix", None),
        ("byte_fallback", False),
        ("ignore_merges", False),
    ]:
        value = model.get(field, want)
        if want is None and value in (0, ""):  # no dropout, an empty prefix
            value = None
        if value != want:
            _refuse(
                f"its BPE model has {field}={value!r}; lmbook's tokenizer "
                f"has the equivalent of {field}={want!r}"
            )
    if spec.get("normalizer") is not None:
        _refuse(
            f"it has a normalizer ({_describe(spec['normalizer'])}), which changes "
            "the text before it is split; lmbook's tokenizer has none"
        )
    added = spec.get("added_tokens") or []
    if added:
        names = ", ".join(repr(t.get("content")) for t in added[:3])
        _refuse(
            f"it has {len(added)} added or special tokens ({names}"
            f"{', ...' if len(added) > 3 else ''}); lmbook's tokenizer has none"
        )
    post = spec.get("post_processor")
    if not (post is None or _kind(post) == "ByteLevel" or _adds_nothing(post)):
        _refuse(
            f"its post-processor ({_describe(post)}) adds tokens to every "
            "encoding; lmbook's tokenizer adds none"
        )
    if _kind(spec.get("decoder")) != "ByteLevel":
        _refuse(
            f"its decoder is {_describe(spec.get('decoder'))}, not ByteLevel, so "
            "it would not turn tokens back into the text's bytes"
        )
    return pattern


def _adds_nothing(post: dict) -> bool:
    """A TemplateProcessing that passes the sequence through unchanged."""
    single = [{"Sequence": {"id": "A", "type_id": 0}}]
    return (
        _kind(post) == "TemplateProcessing"
        and post.get("single") == single
        and not post.get("special_tokens")
    )


def from_hf(hf_tokenizer: object, cls: type[BPETokenizer]) -> BPETokenizer:
    """The `cls` tokenizer with the merges and split pattern of `hf_tokenizer`."""
    spec = json.loads(_backend(hf_tokenizer).to_str())
    pattern = _check_pipeline(spec)
    vocab: dict[str, int] = spec["model"].get("vocab") or {}
    raw_merges = spec["model"].get("merges") or []
    merges = [m.split(" ") if isinstance(m, str) else m for m in raw_merges]
    if len(vocab) != 256 + len(merges):
        _refuse(
            f"its vocabulary has {len(vocab)} tokens and it has {len(merges)} "
            f"merges; lmbook's layout has 256 byte tokens and one per merge "
            f"({256 + len(merges)})"
        )
    b2u = bytes_to_unicode()
    for b in range(256):
        if vocab.get(b2u[b]) != b:
            _refuse(
                f"byte 0x{b:02x} ({b2u[b]!r}) has id {vocab.get(b2u[b])}; lmbook's "
                "layout gives byte i the id i (GPT-2's own vocabulary orders the "
                "bytes differently)"
            )
    pairs: list[tuple[int, int]] = []
    for k, m in enumerate(merges):
        ids = [vocab.get(s) for s in m] if len(m) == 2 else [None]
        if None in ids or not all(i < 256 + k for i in ids):
            _refuse(
                f"merge {k} {m!r} must join two tokens made before it "
                f"(ids below {256 + k}); got ids {ids}"
            )
        made = vocab.get("".join(m))
        if made != 256 + k:
            _refuse(
                f"merge {k} {tuple(m)!r} makes the token with id {made}; lmbook's "
                f"layout has merge k make token 256 + k = {256 + k}"
            )
        pairs.append((ids[0], ids[1]))
    tok = cls(pattern)
    tok._set_merges(pairs)
    return tok


def save_pretrained(tok: BPETokenizer, path) -> None:
    """Write `tok` as Hugging Face files (tokenizer.json, ...) into folder path."""
    path = check_path(path)
    hf = to_hf(tok)
    atomic_folder(path, lambda folder: hf.save_pretrained(folder), keep_others=True)


def from_pretrained(path, cls: type[BPETokenizer]) -> BPETokenizer:
    """Read the tokenizer.json in folder path (as `save_pretrained` writes it)."""
    path = check_path(path)
    try:  # finish or undo a save that a crash interrupted
        recover_folder(path)
    except OSError:  # a read-only folder: nothing to repair there
        pass
    file = path / "tokenizer.json"
    if not path.is_dir():
        raise ValueError(f"path {str(path)!r} is not a folder")
    if not file.is_file():
        raise ValueError(
            f"{file} not found: a folder written by save_pretrained holds "
            "tokenizer.json"
        )
    tokenizers, _ = _import_hf(with_transformers=False)
    try:
        backend = tokenizers.Tokenizer.from_file(str(file))
    except Exception as err:  # the Rust library's error type is not public
        raise ValueError(f"{file} is not a valid tokenizer.json: {err}") from err
    return from_hf(backend, cls)
