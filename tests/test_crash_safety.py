"""Every file writer survives SIGKILL: after a kill at a random moment the target
loads as the complete old or new version, never a mix and never an error, and no
temporary file is visible to the loader (the next save removes hidden ones).

A helper process imports lmbook once and forks one worker per kill, which saves
versions A and B of a target in turn until it is killed; this test process then
loads the target and checks it. Also: the written files follow the umask, and a
folder where a file is expected (or a file where a folder is) is a clear error.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

from lmbook.checkpoint import load_model, read_checkpoint
from lmbook.gpt import GPT, GPTConfig
from lmbook.tokenizers import BPETokenizer, CharTokenizer
from lmbook.train import TrainConfig, Trainer
from lmbook.viz.attention_view import AttentionView

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="SIGKILL and fork are POSIX"
)
ROOT = Path(__file__).resolve().parents[1]
KILLS = 30  # per writer
OTHER = {"A": "B", "B": "A"}
_ID = re.compile(r"lmbook-attn-\d+-[0-9a-f]{8}")  # differs between renders


# ---- versions A and B of each writer's target -------------------------------------
def _gpt(v: str) -> GPT:
    torch.manual_seed(0 if v == "A" else 1)
    n_layer = 1 if v == "A" else 2  # a mix of A's config and B's weights cannot load
    cfg = GPTConfig(vocab_size=16, block_size=8, n_layer=n_layer, n_head=2, n_embd=8)
    return GPT(cfg)


def _trainer(v: str) -> Trainer:
    cfg = TrainConfig(max_steps=10, warmup_steps=0)
    trainer = Trainer(_gpt(v), cfg, lambda b: None)
    trainer.step = 1 if v == "A" else 2
    return trainer


def _bpe(v: str) -> BPETokenizer:
    text = "low lower lowest newer wider " * 4 if v == "A" else "abcabcabd xyzzy " * 4
    return BPETokenizer().train(text, 256 + (6 if v == "A" else 9))


def _view(v: str) -> AttentionView:
    g = torch.Generator().manual_seed(ord(v))
    att = torch.softmax(torch.randn(1, 2, 4, 4, generator=g), dim=-1)
    return AttentionView([att], list("abcd" if v == "A" else "wxyz"), title=f"v{v}")


def _page(view: AttentionView, path: Path) -> str:
    view.save_html(path)
    return _ID.sub("ID", path.read_text("utf-8"))


class Writers:
    """For each writer: ``save(name, target, v)`` and ``load(name, target) -> v``."""

    def __init__(self):
        self.trainers = {v: _trainer(v) for v in "AB"}
        self.gpts = {v: _gpt(v) for v in "AB"}
        self.bpes = {v: _bpe(v) for v in "AB"}
        texts = {"A": "abc", "B": "xyzw"}
        self.chars = {v: CharTokenizer.from_text(texts[v]) for v in "AB"}
        self.views = {v: _view(v) for v in "AB"}
        self.pages: dict[str, str] = {}  # filled by the checking process

    def save(self, name: str, target: Path, v: str) -> None:
        if name == "checkpoint":
            self.trainers[v].save_checkpoint(target)
        elif name == "save_pretrained":
            self.gpts[v].save_pretrained(target)
        elif name == "bpe":
            self.bpes[v].save(target)
        elif name == "char":
            self.chars[v].save(target)
        else:
            self.views[v].save_html(target)

    def load(self, name: str, target: Path) -> str:
        """The version at target; raises or fails an assert unless it is whole."""
        if name in ("checkpoint", "save_pretrained"):
            if name == "checkpoint":
                model = load_model(target)
                step = read_checkpoint(target, load_tensors=False)[1]["step"]
            else:
                model = GPT.from_pretrained(target)
            v = "A" if model.config.n_layer == 1 else "B"
            assert name != "checkpoint" or step == {"A": 1, "B": 2}[v]
            ref = self.gpts[v].state_dict()
            got = model.state_dict()
            assert got.keys() == ref.keys()
            for key, t in ref.items():
                torch.testing.assert_close(got[key], t, rtol=0, atol=0)
            return v
        if name == "bpe":
            merges = BPETokenizer.load(target).merges
            v = "A" if merges == self.bpes["A"].merges else "B"
            assert merges == self.bpes[v].merges
            return v
        if name == "char":
            itos = CharTokenizer.load(target).itos
            v = "A" if itos == self.chars["A"].itos else "B"
            assert itos == self.chars[v].itos
            return v
        page = _ID.sub("ID", target.read_text("utf-8"))
        v = "A" if page == self.pages["A"] else "B"
        assert page == self.pages[v], "the page is neither version A nor B"
        return v


# ---- the helper process: forks a saving worker and kills it ----------------------
SERVER = r"""
import json, os, signal, sys, time, traceback
from pathlib import Path
import torch
torch.set_num_threads(1)
from tests.test_crash_safety import Writers, OTHER
writers = Writers()
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    r, w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the worker: save A, B, A, ... until killed
        os.close(r)
        try:
            v, n = req["start"], 0
            while req["saves"] is None or n < req["saves"]:
                writers.save(req["writer"], Path(req["target"]), v)
                os.write(w, b".")
                v, n = OTHER[v], n + 1
        except BaseException:
            os.write(w, ("!" + traceback.format_exc()).encode())
        os._exit(0)
    os.close(w)
    start = time.perf_counter()
    if req["delay"] is not None:
        time.sleep(req["delay"])
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    done, bang, error = out.decode(errors="replace").partition("!")
    reply = {"saves": len(done), "error": error if bang else None,
             "killed": os.WIFSIGNALED(status), "elapsed": elapsed}
    print(json.dumps(reply), flush=True)
"""


@pytest.fixture(scope="module")
def server():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = []  # waited for at the first request, so that its imports overlap ours

    def run(writer: str, target: Path, start: str, delay, saves=None) -> dict:
        if not ready:
            ready.append(proc.stdout.readline().strip())
            assert ready == ["ready"], "the helper process failed to start"
        req = dict(writer=writer, target=str(target), start=start, delay=delay)
        proc.stdin.write(json.dumps({**req, "saves": saves}) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["error"] is None, f"{writer} raised:\n{reply['error']}"
        return reply

    yield run
    proc.kill()  # it holds nothing to save; a clean exit of torch takes seconds
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def writers(tmp_path_factory):
    w = Writers()
    folder = tmp_path_factory.mktemp("pages")
    w.pages = {v: _page(w.views[v], folder / f"{v}.html") for v in "AB"}
    return w


def _visible_leftovers(target: Path) -> list[str]:
    """Temporary files a loader could take for part of target: not hidden ones."""
    near = [*target.parent.iterdir(), *(target.iterdir() if target.is_dir() else ())]
    return [p.name for p in near if ".tmp" in p.name and not p.name.startswith(".")]


def _all_leftovers(target: Path) -> list[str]:
    """Every temporary file or folder beside target or inside it, hidden or not."""
    near = [*target.parent.iterdir(), *(target.iterdir() if target.is_dir() else ())]
    return [p.name for p in near if ".tmp" in p.name]


TARGETS = {
    "checkpoint": "run",
    "save_pretrained": "gpt",
    "bpe": "bpe.json",
    "char": "char.json",
    "html": "view.html",
}


@pytest.fixture()
def kill_dir(tmp_path):
    """A folder in RAM (tmpfs) where there is one: fsync costs nothing there, and
    what a kill leaves does not depend on fsync (unlike what a power cut leaves)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="lmbook-kill-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name", list(TARGETS))
def test_sigkill_leaves_the_old_or_the_new_version(server, writers, kill_dir, name):
    target = kill_dir / TARGETS[name]
    writers.save(name, target, "A")
    period = server(name, target, "B", None, saves=3)["elapsed"] / 3  # fork + save
    assert writers.load(name, target) == "B"  # saved B, A, B
    rng = random.Random(f"{name}-kills")  # seeded: the same delays every run
    current, seen, saves = "B", set(), []
    longest = 2.5 * period  # kills after 0, 1 or 2 saves, and in the middle of one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to an older checkpoint fails
        for _ in range(KILLS):
            reply = server(name, target, OTHER[current], rng.uniform(0.0, longest))
            assert reply["killed"], "the worker ended before the kill"
            current = writers.load(name, target)
            assert not _visible_leftovers(target), _visible_leftovers(target)
            seen.add(current)
            saves.append(reply["saves"])
            # a busy machine slows the saves down: keep about 1 save per kill
            longest *= 1.3 if reply["saves"] == 0 else 0.8 if reply["saves"] > 2 else 1
    assert any(saves), f"no save finished before a kill: {saves}"
    assert seen == {"A", "B"}, f"saves finished before each kill: {saves}"
    writers.save(name, target, "B")  # a later save cleans what the kills left
    assert writers.load(name, target) == "B"
    assert _all_leftovers(target) == [], f"saves finished before each kill: {saves}"
    if name == "checkpoint":  # only the latest and previous checkpoints' files
        state = json.loads((target / "state.json").read_text())
        prev = json.loads((target / "state.prev.json").read_text())
        kept = {*state["files"].values(), *prev["files"].values()}
        assert {p.name for p in target.iterdir()} == kept | {
            "state.json",
            "state.prev.json",
        }


# ---- modes and paths of what the writers create ----------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
@pytest.mark.parametrize("name", list(TARGETS))
def test_written_files_follow_the_umask(writers, tmp_path, name, umask, mode):
    target = tmp_path / TARGETS[name]
    old = os.umask(umask)
    try:
        writers.save(name, target, "A")
        writers.save(name, target, "B")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


def test_save_html_to_a_folder_or_under_a_file(writers, tmp_path):
    view = writers.views["A"]
    with pytest.raises(ValueError, match=r"path '.*' is a folder; expected a file"):
        view.save_html(tmp_path)
    (tmp_path / "notes").write_text("x")
    with pytest.raises(ValueError, match=r"'.*notes' is a file, not a folder"):
        view.save_html(tmp_path / "notes" / "view.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_a_stale_temporary_file_of_a_live_writer_is_kept(tmp_path):
    from lmbook import fileio

    live = tmp_path / f".f.txt.{os.getppid()}-abcdefgh.tmp"  # a running process
    dead = tmp_path / ".f.txt.999999999-abcdefgh.tmp"  # no such pid
    other = tmp_path / ".f.txt.json.999999999-abcdefgh.tmp"  # another target's
    for p in (live, dead, other):
        p.write_text("partial")
    fileio.atomic_write(tmp_path / "f.txt", "done")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([live.name, other.name, "f.txt"])


def test_helper_process_really_kills(server, tmp_path):
    """The control: a worker that is not killed saves, and a kill at 0 s stops it."""
    target = tmp_path / "c.json"
    reply = server("char", target, "B", None, saves=2)
    assert reply["saves"] == 2 and not reply["killed"]
    t0 = time.perf_counter()
    reply = server("char", target, "A", 0.0)
    assert reply["killed"] and time.perf_counter() - t0 < 10
