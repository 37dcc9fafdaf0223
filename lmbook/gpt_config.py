"""GPTConfig: the shape of a GPT, with named presets (minGPT's and GPT-2's)."""

from __future__ import annotations

from dataclasses import dataclass

from lmbook.checks import check_bool, check_choice, check_float, check_int, tname

MAX_BLOCK_SIZE = 2**20  # 1M positions: the position table alone is then 4 MB * n_embd
_GPT2 = dict(vocab_size=50257, block_size=1024, activation="gelu_tanh")
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh"}  # -> F.gelu(approximate=...)
_PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, **_GPT2),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, **_GPT2),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, **_GPT2),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, **_GPT2),  # 1558M
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192),  # minGPT's small shapes:
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128),  # vocab_size and block_size
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48),  # must be given
}


@dataclass
class GPTConfig:
    """Shape of a GPT. Named shapes: `GPTConfig.from_preset`.

    ``activation`` picks the GELU of the MLP. "gelu" is the exact x * Phi(x)
    (``torch.nn.GELU()``, nanoGPT's choice). "gelu_tanh" is the tanh approximation
    that GPT-2 was trained with; the GPT-2 presets and checkpoints loaded from
    Hugging Face use it, so their outputs match. The two differ by at most about
    5e-4 per activation, and PyTorch's CPU kernel for the exact form is faster.
    ``block_size`` is at most 2**20 (``MAX_BLOCK_SIZE``): the learned position
    table holds block_size x n_embd numbers, 3 GB for GPT-2's width at the limit.
    """

    vocab_size: int  # number of token ids; ids run from 0 to vocab_size - 1
    block_size: int  # longest sequence (context length) the model accepts
    n_layer: int  # number of transformer blocks
    n_head: int  # attention heads per block; each has n_embd // n_head dims
    n_embd: int  # width of the residual stream (embedding size)
    dropout: float = 0.0  # dropout on embeddings, attention weights and residuals
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2: True)
    activation: str = "gelu"  # "gelu": exact x * Phi(x); "gelu_tanh": GPT-2's formula

    def __post_init__(self):
        for f in ("vocab_size", "n_layer", "n_head", "n_embd"):
            check_int(f, getattr(self, f), low=1)
        check_int("block_size", self.block_size, low=1, high=MAX_BLOCK_SIZE)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd} and "
                f"n_head={self.n_head}; change n_embd to a multiple of n_head "
                f"(e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))}) "
                f"or pick an n_head that divides {self.n_embd}"
            )
        self.dropout = check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_bool("bias", self.bias)
        if not isinstance(self.activation, str):
            raise TypeError(f"activation must be a str, got {tname(self.activation)}")
        check_choice("activation", self.activation, ACTIVATIONS)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """A named shape, e.g. ``from_preset("gpt2")`` (124M parameters).

        The GPT-2 presets ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl") default to
        vocab_size=50257 and block_size=1024. minGPT's small shapes ("gpt-mini",
        "gpt-micro", "gpt-nano") have no default vocabulary or context, so pass
        both: ``from_preset("gpt-nano", vocab_size=65, block_size=128)``. Any
        other field (e.g. ``dropout``) may be overridden too.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {tname(name)}")
        if name not in _PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; known presets: {', '.join(_PRESETS)}"
            )
        kwargs = {**_PRESETS[name], **overrides}
        missing = [f for f in ("vocab_size", "block_size") if f not in kwargs]
        if missing:
            raise ValueError(
                f"preset {name!r} needs {' and '.join(missing)}, e.g. "
                f"GPTConfig.from_preset({name!r}, vocab_size=65, block_size=128)"
            )
        return cls(**kwargs)
