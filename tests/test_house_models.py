"""The packaged house models: Hugging Face loads them, their cards tell the truth,
and the recipe in tools/train_house_models.py reproduces the start of their run."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import torch
import torch.nn.functional as F

from lmbook import GPT, CharTokenizer, house_model_path
from lmbook import pretrained as pretrained_module
from lmbook.data import DataUnavailableError, data_path
from tests.conftest import ROOT, import_or_fail, skip_or_fail

NAME = "shakespeare-char"
MAX_MODEL_BYTES = 12_000_000  # one model's model.safetensors
MAX_ALL_BYTES = 25_000_000  # all house models together
# nats/char on the last 10% of Tiny Shakespeare: the target (aim 1.40).
# The shipped model (6 layers, 192 wide, 3000 steps) is below it; a retrain may
# only improve it.
SHIPPED_VAL_LOSS_BOUND = 1.50
BIGRAM_BASELINE = 2.45  # below a character bigram model (about 2.5 nats/char)


def _script():
    """tools/train_house_models.py as a module (tools/ is not a package)."""
    path = ROOT / "tools" / "train_house_models.py"
    spec = importlib.util.spec_from_file_location("train_house_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folder():
    return house_model_path(NAME)


@pytest.fixture(scope="module")
def record(folder):
    return json.loads((folder / "training_log.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def text() -> str:
    """Tiny Shakespeare from $LMBOOK_DATA_DIR or the cache; never downloaded."""
    try:
        path = data_path("tinyshakespeare", download_if_missing=False)
    except DataUnavailableError as err:
        skip_or_fail(str(err))
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hf(folder):
    transformers = import_or_fail("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def test_house_model_path_returns_the_packaged_folder(folder):
    assert folder.is_dir() and folder.name == NAME
    for f in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (folder / f).is_file(), f
    assert (folder / "training_log.json").is_file()


def test_house_model_path_rejects_bad_names():
    with pytest.raises(TypeError, match="must be a str"):
        house_model_path(1)
    with pytest.raises(ValueError, match=f"no house model named 'nope'.*{NAME}"):
        house_model_path("nope")


def test_house_model_path_reports_a_corrupt_folder(tmp_path, monkeypatch):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    monkeypatch.setattr(pretrained_module, "HOUSE_MODELS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="corrupt house-model folder.*safet"):
        house_model_path("broken")


def test_sizes_fit_the_package_budget(folder):
    assert (folder / "model.safetensors").stat().st_size <= MAX_MODEL_BYTES
    everything = folder.parent.glob("*/*")
    assert sum(p.stat().st_size for p in everything if p.is_file()) <= MAX_ALL_BYTES


def test_hf_loads_model_and_tokenizer_unchanged(hf, text):
    model, tokenizer = hf
    assert type(model).__name__ == "GPT2LMHeadModel"
    ours = CharTokenizer.from_text(text)
    # same vocabulary, and one token per character: together they give the same ids
    # as CharTokenizer on any text of these characters; check the validation text
    assert tokenizer.get_vocab() == ours.stoi
    assert model.config.vocab_size == ours.vocab_size
    val = text[int(0.9 * len(text)) :]
    ids = tokenizer(val)["input_ids"]
    assert ids == ours.encode(val)
    assert tokenizer.decode(ids) == val
    assert tokenizer.decode(tokenizer(" a\n\n b ")["input_ids"]) == " a\n\n b "


@pytest.fixture(scope="module")
def hf_val_loss(hf, text) -> float:
    """Validation loss (nats/char) of the packaged model, with transformers alone."""
    model, tokenizer = hf
    val = text[int(0.9 * len(text)) :]  # the last 10% of the characters
    ids = torch.tensor(tokenizer(val)["input_ids"])
    T, n = model.config.n_positions, len(ids) - 1
    # non-overlapping windows: inputs ids[s:s+T], targets ids[s+1:s+T+1]; the last
    # window is shorter, so every character but the first is predicted once
    full = [s for s in range(0, n, T) if s + T <= n]
    tail = [[s] for s in range(0, n, T) if s + T > n]  # at most one
    batches = [full[k : k + 64] for k in range(0, len(full), 64)] + tail
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for batch in batches:
            x = torch.stack([ids[s : min(s + T, n)] for s in batch])  # (B, T)
            y = torch.stack([ids[s + 1 : min(s + T, n) + 1] for s in batch])  # (B, T)
            logits = model(x).logits  # (B, T, vocab_size)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
            total += loss.double()
    return float(total) / n  # nats per predicted character


def test_val_loss_is_the_shipped_one_and_beats_a_bigram(hf_val_loss):
    assert hf_val_loss <= SHIPPED_VAL_LOSS_BOUND
    assert hf_val_loss < BIGRAM_BASELINE


def test_card_and_log_state_the_val_loss_and_command(hf_val_loss, folder, record):
    card = (folder / "README.md").read_text(encoding="utf-8")
    m = re.search(r"Validation loss: ([0-9.]+) nats/char", card)
    assert m, "the model card states no validation loss"
    assert f"{hf_val_loss:.2f}" == m.group(1) == f"{record['val_loss']:.2f}"
    assert record["command"] in card


def test_lmbook_gpt_gives_hf_logits(hf, folder, text):
    model, tokenizer = hf
    gpt = GPT.from_pretrained(folder)
    ids = torch.tensor([tokenizer(text[-300:])["input_ids"][: gpt.config.block_size]])
    with torch.no_grad():
        torch.testing.assert_close(gpt(ids)[0], model(ids).logits)


def test_training_log_records_the_run(record):
    for key in ("command", "seed", "wall_time_s", "torch", "cpu", "threads"):
        assert key in record, key
    assert record["command"].startswith("python tools/train_house_models.py " + NAME)
    steps = [s for s, _ in record["curve"]["train"]]
    assert steps == sorted(steps) and steps[-1] == record["steps"]
    assert record["curve"]["val"][-1][0] == record["steps"]


def test_recipe_replays_the_first_steps(record, text):
    """The script's own code path, from the same seed, gives the logged losses.

    Tolerance: float32 sums are ordered differently by other CPUs (SIMD width)
    and thread counts, which moves a loss in about its 6th-7th significant
    digit; a few AdamW steps at warmup learning rates keep that below 1e-5
    relative. A change to the data, seed, batch, model or learning rate moves
    the losses of steps 2-5 by far more than rtol=1e-4 (batch-to-batch noise
    alone is about 1e-3 relative at 4096 characters per step).
    """
    script = _script()
    recipe = script.RECIPES[NAME]
    assert json.loads(json.dumps(script.dataclasses.asdict(recipe))) == json.loads(
        json.dumps(record["recipe"])
    ), "the recipe changed since the packaged model was trained; retrain it"
    n = script.FIRST_STEPS
    train_ids, val_ids, ours, _ = script.prepare(recipe)
    _, curve = script.train(recipe, train_ids, val_ids, ours.vocab_size, stop_after=n)
    logged = record["curve"]["train"][:n]
    assert [s for s, _ in logged] == list(range(1, n + 1))
    torch.testing.assert_close(
        torch.tensor([loss for _, loss in curve["train"]]),
        torch.tensor([loss for _, loss in logged]),
        rtol=1e-4,
        atol=0,
    )
