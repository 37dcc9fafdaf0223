"""Tokenizers: characters, and byte-level byte-pair encoding trained from scratch.

`CharTokenizer` is the character vocabulary of char-rnn and nanoGPT's Shakespeare
example. `BPETokenizer` is byte-pair encoding as adapted to subwords by Sennrich,
Haddow and Birch, "Neural Machine Translation of Rare Words with Subword Units"
(2016), in the byte-level form of GPT-2 (Radford et al., "Language Models are
Unsupervised Multitask Learners", 2019): the base vocabulary is the 256 byte
values, so every Unicode string can be encoded and ``decode(encode(s)) == s``.

Its merges are learned by `train_bpe_reference`, Sennrich et al.'s loop as the
book teaches it, or by `train_bpe_fast`, which learns exactly the same merges with
incremental pair counts (the default of `BPETokenizer.train`).

These classes are for reading. In practice use Hugging Face's ``tokenizers``
library (Rust, parallel, with normalizers and special tokens); it trains the same
kind of byte-level BPE on gigabytes in seconds. `BPETokenizer.to_hf` and
`BPETokenizer.from_hf` convert to and from it (`lmbook.tokenizers.hf`), with the
same ids, and `bytes_to_unicode` is GPT-2's printable alphabet for bytes.
"""

from lmbook.tokenizers.bpe import GPT2_SPLIT_PATTERN, STDLIB_SPLIT_PATTERN, BPETokenizer
from lmbook.tokenizers.char import CharTokenizer, UnknownCharacterError
from lmbook.tokenizers.hf import bytes_to_unicode
from lmbook.tokenizers.train_bpe import train_bpe_fast, train_bpe_reference

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "STDLIB_SPLIT_PATTERN",
    "UnknownCharacterError",
    "bytes_to_unicode",
    "train_bpe_fast",
    "train_bpe_reference",
]
