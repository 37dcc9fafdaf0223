"""load_text and load_sst2: local copies, the cache, verified atomic downloads,
files that follow the umask, and clear errors."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from lmbook import data, load_text, train_val_split
from tests.conftest import serve, skip_or_fail

# The offline data: $LMBOOK_DATA_DIR as the Makefile sets it, else ../shared/data
SHARED = Path(
    os.environ.get("LMBOOK_DATA_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
TINY = data.CORPORA["tinyshakespeare"]
OFFLINE = "http://127.0.0.1:9/SST-2.zip"  # the discard port: nothing answers


def shared_file(relative: str) -> Path:
    """A file of the offline data; the test skips without it, but fails under CI."""
    path = SHARED / relative
    if not path.is_file():
        skip_or_fail(f"no shared data: {path}")  # CI=true: a failure, never a skip
    return path


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


def test_tinyshakespeare_from_data_dir(monkeypatch):
    shared_file(TINY.filename)
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


def test_corrupt_cache_entry_offline_is_reported_and_kept(isolated, monkeypatch):
    corpus = data.Corpus("gone.txt", "http://127.0.0.1:9/gone.txt", "0" * 64, 1)
    monkeypatch.setitem(data.CORPORA, "gone", corpus)
    (isolated / "cache").mkdir()
    (isolated / "cache" / "gone.txt").write_text("truncated")
    with pytest.raises(
        data.DataUnavailableError, match=r"cached copy .*gone.txt cannot be used"
    ):
        load_text("gone")
    assert (isolated / "cache" / "gone.txt").read_text() == "truncated"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_downloaded_file_follows_the_umask(isolated, fake_corpus, umask, mode):
    register, _ = fake_corpus
    register("good.txt")
    old = os.umask(umask)
    try:
        path = data.data_path("fake")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.parametrize("where", ["data dir", "cache"])
def test_folder_where_the_corpus_file_should_be(
    isolated, monkeypatch, fake_corpus, where
):
    register, _ = fake_corpus
    register("good.txt")
    folder = isolated / ("data" if where == "data dir" else "cache") / "fake.txt"
    folder.mkdir(parents=True)
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(isolated / "data"))
    env = "LMBOOK_DATA_DIR" if where == "data dir" else "LMBOOK_CACHE_DIR"
    with pytest.raises(ValueError, match=rf"{env}.* holds '.*fake.txt', which is a f"):
        load_text("fake")


def test_folder_where_the_sst2_file_should_be(monkeypatch, tmp_path):
    (tmp_path / "sst2" / "train.tsv").mkdir(parents=True)
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"LMBOOK_DATA_DIR holds .*train.tsv'"):
        data.load_sst2()


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


def test_sst2_from_data_dir(monkeypatch):
    shared = shared_file(data.SST2_LOCAL)
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(SHARED))
    rows = data.load_sst2()
    assert len(rows) == 67_349 and sum(y for _, y in rows) == 37_569
    assert rows[0] == ("hide new secretions from the parental units", 0)
    # a download is cached in exactly these bytes, so the cache checks by sha256
    assert data._sst2_file(rows).encode("utf-8") == shared.read_bytes()


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


SMALL_SST2 = "label\tsentence\r\n1\ta gem\r\n0\tdull\r\n1\tfine\r\n"  # as cached


@pytest.fixture()
def small_sst2(monkeypatch):
    """Make a 3-row SST-2 the expected one: counts (3, 2) and SMALL_SST2's sha256."""
    monkeypatch.setattr(data, "SST2_TRAIN_COUNTS", (3, 2))
    digest = hashlib.sha256(SMALL_SST2.encode()).hexdigest()
    monkeypatch.setattr(data, "SST2_LOCAL_SHA256", digest)
    monkeypatch.setattr(data, "SST2_URL", OFFLINE)


def _load_sst2_served(tmp_path, monkeypatch, tsv: str):
    server, url = _serve_zip(tmp_path, {"SST-2/train.tsv": tsv})
    monkeypatch.setattr(data, "SST2_URL", f"{url}/SST-2.zip")
    try:
        return data.load_sst2()
    finally:
        server.shutdown()


def test_sst2_download_is_checked_cached_and_reused(isolated, monkeypatch, small_sst2):
    tsv = "sentence\tlabel\na gem \t1\ndull\t0\nfine\t1\n"  # GLUE's column order
    rows = _load_sst2_served(isolated, monkeypatch, tsv)
    assert rows == [("a gem", 1), ("dull", 0), ("fine", 1)]
    cached = isolated / "cache" / "sst2" / "train.tsv"
    assert cached.read_bytes() == SMALL_SST2.encode()
    assert [p.name for p in cached.parent.iterdir()] == ["train.tsv"]
    monkeypatch.setattr(data, "SST2_URL", OFFLINE)
    assert data.load_sst2() == rows  # from the cache, server gone


def test_sst2_download_that_makes_another_file_is_not_cached(isolated, monkeypatch):
    monkeypatch.setattr(data, "SST2_TRAIN_COUNTS", (1, 1))  # but the sha256 differs
    with pytest.warns(UserWarning, match="not cached"):
        rows = _load_sst2_served(isolated, monkeypatch, "sentence\tlabel\nok\t1\n")
    assert rows == [("ok", 1)]
    assert not (isolated / "cache" / "sst2" / "train.tsv").exists()


def _cache_sst2(isolated, text: str) -> Path:
    cached = isolated / "cache" / "sst2" / "train.tsv"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(text.encode())
    return cached


def test_sst2_cached_copy_is_checked_by_sha256(isolated, small_sst2):
    tampered = SMALL_SST2.replace("dull", "dall")  # same counts, other bytes
    cached = _cache_sst2(isolated, tampered)
    with pytest.raises(data.DataUnavailableError, match="sha256 expected") as info:
        data.load_sst2()
    assert str(cached) in str(info.value)
    assert cached.read_bytes() == tampered.encode()  # reported, not deleted


def test_sst2_cached_copy_with_a_bad_header_is_reported_not_deleted(
    isolated, small_sst2
):
    text = "text\tscore\r\na gem\t1\r\n"
    cached = _cache_sst2(isolated, text)
    with pytest.raises(
        data.DataUnavailableError,
        match=r"cached copy .*train.tsv cannot be used .*header \(line 1\) must "
        r"have the tab-separated columns 'label' and 'sentence', got 'text\\tscore'",
    ):
        data.load_sst2()
    assert cached.read_bytes() == text.encode()


def test_sst2_label_other_than_0_or_1_names_the_line(isolated, monkeypatch):
    monkeypatch.setattr(data, "SST2_TRAIN_COUNTS", (2, 3))
    tsv = "sentence\tlabel\nfine\t1\nodd\t2\n"
    with pytest.raises(ValueError, match=r"SST-2.zip, line 3: label must be 0 or 1"):
        _load_sst2_served(isolated, monkeypatch, tsv)


@pytest.mark.parametrize("row", ["1", "1\tgood\textra", ""])
def test_sst2_malformed_row_names_the_file_and_line(monkeypatch, tmp_path, row):
    (tmp_path / "sst2").mkdir()
    text = f"label\tsentence\n0\tfine\n{row}\n1\tgood\n"
    (tmp_path / "sst2" / "train.tsv").write_text(text)
    monkeypatch.setenv("LMBOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(
        ValueError, match=r"sst2/train.tsv, line 3: expected 2 tab-separated fields"
    ):
        data.load_sst2()


def test_sst2_malformed_download_names_the_line(isolated, monkeypatch):
    tsv = "label\tsentence\n1\tgood\n0\n"  # was an AttributeError
    with pytest.raises(ValueError, match="SST-2.zip, line 3: expected 2 tab-sep"):
        _load_sst2_served(isolated, monkeypatch, tsv)


def test_sst2_cache_file_follows_the_umask(isolated, monkeypatch, small_sst2):
    tsv = "sentence\tlabel\na gem\t1\ndull\t0\nfine\t1\n"
    old = os.umask(0o022)
    try:
        _load_sst2_served(isolated, monkeypatch, tsv)
    finally:
        os.umask(old)
    cached = isolated / "cache" / "sst2" / "train.tsv"
    assert stat.S_IMODE(cached.stat().st_mode) == 0o644


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
