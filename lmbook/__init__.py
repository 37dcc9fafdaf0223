"""lmbook: the companion package of the lmbook textbook on large language models.

Every chapter imports its models, tokenizers, data loaders, trainer and views from
here, so that the code shown in the book is the code that is tested. The names
below are the stable public API; `lmbook.viz`, `lmbook.pretrained`,
`lmbook.widgets` and `lmbook.exercises` are imported on demand (they pull in
matplotlib, transformers or ipywidgets).
"""

from lmbook.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from lmbook.batching import TokenBatchSampler
from lmbook.checkpoint import load_model
from lmbook.data import load_sst2, load_text, train_val_split
from lmbook.gpt import GPT, GPTConfig
from lmbook.lora import LoRALinear, apply_lora, merge_lora
from lmbook.preference import dpo_loss, sequence_logprobs
from lmbook.pretrained import house_model_path
from lmbook.rnn import GRU, LSTM, RNN, RNNLM, GRUCell, LSTMCell, RNNCell
from lmbook.tokenizers import BPETokenizer, CharTokenizer
from lmbook.train import TrainConfig, Trainer
from lmbook.utils import get_device, set_seed

__version__ = "0.1.0"

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GPT",
    "GPTConfig",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "LoRALinear",
    "MultiHeadAttention",
    "RNN",
    "RNNCell",
    "RNNLM",
    "TokenBatchSampler",
    "TrainConfig",
    "Trainer",
    "__version__",
    "apply_lora",
    "causal_mask",
    "dpo_loss",
    "get_device",
    "house_model_path",
    "load_model",
    "load_sst2",
    "load_text",
    "merge_lora",
    "scaled_dot_product_attention",
    "sequence_logprobs",
    "set_seed",
    "train_val_split",
]
