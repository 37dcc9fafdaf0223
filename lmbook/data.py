"""Corpora for the book, found locally or downloaded once and checked.

Each corpus is a file with a canonical URL and a sha256 digest. `data_path` looks
in ``$LMBOOK_DATA_DIR``, then in the user cache (``$LMBOOK_CACHE_DIR`` or
``~/.cache/lmbook``), and only then downloads. Downloads are written to a temporary
file, verified, and renamed into place (`lmbook.fileio.atomic_write`), so the
cache never holds a partial or corrupt copy.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lmbook.fileio import atomic_write, check_path


@dataclass(frozen=True)
class Corpus:
    """Where a corpus comes from and how to recognise a good copy."""

    filename: str  # name inside $LMBOOK_DATA_DIR and the cache
    url: str  # canonical source
    sha256: str  # hex digest of the exact bytes
    size: int  # bytes
    description: str = ""


CORPORA: dict[str, Corpus] = {
    "tinyshakespeare": Corpus(
        filename="tinyshakespeare.txt",
        url=(
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/"
            "data/tinyshakespeare/input.txt"
        ),
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        size=1_115_394,
        description="Tiny Shakespeare, the input.txt of char-rnn",
    ),
}


class ChecksumError(ValueError):
    """A file's sha256 digest differs from the one the book expects."""


class DataUnavailableError(FileNotFoundError):
    """A corpus is neither on disk nor downloadable."""


def cache_dir() -> Path:
    """The download cache: ``$LMBOOK_CACHE_DIR`` or ``~/.cache/lmbook``."""
    env = os.environ.get("LMBOOK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lmbook"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corpus(name: str) -> Corpus:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in CORPORA:
        raise ValueError(
            f"name={name!r} is not a known corpus; expected one of {sorted(CORPORA)}"
        )
    return CORPORA[name]


def _check(path: Path, corpus: Corpus) -> None:
    actual = sha256_of(path)
    if actual != corpus.sha256:
        raise ChecksumError(
            f"{path} is not the expected {corpus.filename}: sha256 expected "
            f"{corpus.sha256}, got {actual}. Delete the file or point LMBOOK_DATA_DIR "
            "at a good copy."
        )


def _is_file(path: Path, where: str) -> bool:
    """True for a file, False when nothing is there; a ValueError for a folder."""
    if path.exists() and not path.is_file():
        raise ValueError(
            f"{where} holds {str(path)!r}, which is a folder, not a file; remove or "
            "rename it"
        )
    return path.is_file()


def _unavailable(what, data_dir, cached: Path, bad: Exception | None, why: str):
    """The error for data that is nowhere on disk and could not be downloaded."""
    where = f"LMBOOK_DATA_DIR={data_dir!r}" if data_dir else "LMBOOK_DATA_DIR (unset)"
    if bad is None:
        return DataUnavailableError(
            f"{what} is not in {where} nor in the cache {cached.parent}, and {why}"
        )
    return DataUnavailableError(
        f"{what} is not in {where}, and the cached copy {cached} cannot be used "
        f"({bad}); it was left as it is, and {why}"
    )


def download(
    url: str, dest: str | os.PathLike, sha256: str, timeout: float = 30
) -> Path:
    """Download `url` to `dest` atomically, verifying its sha256 digest.

    The bytes go to a temporary file beside `dest` (`lmbook.fileio.atomic_write`);
    only a file whose digest matches is renamed to `dest`. On any failure no file
    is left behind and `dest` is unchanged.
    """
    dest = check_path(dest, "dest")
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(
                f"download of {url} is corrupt: sha256 expected {sha256}, "
                f"got {actual}; nothing was saved"
            )

    return atomic_write(dest, write, name="dest")


def data_path(name: str, download_if_missing: bool = True) -> Path:
    """Path to a verified local copy of corpus `name`, downloading it if needed.

    A corrupt copy in the cache is replaced only by a verified download; when
    none can be had, the error says what is wrong with it. A copy in
    ``$LMBOOK_DATA_DIR`` is never changed.
    """
    corpus = _corpus(name)
    data_dir = os.environ.get("LMBOOK_DATA_DIR")
    if data_dir:
        candidate = Path(data_dir).expanduser() / corpus.filename
        if _is_file(candidate, "LMBOOK_DATA_DIR"):
            _check(candidate, corpus)
            return candidate
    cached, bad = cache_dir() / corpus.filename, None
    if _is_file(cached, "the cache (LMBOOK_CACHE_DIR)"):
        try:
            _check(cached, corpus)
            return cached
        except ChecksumError as err:
            bad = err
    hint = (
        f"set LMBOOK_DATA_DIR to a folder that holds {corpus.filename} "
        f"(sha256 {corpus.sha256})"
    )
    if not download_if_missing:
        why = f"download_if_missing is False: {hint}"
        raise _unavailable(corpus.filename, data_dir, cached, bad, why)
    try:
        return download(corpus.url, cached, corpus.sha256)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        why = f"downloading {corpus.url} failed ({err}). When offline, {hint}."
        raise _unavailable(corpus.filename, data_dir, cached, bad, why) from err


def load_text(name: str) -> str:
    """Return corpus `name` (for example ``"tinyshakespeare"``) as one `str`."""
    return data_path(name).read_text(encoding="utf-8")


def train_val_split(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """Split a corpus into its first `train_fraction` and the rest, as nanoGPT does."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


# SST-2 (Socher et al., 2013) as distributed with GLUE (Wang et al., 2019).
SST2_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST2_LOCAL = "sst2/train.tsv"  # inside $LMBOOK_DATA_DIR: header "label<TAB>sentence"
SST2_LOCAL_SHA256 = "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c"
SST2_TRAIN_COUNTS = (67_349, 37_569)  # (rows, positive labels) of GLUE's train split


def _parse_sst2(text: str, source: str) -> list[tuple[str, int]]:
    """Rows of a tab-separated SST-2 file, read by header names, not positions."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]  # CRLF or LF
    header = lines[0].split("\t") if lines else []
    if not {"sentence", "label"} <= set(header):
        got = lines[0][:80] if lines else ""
        raise ValueError(
            f"{source} is not an SST-2 file: its header (line 1) must have the "
            f"tab-separated columns 'label' and 'sentence', got {got!r}"
        )
    at_label, at_sentence = header.index("label"), header.index("sentence")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ValueError(
                f"{source}, line {number}: expected {len(header)} tab-separated "
                f"fields ({', '.join(header)}), got {len(fields)}: {line[:80]!r}"
            )
        label = fields[at_label]
        if label not in ("0", "1"):
            raise ValueError(
                f"{source}, line {number}: label must be 0 or 1, got {label!r}"
            )
        rows.append((fields[at_sentence].strip(), int(label)))
    return rows


def _check_counts(rows: list[tuple[str, int]], source: str) -> None:
    counts = (len(rows), sum(label for _, label in rows))
    if counts != SST2_TRAIN_COUNTS:
        raise ChecksumError(
            f"{source} is not GLUE's SST-2 training split: expected (rows, positives) "
            f"{SST2_TRAIN_COUNTS}, got {counts}"
        )


def _read_sst2(path: Path) -> list[tuple[str, int]]:
    """A local SST-2 copy, checked: header and rows, then sha256 and counts."""
    try:
        rows = _parse_sst2(path.read_bytes().decode("utf-8"), str(path))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err}") from err
    actual = sha256_of(path)
    if actual != SST2_LOCAL_SHA256:
        raise ChecksumError(
            f"{path} is not the expected SST-2 copy: sha256 expected "
            f"{SST2_LOCAL_SHA256}, got {actual}"
        )
    _check_counts(rows, str(path))
    return rows


def _sst2_file(rows: list[tuple[str, int]]) -> str:
    """The bytes of the offline copy: header ``label<TAB>sentence``, CRLF lines."""
    return "label\tsentence\r\n" + "".join(f"{y}\t{x}\r\n" for x, y in rows)


def load_sst2(split: str = "train") -> list[tuple[str, int]]:
    """SST-2's training split as ``(sentence, label)`` pairs; label 1 is positive.

    Looks for ``sst2/train.tsv`` in ``$LMBOOK_DATA_DIR``, then in the cache (each
    checked: its rows, then its sha256), then downloads GLUE's archive and checks
    the row and label counts (67,349 rows, 37,569 positive). Only the training
    split is available offline: hold out a seeded part of it for evaluation.
    A bad cached copy is only ever replaced by a verified download.
    """
    if split != "train":
        raise ValueError(
            f"split={split!r} is not available; expected 'train' (hold out a seeded "
            "part of it: the offline copy has no validation split)"
        )
    data_dir = os.environ.get("LMBOOK_DATA_DIR")
    if data_dir:
        local = Path(data_dir).expanduser() / SST2_LOCAL
        if _is_file(local, "LMBOOK_DATA_DIR"):
            return _read_sst2(local)
    cached, bad = cache_dir() / SST2_LOCAL, None
    if _is_file(cached, "the cache (LMBOOK_CACHE_DIR)"):
        try:
            return _read_sst2(cached)
        except ValueError as err:  # ChecksumError included
            bad = err
    try:
        with urllib.request.urlopen(SST2_URL, timeout=60) as r:
            archive = r.read()
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        why = (
            f"downloading {SST2_URL} failed ({err}). When offline, set "
            f"LMBOOK_DATA_DIR to a folder that holds {SST2_LOCAL}."
        )
        raise _unavailable(SST2_LOCAL, data_dir, cached, bad, why) from err
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            text = z.read("SST-2/train.tsv").decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise ChecksumError(
            f"download of {SST2_URL} is not GLUE's SST-2 archive"
        ) from err
    rows = _parse_sst2(text, SST2_URL)
    _check_counts(rows, SST2_URL)
    body = _sst2_file(rows)
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != SST2_LOCAL_SHA256:
        warnings.warn(
            f"the rows of {SST2_URL} are right, but they do not make the exact file "
            f"lmbook expects (sha256 {SST2_LOCAL_SHA256}), so they were not cached",
            stacklevel=2,
        )
        return rows
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, body, name="the SST-2 cache file")
    return rows
