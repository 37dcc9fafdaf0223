"""Self-checks for Part V, "Making models small and fast": a weight after int4
absmax quantization, the size of a 4-bit model with group-wise scales, and the
distillation loss.

The answers are computed with the package where it has the code
(`lmbook.quantize.quantize_groupwise`, `dequantize` and `bytes_per_weight`); the
distillation loss is tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau)) (Hinton
et al., 2015).
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
INT4_GROUP = (0.12, -0.53, 0.31, 0.07)  # one group of weights
INT4_INDEX = 2  # the weight asked about, 0.31
N_WEIGHTS = 7e9  # weights in the linear layers of a "7B" model
GROUP, SCALE_BITS = 128, 16  # int4 groups of 128, one float16 scale each
KD_TEACHER, KD_STUDENT, KD_TAU = (2.0, 1.0, 0.0), (1.0, 1.0, 1.0), 2.0


def _int4_value() -> float:
    import torch

    from lmbook.quantize import dequantize, quantize_groupwise

    w = torch.tensor([INT4_GROUP], dtype=torch.float64)
    q, scale = quantize_groupwise(w, 4)
    return float(dequantize(q, scale)[0, INT4_INDEX])


def _int4_gigabytes() -> float:
    from lmbook.quantize import bytes_per_weight

    return N_WEIGHTS * bytes_per_weight(4, GROUP, scale_bits=SCALE_BITS) / 1e9


def _kd_loss() -> float:
    import torch

    t = torch.tensor(KD_TEACHER, dtype=torch.float64) / KD_TAU
    s = torch.tensor(KD_STUDENT, dtype=torch.float64) / KD_TAU
    log_pt, log_ps = t.log_softmax(0), s.log_softmax(0)
    return float(KD_TAU**2 * (log_pt.exp() * (log_pt - log_ps)).sum())


register(
    "compress-int4-value",
    _int4_value,
    "the scale is the group's largest absolute value divided by 7; divide the "
    "weight by it, round to the nearest integer, and multiply back",
)
register(
    "compress-int4-gigabytes",
    _int4_gigabytes,
    "each weight costs half a byte, plus a 2-byte scale shared by its group of "
    "128; answer in units of 10^9 bytes",
)
register(
    "compress-kd-loss",
    _kd_loss,
    "divide both logit vectors by tau before the softmax, compute "
    "KL(teacher || student) = sum p_t log(p_t / p_s), and multiply by tau^2",
)
