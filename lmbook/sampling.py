"""Choosing the next token from a model's logits: greedy, temperature, top-k, top-p.

Top-k sampling follows Fan et al. (2018), "Hierarchical Neural Story Generation";
nucleus (top-p) sampling follows Holtzman et al. (2020), "The Curious Case of
Neural Text Degeneration". Both filter the logits and then sample from the
softmax of what is left, as Hugging Face's ``TopKLogitsWarper`` and
``TopPLogitsWarper`` do.
"""

from __future__ import annotations

import torch

from lmbook.checks import check_float, check_int, tname

__all__ = ["sample_logits", "check_sampling"]

_TINY = 1e-30  # below this a temperature is applied in float64 (float32 underflows)


def check_sampling(temperature, top_k, top_p, generator, vocab_size=None) -> None:
    """Raise a clear error for a bad sampling argument (names the argument)."""
    check_float("temperature", temperature, low=0.0)
    if top_k is not None:
        check_int("top_k", top_k, low=1)
        if vocab_size is not None and top_k > vocab_size:
            raise ValueError(
                f"top_k must be at most the vocabulary size {vocab_size}, got "
                f"{top_k}; use top_k=None to keep every token"
            )
    if top_p is not None:
        check_float("top_p", top_p, 0.0, 1.0, low_open=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {tname(generator)}"
        )


def sample_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Draw one token id per row of logits (B, V) -> (B,) int64.

    temperature=0 is greedy (argmax). top_k keeps the k largest logits (ties with
    the k-th are kept too); top_p keeps the smallest set of most likely tokens
    whose probability sum reaches top_p (the most likely token is always kept).
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = getattr(logits, "dtype", type(logits).__name__)
        raise TypeError(f"logits must be a floating-point tensor, got {got}")
    if logits.dim() != 2 or logits.size(0) < 1 or logits.size(-1) < 1:
        raise ValueError(
            f"logits must have shape (B, V) with B, V >= 1, got {tuple(logits.shape)}"
        )
    check_sampling(temperature, top_k, top_p, generator, logits.size(-1))
    return sample(logits, temperature, top_k, top_p, generator)


def sample(logits, temperature, top_k, top_p, generator):
    """`sample_logits` without the argument checks, for loops that checked once."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    logits = logits - logits.max(dim=-1, keepdim=True).values  # (B, V), max is 0
    if temperature < _TINY:  # t would round to 0 in float32: 0 / 0 = NaN
        logits = (logits.double() / temperature).float()  # exact 0 for the max
    else:
        logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)  # (B, V)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of better tokens
        drop_sorted = mass_before >= top_p  # the set already reached top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocab order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
