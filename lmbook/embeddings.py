"""Sentence embeddings and dense retrieval: the helpers of Parts V and VI.

An encoder's hidden states become one unit vector per text by mean pooling over
the real tokens (Reimers & Gurevych, 2019, Sentence-BERT); texts are compared by
cosine similarity and retrieved by ranking all documents for each query, scored
by recall@k and the mean reciprocal rank. Contrastive fine-tuning minimises the
InfoNCE loss with in-batch negatives (van den Oord et al., 2018; Henderson et al.,
2017), which is sentence-transformers' ``MultipleNegativesRankingLoss``. The data
for the chapter's retrieval task come from Python's standard library: the first
sentence of a function's docstring is the query, its signature the document.
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmbook.checks import check_bool, check_choice, check_float, check_int, tname
from lmbook.classify import mean_pool

__all__ = [
    "STDLIB_MODULES",
    "contrastive_fine_tune",
    "cos_sim",
    "embed",
    "encode",
    "group_split",
    "info_nce_loss",
    "mean_pool",
    "mrr",
    "positive_ranks",
    "recall_at_k",
    "search",
    "stdlib_pairs",
]

# Pure-Python modules of the standard library whose functions become query /
# document pairs (read with ast, never imported). Their docstrings change a
# little between Python versions, and so does the data set.
STDLIB_MODULES = (
    "argparse ast base64 bisect calendar cmd codecs configparser contextlib copy "
    "csv dataclasses datetime difflib dis enum filecmp fileinput fnmatch fractions "
    "ftplib functools getopt gettext glob gzip hashlib heapq hmac imaplib inspect "
    "ipaddress locale mailbox mimetypes ntpath os pathlib pickle pkgutil platform "
    "plistlib poplib posixpath pprint pydoc queue quopri random reprlib sched "
    "secrets selectors shlex shutil smtplib socket socketserver ssl statistics "
    "string subprocess tarfile tempfile textwrap threading timeit tokenize "
    "traceback turtle typing uuid warnings wave weakref webbrowser zipfile "
    "zipimport"
).split()


def _texts(name: str, texts: object) -> list[str]:
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of str, got {tname(texts)}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} must hold at least one text, got 0")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {tname(text)}")
    return texts


def _matrix(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = (
            f"a tensor of shape {tuple(x.shape)}"
            if isinstance(x, torch.Tensor)
            else tname(x)
        )
        raise TypeError(f"{name} must be a 2-D floating-point tensor, got {got}")
    return x


def _model(model: object, tokenizer: object) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {tname(model)}")
    if not callable(tokenizer):
        raise TypeError(
            f"tokenizer must be a callable tokenizer, got {tname(tokenizer)}"
        )


def embed(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
) -> torch.Tensor:
    """One vector per text, with gradients: (N, C).

    model: an encoder such as ``transformers.AutoModel`` (its output has
    ``last_hidden_state``); tokenizer: its tokenizer. pooling: ``"mean"`` over
    the real tokens (`mean_pool`) or ``"cls"``, the first token's state;
    normalize: scale each vector to length 1. Texts are truncated to max_length
    tokens, as sentence-transformers does (256 for all-MiniLM-L6-v2).
    """
    _model(model, tokenizer)
    texts = _texts("texts", texts)
    check_choice("pooling", pooling, ("mean", "cls"))
    check_bool("normalize", normalize)
    check_int("max_length", max_length, 1)
    device = next(model.parameters()).device
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    ).to(device)
    hidden = model(**batch).last_hidden_state  # (N, T, C)
    if pooling == "mean":
        vectors = mean_pool(hidden, batch["attention_mask"])  # (N, C)
    else:
        vectors = hidden[:, 0]  # (N, C): [CLS]
    return F.normalize(vectors, dim=-1) if normalize else vectors


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """`embed` for many texts, in eval mode and without gradients: (N, C) float32.

    Texts are batched by length, so that little padding is computed, and returned
    in their original order on the CPU. The model's training mode is restored.
    progress: show a tqdm progress bar over the batches.
    """
    _model(model, tokenizer)
    texts = _texts("texts", texts)
    check_int("batch_size", batch_size, 1)
    check_bool("progress", progress)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    was_training = model.training
    model.eval()
    out = torch.empty(0)
    try:
        parts = []
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, disable=not progress, leave=False):
            chunk = [texts[i] for i in order[start : start + batch_size]]
            vectors = embed(model, tokenizer, chunk, pooling, normalize, max_length)
            parts.append(vectors.float().cpu())
        out = torch.cat(parts)
    finally:
        model.train(was_training)
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.tensor(order)] = torch.arange(len(order))  # text i is at where[i]
    return out[where]


def cos_sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of a (N, C) with every row of b (M, C): (N, M)."""
    a, b = _matrix("a", a), _matrix("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same width, got {a.shape[1]} and {b.shape[1]}"
        )
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T  # (N, M)


def search(
    query_emb: torch.Tensor, doc_emb: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k documents most similar to each query, best first.

    query_emb: (Q, C); doc_emb: (D, C). Returns ``(scores, ids)``, both (Q, k):
    the cosine similarities and the row numbers of the documents.
    """
    scores = cos_sim(query_emb, doc_emb)  # (Q, D)
    check_int("k", k, 1, scores.shape[1])
    top = scores.topk(k, dim=1)
    return top.values, top.indices


def positive_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each query's positive document among all documents: (Q,) int64.

    scores: (Q, D) with Q <= D, where document i is the positive of query i.
    Rank 1 is the top; a document with exactly the positive's score counts in
    the positive's favour (rank = 1 + the number of documents scored higher).
    """
    scores = _matrix("scores", scores)
    Q, D = scores.shape
    if Q > D:
        raise ValueError(
            f"scores must have at least as many columns (documents) as rows "
            f"(queries), got shape {(Q, D)}"
        )
    positive = scores.diagonal().unsqueeze(1)  # (Q, 1)
    return (scores > positive).sum(1) + 1  # (Q,)


def recall_at_k(scores: torch.Tensor, k: int = 1) -> float:
    """Share of queries whose positive document is in the top k (`positive_ranks`)."""
    ranks = positive_ranks(scores)
    check_int("k", k, 1)
    return (ranks <= k).double().mean().item()


def mrr(scores: torch.Tensor) -> float:
    """Mean reciprocal rank of the positive documents (`positive_ranks`)."""
    return (1.0 / positive_ranks(scores).double()).mean().item()


def info_nce_loss(
    query_emb: torch.Tensor, doc_emb: torch.Tensor, scale: float = 20.0
) -> torch.Tensor:
    """InfoNCE with in-batch negatives: a scalar.

    query_emb: (B, C); doc_emb: (D, C) with D >= B, where document i is the
    positive of query i and every other document a negative (rows past B are
    extra negatives). The loss is the mean cross-entropy of
    ``scale * cos_sim(query_emb, doc_emb)`` with the targets 0..B-1, as
    sentence-transformers' ``MultipleNegativesRankingLoss(model, scale)``;
    scale is the inverse temperature (20 = temperature 0.05).
    """
    query_emb, doc_emb = _matrix("query_emb", query_emb), _matrix("doc_emb", doc_emb)
    check_float("scale", scale, 0.0, low_open=True)
    if doc_emb.shape[0] < query_emb.shape[0]:
        raise ValueError(
            f"doc_emb must have at least as many rows as query_emb "
            f"({query_emb.shape[0]}), got {doc_emb.shape[0]}"
        )
    if doc_emb.shape[1] != query_emb.shape[1]:
        raise ValueError(
            f"doc_emb must have the width of query_emb ({query_emb.shape[1]}), "
            f"got {doc_emb.shape[1]}"
        )
    logits = scale * cos_sim(query_emb, doc_emb)  # (B, D)
    targets = torch.arange(len(query_emb), device=logits.device)
    return F.cross_entropy(logits, targets)


def contrastive_fine_tune(
    model: torch.nn.Module,
    tokenizer,
    queries: Sequence[str],
    docs: Sequence[str],
    batch_size: int = 32,
    lr: float = 5e-5,
    epochs: int = 1,
    scale: float = 20.0,
    max_length: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Fine-tune an encoder on (query, document) pairs with `info_nce_loss`.

    Each step embeds a batch of queries and their documents (mean pooling,
    normalised, `embed`) and takes one AdamW step; the other documents of the
    batch are the negatives, so a batch must not hold the same document twice.
    The pairs are shuffled with `seed` every epoch; a last batch of one pair is
    dropped. The model trains in train mode (dropout on) and is left in eval
    mode. Returns the loss of every step.
    """
    _model(model, tokenizer)
    queries, docs = _texts("queries", queries), _texts("docs", docs)
    if len(queries) != len(docs):
        raise ValueError(
            f"queries and docs must have the same length, got {len(queries)} "
            f"and {len(docs)}"
        )
    check_int("batch_size", batch_size, 2)
    check_float("lr", lr, 0.0, low_open=True)
    check_int("epochs", epochs, 1)
    check_float("scale", scale, 0.0, low_open=True)
    check_int("seed", seed, 0)
    check_bool("progress", progress)
    rng = random.Random(seed)
    torch.manual_seed(seed)  # dropout
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    batches = []
    for _ in range(epochs):
        order = rng.sample(range(len(queries)), len(queries))
        batches += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(b) > 1]
    losses = []
    model.train()
    try:
        for rows in tqdm(batches, disable=not progress):
            q = embed(
                model, tokenizer, [queries[i] for i in rows], max_length=max_length
            )
            d = embed(model, tokenizer, [docs[i] for i in rows], max_length=max_length)
            loss = info_nce_loss(q, d, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        model.eval()
    return losses


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    found = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return found.group(1) if found else paragraph


def _module_file(stdlib: Path, module: str) -> Path:
    path = stdlib / f"{module}.py"
    return path if path.is_file() else stdlib / module / "__init__.py"


def stdlib_pairs(
    modules: Iterable[str] = STDLIB_MODULES, min_words: int = 4
) -> list[tuple[str, str, str]]:
    """(module, query, document) for the documented public functions of modules.

    Each module's source file in this Python's standard library is parsed with
    ``ast`` (nothing is imported). For every public function and every public
    method of a public class that has a docstring, the query is the docstring's
    first sentence (kept if it has at least min_words words) and the document
    the signature, ``module.Class.name(args)`` without ``self`` or ``cls``.
    Queries or documents that occur more than once are dropped, so that every
    query has exactly one right document. In file order, module by module.
    """
    modules = _texts("modules", modules)
    check_int("min_words", min_words, 1)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pairs = []
    for module in modules:
        path = _module_file(stdlib, module)
        if not path.is_file():
            raise ValueError(
                f"modules must name pure-Python modules of the standard library, "
                f"got {module!r} (no {path.name} in {stdlib})"
            )
        tree = ast.parse(path.read_text(encoding="utf-8"))
        pairs += _pairs(module, tree.body, None, min_words)
    queries = Counter(q for _, q, _ in pairs)
    docs = Counter(d for _, _, d in pairs)
    return [p for p in pairs if queries[p[1]] == 1 and docs[p[2]] == 1]


def _pairs(module, body, cls, min_words):
    out = []
    for node in body:
        public = not node.name.startswith("_") if hasattr(node, "name") else False
        if isinstance(node, ast.ClassDef) and public and cls is None:
            out += _pairs(module, node.body, node.name, min_words)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and public:
            docstring = ast.get_docstring(node)
            query = _first_sentence(docstring) if docstring else ""
            if len(query.split()) < min_words:
                continue
            args = re.sub(r"^(self|cls)(, )?", "", ast.unparse(node.args))
            name = f"{cls}.{node.name}" if cls else node.name
            out.append((module, query, f"{module}.{name}({args})"))
    return out


def group_split(
    groups: Sequence, n_test: int, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Split items into ``(train, test)`` index lists, whole groups at a time.

    groups: the group of each item (for example its module). The groups are
    shuffled with `seed` and go to the test side until it holds at least n_test
    items; the rest train. No group has items on both sides, so nothing of a
    test group can leak into training.
    """
    if isinstance(groups, str | bytes) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a sequence, got {tname(groups)}")
    check_int("n_test", n_test, 1, max(len(groups) - 1, 1))
    check_int("seed", seed, 0)
    names = sorted(set(groups), key=str)
    random.Random(seed).shuffle(names)
    test_groups, count = set(), Counter(groups)
    for name in names:
        if sum(count[g] for g in test_groups) >= n_test:
            break
        test_groups.add(name)
    if len(test_groups) == len(names):
        raise ValueError(
            f"n_test must leave at least one group for training, got {n_test} "
            f"for {len(groups)} items in {len(names)} groups"
        )
    test = [i for i, g in enumerate(groups) if g in test_groups]
    train = [i for i, g in enumerate(groups) if g not in test_groups]
    return train, test
