"""Self-checks for Part IV, "From GPT-2 to a modern LLM".

Shapes follow Llama 2 7B and Llama 3 8B (Touvron et al., 2023; Dubey et al.,
2024); RoPE's angles follow Su et al. (2021).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

KV_LAYERS, KV_HEADS, KV_HEAD_SIZE, KV_BYTES = 32, 8, 128, 2
SWIGLU_C, SWIGLU_HIDDEN = 4096, 11008
ROPE_D, ROPE_BASE, ROPE_PAIR = 32, 10000.0, 15

register(
    "modern-kv-bytes",
    lambda: 2 * KV_LAYERS * KV_HEADS * KV_HEAD_SIZE * KV_BYTES,
    "Count keys AND values, in every layer, for the key/value heads only "
    "(not the query heads), times the bytes per number.",
    sig=None,
)
register(
    "modern-swiglu-params",
    lambda: 3 * SWIGLU_C * SWIGLU_HIDDEN,
    "SwiGLU has three matrices (gate, up, down), each C x hidden; no biases.",
    sig=None,
)
register(
    "modern-rope-wavelength",
    lambda: 2 * math.pi * ROPE_BASE ** (2 * ROPE_PAIR / ROPE_D),
    "A full turn is 2*pi radians; pair i turns by base**(-2i/d) per position.",
)
