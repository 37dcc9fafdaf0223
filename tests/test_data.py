"""load_text: local copies, the cache, verified atomic downloads, clear errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lmbook import data, load_text, train_val_split
from tests.conftest import serve

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = data.CORPORA["tinyshakespeare"]


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """No data dir and an empty cache in a temporary folder."""
    monkeypatch.delenv("LMBOOK_DATA_DIR", raising=False)
    monkeypatch.setenv("LMBOOK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture()
def fake_corpus(monkeypatch, tmp_path):
    """Register a small corpus served over HTTP on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    payload = "To be, or not to be: that is the question.\n" * 50
    (root / "good.txt").write_text(payload, encoding="utf-8")
    (root / "bad.txt").write_text(payload.replace("be", "bee"), encoding="utf-8")
    server, url = serve(root)
    digest = hashlib.sha256(payload.encode()).hexdigest()

    def register(which: str) -> data.Corpus:
        corpus = data.Corpus("fake.txt", f"{url}/{which}", digest, len(payload))
        monkeypatch.setitem(data.CORPORA, "fake", corpus)
        return corpus

    yield register, payload
    server.shutdown()


@pytest.mark.skipif(not (SHARED / TINY.filename).exists(), reason="no shared data")
def test_tinyshakespeare_from_data_dir(monkeypatch):
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(SHARED))
    text = load_text("tinyshakespeare")
    assert len(text.encode("utf-8")) == TINY.size == 1_115_394
    assert text.startswith("First Citizen:")
    assert data.sha256_of(SHARED / TINY.filename) == TINY.sha256


def test_download_is_verified_cached_and_reused(isolated, fake_corpus):
    register, payload = fake_corpus
    register("good.txt")
    assert load_text("fake") == payload
    cached = isolated / "cache" / "fake.txt"
    assert cached.read_text(encoding="utf-8") == payload
    assert [p.name for p in cached.parent.iterdir()] == ["fake.txt"]  # no temp files
    register("missing.txt")  # the server no longer has it: the cache must serve
    assert load_text("fake") == payload


def test_corrupt_download_names_both_digests_and_leaves_nothing(isolated, fake_corpus):
    register, payload = fake_corpus
    corpus = register("bad.txt")
    bad = hashlib.sha256(payload.replace("be", "bee").encode()).hexdigest()
    with pytest.raises(data.ChecksumError) as info:
        load_text("fake")
    assert corpus.sha256 in str(info.value) and bad in str(info.value)
    cache = isolated / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_copy_in_data_dir_is_reported(monkeypatch, isolated, fake_corpus):
    register, _ = fake_corpus
    corpus = register("good.txt")
    local = isolated / "data"
    local.mkdir()
    (local / "fake.txt").write_text("garbage", encoding="utf-8")
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(local))
    with pytest.raises(data.ChecksumError, match=corpus.sha256):
        load_text("fake")
    assert (local / "fake.txt").read_text() == "garbage"  # the user's file is kept


def test_corrupt_cache_entry_is_replaced(isolated, fake_corpus):
    register, payload = fake_corpus
    register("good.txt")
    cache = isolated / "cache"
    cache.mkdir()
    (cache / "fake.txt").write_text("truncated", encoding="utf-8")
    assert load_text("fake") == payload


def test_offline_and_missing_says_what_to_set(isolated, monkeypatch):
    corpus = data.Corpus("nowhere.txt", "http://127.0.0.1:9/nowhere.txt", "0" * 64, 1)
    monkeypatch.setitem(data.CORPORA, "nowhere", corpus)
    with pytest.raises(data.DataUnavailableError, match="set\\s+LMBOOK_DATA_DIR"):
        load_text("nowhere")
    assert not (isolated / "cache").exists() or not os.listdir(isolated / "cache")


def test_unknown_corpus_name():
    with pytest.raises(ValueError, match=r"name='wikitext' is not a known corpus"):
        load_text("wikitext")


def test_corpus_name_of_wrong_type():
    with pytest.raises(TypeError, match="name must be a str"):
        load_text(3)


def test_train_val_split():
    train, val = train_val_split("abcdefghij", 0.9)
    assert (train, val) == ("abcdefghi", "j")
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\)"):
        train_val_split("abc", 1.5)
    with pytest.raises(TypeError, match="text must be a str"):
        train_val_split(b"abc")


# --- SST-2 -------------------------------------------------------------------


@pytest.mark.skipif(not (SHARED / data.SST2_LOCAL).exists(), reason="no shared data")
def test_sst2_from_data_dir(monkeypatch):
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(SHARED))
    rows = data.load_sst2()
    assert len(rows) == 67_349 and sum(y for _, y in rows) == 37_569
    assert rows[0] == ("hide new secretions from the parental units", 0)


def test_sst2_corrupt_local_copy(monkeypatch, tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("label\tsentence\n1\tgood\n")
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(data.ChecksumError, match=data.SST2_LOCAL_SHA256):
        data.load_sst2()


def _serve_zip(tmp_path, members: dict[str, str]):
    import zipfile

    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "SST-2.zip", "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return serve(root)


def test_sst2_download_is_checked_cached_and_reused(isolated, monkeypatch):
    tsv = "sentence\tlabel\na gem \t1\ndull\t0\nfine\t1\n"  # GLUE's column order
    server, url = _serve_zip(isolated, {"SST-2/train.tsv": tsv})
    monkeypatch.setattr(data, "SST2_URL", f"{url}/SST-2.zip")
    monkeypatch.setattr(data, "SST2_TRAIN_COUNTS", (3, 2))
    try:
        rows = data.load_sst2()
    finally:
        server.shutdown()
    assert rows == [("a gem", 1), ("dull", 0), ("fine", 1)]
    cached = isolated / "cache" / "sst2" / "train.tsv"
    assert cached.read_text().startswith("label\tsentence\n")
    assert [p.name for p in cached.parent.iterdir()] == ["train.tsv"]
    assert data.load_sst2() == rows  # from the cache, server gone


def test_sst2_download_with_wrong_counts_saves_nothing(isolated, monkeypatch):
    server, url = _serve_zip(isolated, {"SST-2/train.tsv": "sentence\tlabel\nx\t1\n"})
    monkeypatch.setattr(data, "SST2_URL", f"{url}/SST-2.zip")
    try:
        with pytest.raises(data.ChecksumError, match=r"expected \(rows, positives\)"):
            data.load_sst2()
    finally:
        server.shutdown()
    assert not (isolated / "cache" / "sst2" / "train.tsv").exists()


def test_sst2_offline_says_what_to_set(isolated, monkeypatch):
    monkeypatch.setattr(data, "SST2_URL", "http://127.0.0.1:9/SST-2.zip")
    with pytest.raises(data.DataUnavailableError, match="set LMBOOK_DATA_DIR"):
        data.load_sst2()


def test_sst2_unknown_split():
    with pytest.raises(ValueError, match=r"split='validation' is not available"):
        data.load_sst2("validation")
