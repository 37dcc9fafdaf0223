"""Self-checks for Part V, "Sentence classification with an encoder": LoRA's
trainable parameters, the majority-class baseline of the held-out split, the
padding in a dynamically padded batch, and AdamW's state for full fine-tuning.

The answers are computed, not typed in: from MiniLM's configuration (Wang et al.,
2020; BERT's architecture, Devlin et al., 2019), LoRA's parameter count (Hu et al.,
2022), the chapter's SST-2 split (Socher et al., 2013) built by
`lmbook.classify.sst2_split`, and AdamW's two moment estimates per parameter
(Loshchilov & Hutter, 2019).
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter (its constants) and in the exercise statements.
N_TRAIN, N_HELD_OUT, SPLIT_SEED = 1000, 500, 0  # the chapter's split
MINILM = {  # all-MiniLM-L6-v2's config.json
    "num_hidden_layers": 6,
    "hidden_size": 384,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
NUM_LABELS = 2
LORA_RANK = 16  # the rank asked about (the chapter trains r = 8)
BATCH_LENGTHS = (7, 12, 15, 41)  # token counts of four sentences in one batch


def _head() -> int:
    d = MINILM["hidden_size"]
    return d * NUM_LABELS + NUM_LABELS  # the classifier: weight and bias


def _lora_params() -> int:
    d = MINILM["hidden_size"]
    per_matrix = LORA_RANK * (d + d)  # A (r, d_in) and B (d_out, r)
    return MINILM["num_hidden_layers"] * 2 * per_matrix + _head()


def _majority() -> float:
    from lmbook.classify import sst2_split

    _, held_out = sst2_split(N_TRAIN, N_HELD_OUT, seed=SPLIT_SEED)
    positive = sum(held_out["label"]) / len(held_out)
    return max(positive, 1 - positive)


def _padding_fraction() -> float:
    longest = max(BATCH_LENGTHS)
    padded = len(BATCH_LENGTHS) * longest
    return (padded - sum(BATCH_LENGTHS)) / padded


def _bert_classifier_params() -> int:
    d, inner = MINILM["hidden_size"], MINILM["intermediate_size"]
    embeddings = (
        MINILM["vocab_size"]
        + MINILM["max_position_embeddings"]
        + MINILM["type_vocab_size"]
    ) * d + 2 * d  # word, position, token type; LayerNorm
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, output; LayerNorm
    mlp = d * inner + inner + inner * d + d + 2 * d  # two linears; LayerNorm
    pooler = d * d + d
    return (
        embeddings + MINILM["num_hidden_layers"] * (attention + mlp) + pooler + _head()
    )


def _adam_state() -> int:
    return 2 * _bert_classifier_params()  # first and second moments


register(
    "classification-lora-params",
    _lora_params,
    "each adapted matrix W (d_out, d_in) gets A (r, d_in) and B (d_out, r); "
    "count query and value in every layer, and remember the new classifier "
    "head, which is trained as well",
    sig=None,
)
register(
    "classification-majority",
    _majority,
    "count the positive labels of the held-out split; always answering the "
    "more frequent class is right for that fraction of the rows",
)
register(
    "classification-padding",
    _padding_fraction,
    "every sentence is padded to the longest one of the batch; divide the "
    "padding positions by all positions of the padded batch",
)
register(
    "classification-adam-state",
    _adam_state,
    "AdamW keeps two numbers (first and second moment) for every trainable "
    "parameter; in full fine-tuning every parameter of the classifier model is "
    "trainable, the pooler and the embeddings included",
    sig=None,
)
