"""Self-checks of Part V, "Making models small and fast": each expected answer
is recomputed here independently (by the formula, not the package), right and
rounded answers pass, typical mistakes fail, and the feedback never reveals the
answer."""

from __future__ import annotations

import math

import lmbook.exercises.practice_compress as pc
from tests.exercise_helpers import exercise_tests

NAMES = ["compress-int4-value", "compress-int4-gigabytes", "compress-kd-loss"]


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _independent(name: str) -> float:
    """The right answer, by the formula written out."""
    if name == "compress-int4-value":
        scale = max(abs(v) for v in pc.INT4_GROUP) / 7
        return round(pc.INT4_GROUP[pc.INT4_INDEX] / scale) * scale
    if name == "compress-int4-gigabytes":
        return pc.N_WEIGHTS * (0.5 + pc.SCALE_BITS / 8 / pc.GROUP) / 1e9
    if name == "compress-kd-loss":
        p_t = _softmax([v / pc.KD_TAU for v in pc.KD_TEACHER])
        p_s = _softmax([v / pc.KD_TAU for v in pc.KD_STUDENT])
        kl = sum(a * math.log(a / b) for a, b in zip(p_t, p_s, strict=True))
        return pc.KD_TAU**2 * kl
    raise AssertionError(name)


# The rounded answers the chapter's solutions show, as a reader would type them.
ROUNDED = {
    "compress-int4-value": [0.303, 0.3029],
    "compress-int4-gigabytes": [3.61, 3.609],
    "compress-kd-loss": [0.314, 0.3137],
}

# Typical mistakes.
WRONG = {
    "compress-int4-value": [
        0.31,  # not quantized at all
        round(0.31 / (0.53 / 8)) * (0.53 / 8),  # divided by 8, not 7
        4,  # the integer, not the dequantized value
    ],
    "compress-int4-gigabytes": [
        3.5,  # forgot the scales
        7e9 * (0.5 + 4 / 128) / 1e9,  # float32 scales
        7e9 * 4 / 1e9,  # four bytes per weight
    ],
    "compress-kd-loss": [
        0.3137 / 4,  # forgot tau^2
        4
        * sum(  # KL(student || teacher)
            b * math.log(b / a)
            for a, b in zip(_softmax([1.0, 0.5, 0.0]), [1 / 3] * 3, strict=True)
        ),
        4
        * sum(  # no temperature in the softmax
            a * math.log(3 * a) for a in _softmax([2.0, 1.0, 0.0])
        ),
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
