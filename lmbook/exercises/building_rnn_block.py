"""Self-checks for Part IV, "A recurrent language model" and "The Transformer
block, assembled".

The expected answers are computed, not typed in: bits per character are nats per
character over ln 2 (Shannon, 1948); the LSTM's parameter count follows the layout
of ``torch.nn.LSTM`` (Hochreiter & Schmidhuber, 1997); the n-gram table has one cell
per n-gram; Keras's ``MultiHeadAttention`` gives every head ``key_dim`` dimensions
(Chollet et al., keras.io); a GPT-2 block (Radford et al., 2019) has 12 C^2 + 13 C
parameters; a leaky model's mean loss averages its per-position losses.
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapters' exercise statements.
BPC_NATS = 1.60  # validation loss in nats per character
LSTM_VOCAB, LSTM_HIDDEN, LSTM_LAYERS = 65, 256, 2
NGRAM_VOCAB, NGRAM_N = 65, 5
KERAS_WIDTH, KERAS_HEADS, KERAS_KEY_DIM = 512, 8, 512
BLOCK_WIDTH = 768  # GPT-2 small
LEAK_T, LEAK_LAST_LOSS = 16, 3.2  # window; loss 0 at the T - 1 visible targets


def _bpc() -> float:
    return BPC_NATS / math.log(2)


def _rnnlm_parameters() -> int:
    V, H, L = LSTM_VOCAB, LSTM_HIDDEN, LSTM_LAYERS
    embedding = V * H
    # each layer: W_ih (4H, H) since its input is H wide, W_hh (4H, H), 2 biases
    lstm = L * (2 * 4 * H * H + 2 * 4 * H)
    head = H * V + V
    return embedding + lstm + head


def _ngram_table_cells() -> int:
    return NGRAM_VOCAB**NGRAM_N


def _keras_mha_parameters() -> int:
    C, h, k = KERAS_WIDTH, KERAS_HEADS, KERAS_KEY_DIM
    qkv = 3 * (C * h * k + h * k)  # three kernels (C, h, k) and biases (h, k)
    return qkv + h * k * C + C  # output kernel (h, k, C) and bias (C,)


def _block_parameters() -> int:
    C = BLOCK_WIDTH
    return 12 * C**2 + 13 * C


def _leak_mean_loss() -> float:
    return (0.0 * (LEAK_T - 1) + LEAK_LAST_LOSS) / LEAK_T


register(
    "rnnlm-bpc",
    _bpc,
    "bits per character are nats per character divided by ln 2 (log base 2 "
    "instead of the natural logarithm).",
)
register(
    "rnnlm-parameters",
    _rnnlm_parameters,
    "count the embedding (V x H), each LSTM layer (two matrices of shape 4H x H "
    "and two biases of 4H, the second layer reading the first one's H outputs) "
    "and the head (H x V plus a bias of V).",
    sig=None,  # a count
)
register(
    "ngram-table-cells",
    _ngram_table_cells,
    "a dense table has one cell for every sequence of n characters, each of "
    "which can be any of the V characters.",
    sig=None,  # a count
)
register(
    "keras-mha-parameters",
    _keras_mha_parameters,
    "key_dim is the size of each head, so the query, key and value kernels are "
    "each C x heads x key_dim, with biases of heads x key_dim, and the output "
    "kernel is heads x key_dim x C with a bias of C.",
    sig=None,  # a count
)
register(
    "block-parameters",
    _block_parameters,
    "attention has 4 C^2 weights and 4 C biases, the MLP 8 C^2 weights and "
    "5 C biases, and the two LayerNorms 2 C parameters each.",
    sig=None,  # a count
)
register(
    "leak-mean-loss",
    _leak_mean_loss,
    "the reported loss is the mean over all T positions of the window, and "
    "only the last one has a non-zero loss.",
)
