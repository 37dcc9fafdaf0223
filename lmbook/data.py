"""Corpora for the book, found locally or downloaded once and checked.

Each corpus is a file with a canonical URL and a sha256 digest. `data_path` looks
in ``$LMBOOK_DATA_DIR``, then in the user cache (``$LMBOOK_CACHE_DIR`` or
``~/.cache/lmbook``), and only then downloads. Downloads are written to a temporary
file, verified, and renamed into place, so the cache never holds a partial or
corrupt copy.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


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


def download(
    url: str, dest: str | os.PathLike, sha256: str, timeout: float = 30
) -> Path:
    """Download `url` to `dest` atomically, verifying its sha256 digest.

    The bytes go to a temporary file beside `dest`; only a file whose digest
    matches is renamed to `dest`. On any failure no file is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
    )
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as r,
        ):
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
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def data_path(name: str, download_if_missing: bool = True) -> Path:
    """Path to a verified local copy of corpus `name`, downloading it if needed."""
    corpus = _corpus(name)
    data_dir = os.environ.get("LMBOOK_DATA_DIR")
    if data_dir:
        candidate = Path(data_dir).expanduser() / corpus.filename
        if candidate.is_file():
            _check(candidate, corpus)
            return candidate
    cached = cache_dir() / corpus.filename
    if cached.is_file():
        try:
            _check(cached, corpus)
            return cached
        except ChecksumError:
            cached.unlink()  # a bad cache entry is ours to replace
    where = f"LMBOOK_DATA_DIR={data_dir!r}" if data_dir else "LMBOOK_DATA_DIR (unset)"
    if not download_if_missing:
        raise DataUnavailableError(
            f"{corpus.filename} is not in {where} nor in the cache {cached.parent}; "
            f"set LMBOOK_DATA_DIR to a folder that holds {corpus.filename}"
        )
    try:
        return download(corpus.url, cached, corpus.sha256)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if isinstance(err, ChecksumError):
            raise
        raise DataUnavailableError(
            f"{corpus.filename} is not in {where} nor in the cache {cached.parent}, "
            f"and downloading {corpus.url} failed ({err}). When offline, set "
            f"LMBOOK_DATA_DIR to a folder that holds {corpus.filename} "
            f"(sha256 {corpus.sha256})."
        ) from err


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
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    if not {"sentence", "label"} <= set(reader.fieldnames or ()):
        raise ValueError(
            f"{source} is not an SST-2 file: expected columns 'sentence' and 'label', "
            f"got {reader.fieldnames}"
        )
    rows = [(r["sentence"].strip(), int(r["label"])) for r in reader]
    counts = (len(rows), sum(label for _, label in rows))
    if counts != SST2_TRAIN_COUNTS:
        raise ChecksumError(
            f"{source} is not GLUE's SST-2 training split: expected (rows, positives) "
            f"{SST2_TRAIN_COUNTS}, got {counts}"
        )
    return rows


def load_sst2(split: str = "train") -> list[tuple[str, int]]:
    """SST-2's training split as ``(sentence, label)`` pairs; label 1 is positive.

    Looks for ``sst2/train.tsv`` in ``$LMBOOK_DATA_DIR`` (checked by sha256), then
    in the cache, then downloads GLUE's archive and checks the row and label counts
    (67,349 rows, 37,569 positive). Only the training split is available offline:
    hold out a seeded part of it for evaluation.
    """
    if split != "train":
        raise ValueError(
            f"split={split!r} is not available; expected 'train' (hold out a seeded "
            "part of it: the offline copy has no validation split)"
        )
    data_dir = os.environ.get("LMBOOK_DATA_DIR")
    if data_dir and (Path(data_dir).expanduser() / SST2_LOCAL).is_file():
        path = Path(data_dir).expanduser() / SST2_LOCAL
        actual = sha256_of(path)
        if actual != SST2_LOCAL_SHA256:
            raise ChecksumError(
                f"{path} is not the expected SST-2 copy: sha256 expected "
                f"{SST2_LOCAL_SHA256}, got {actual}"
            )
        return _parse_sst2(path.read_text(encoding="utf-8"), str(path))
    cached = cache_dir() / SST2_LOCAL
    if cached.is_file():
        try:
            return _parse_sst2(cached.read_text(encoding="utf-8"), str(cached))
        except (ChecksumError, ValueError):
            cached.unlink()
    try:
        with urllib.request.urlopen(SST2_URL, timeout=60) as r:
            archive = r.read()
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        where = (
            f"LMBOOK_DATA_DIR={data_dir!r}" if data_dir else "LMBOOK_DATA_DIR (unset)"
        )
        raise DataUnavailableError(
            f"{SST2_LOCAL} is not in {where} nor in the cache {cache_dir()}, and "
            f"downloading {SST2_URL} failed ({err}). When offline, set LMBOOK_DATA_DIR "
            f"to a folder that holds {SST2_LOCAL}."
        ) from err
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            text = z.read("SST-2/train.tsv").decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as err:
        raise ChecksumError(
            f"download of {SST2_URL} is not GLUE's SST-2 archive"
        ) from err
    rows = _parse_sst2(text, SST2_URL)
    body = "label\tsentence\n" + "".join(f"{y}\t{x}\n" for x, y in rows)
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".train.", suffix=".part", dir=cached.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, cached)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return rows
