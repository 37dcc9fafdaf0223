"""GPTConfig: the shape of a GPT, with named presets (minGPT's, GPT-2's, Llama's).

The defaults are GPT-2's block. Switches turn it, one part at a time, into the
block of current open models (Llama, Touvron et al., 2023; Qwen; Mistral):
RMSNorm (Zhang & Sennrich, 2019), rotary positions (RoPE, Su et al., 2021),
SwiGLU (Shazeer, 2020), grouped-query attention (Ainslie et al., 2023), untied
embeddings, and a mixture of experts (Shazeer et al., 2017; Fedus et al., 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmbook.checks import check_bool, check_choice, check_float, check_int, tname

MAX_BLOCK_SIZE = 2**20  # 1M positions: the position table alone is then 4 MB * n_embd
_GPT2 = dict(vocab_size=50257, block_size=1024, activation="gelu_tanh")
ACTIVATIONS = {"gelu": "none", "gelu_tanh": "tanh", "swiglu": None}  # F.gelu's
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
_LLAMA = dict(
    norm="rmsnorm",
    position="rope",
    activation="swiglu",
    bias=False,
    tie_embeddings=False,
)
_PRESETS = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, **_GPT2),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, **_GPT2),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, **_GPT2),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, **_GPT2),  # 1558M
    "gpt-mini": dict(n_layer=6, n_head=6, n_embd=192),  # minGPT's small shapes:
    "gpt-micro": dict(n_layer=4, n_head=4, n_embd=128),  # vocab_size and block_size
    "gpt-nano": dict(n_layer=3, n_head=3, n_embd=48),  # must be given
    # the same small shapes with Llama's block (vocab_size, block_size needed)
    "llama-mini": dict(n_layer=6, n_head=6, n_kv_head=2, n_embd=192, **_LLAMA),
    "llama-micro": dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, **_LLAMA),
    "llama-nano": dict(n_layer=3, n_head=4, n_kv_head=2, n_embd=48, **_LLAMA),
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
    activation: str = "gelu"  # "gelu" exact, "gelu_tanh" (GPT-2's), or "swiglu"
    # the switches of the modern block (defaults: GPT-2's)
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm" (Llama)
    norm_eps: float = 1e-5  # epsilon of every norm
    position: str = "learned"  # "learned" table (GPT-2) or "rope" (rotary, Llama)
    rope_theta: float = 10000.0  # RoPE's base; wavelengths 2 pi theta^(2i/hs)
    n_kv_head: int | None = None  # key/value heads (GQA); None: n_head (plain MHA)
    n_inner: int | None = None  # MLP width; None: 4 n_embd, swiglu: ~8/3 n_embd
    tie_embeddings: bool = True  # output layer shares the token embedding matrix
    n_expert: int = 0  # experts per MLP (mixture of experts); 0: one dense MLP
    n_expert_active: int = 2  # experts each token is routed to (top-k)
    moe_aux_coef: float = 0.01  # weight of the load-balancing loss in the loss

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
        for name, choices in (
            ("activation", ACTIVATIONS),
            ("norm", NORMS),
            ("position", POSITIONS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {tname(value)}")
            check_choice(name, value, choices)
        self.norm_eps = check_float("norm_eps", self.norm_eps, 0.0, 1.0, low_open=True)
        self.rope_theta = check_float("rope_theta", self.rope_theta, 1.0)
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(
                f"position='rope' rotates pairs of dimensions, so the head size "
                f"n_embd // n_head must be even, got {self.head_size}"
            )
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        check_int("n_kv_head", self.n_kv_head, low=1)
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head must be divisible by n_kv_head (each key/value head serves "
                f"n_head // n_kv_head query heads), got n_head={self.n_head} and "
                f"n_kv_head={self.n_kv_head}"
            )
        if self.n_inner is None:
            self.n_inner = 4 * self.n_embd
            if self.activation == "swiglu":  # 3 matrices of 8/3 C: as many weights
                self.n_inner = 8 * math.ceil(self.n_embd / 3)  # 8/3 C, rounded up
        check_int("n_inner", self.n_inner, low=1)
        check_bool("tie_embeddings", self.tie_embeddings)
        check_int("n_expert", self.n_expert, low=0)
        check_int("n_expert_active", self.n_expert_active, low=1)
        if self.n_expert and self.n_expert_active > self.n_expert:
            raise ValueError(
                f"n_expert_active must be at most n_expert={self.n_expert}, got "
                f"{self.n_expert_active}"
            )
        self.moe_aux_coef = check_float("moe_aux_coef", self.moe_aux_coef, 0.0)

    @property
    def head_size(self) -> int:
        """Dimensions per attention head, n_embd // n_head."""
        return self.n_embd // self.n_head

    @property
    def is_gpt2(self) -> bool:
        """True when the block is GPT-2's (Hugging Face's GPT2LMHeadModel)."""
        return (
            (self.norm, self.position, self.activation != "swiglu")
            == ("layernorm", "learned", True)
            and self.n_kv_head == self.n_head
            and self.tie_embeddings
            and (self.n_inner == 4 * self.n_embd and not self.n_expert)
        )

    @property
    def is_llama(self) -> bool:
        """True when the block is Llama's (Hugging Face's LlamaForCausalLM)."""
        return (self.norm, self.position, self.activation) == (
            "rmsnorm",
            "rope",
            "swiglu",
        ) and not self.n_expert

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
