"""Self-checks for Part IV, chapter "Decoding": the repetition penalty, top-p,
beam search's length penalty and speculative decoding.

The expected answers are computed, not typed in: the repetition penalty is CTRL's
(Keskar et al., 2019) as `lmbook.decoding.RepetitionPenalty` applies it, top-p is
nucleus sampling (Holtzman et al., 2020), the length penalty is Hugging Face's
log p / n ** alpha, and the acceptance rate and the expected tokens per target
pass are those of Leviathan et al. (2023).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
PENALTY_LOGITS = (2.0, -1.0, 0.5, -0.2)
PENALTY_SEEN = (0, 1, 1)  # token ids already in the text
PENALTY = 1.5
TOP_P_PROBS = (0.45, 0.25, 0.12, 0.08, 0.06, 0.04)
TOP_P = 0.8
BEAM_A = (-6.0, 4)  # (log-probability, new tokens) of hypothesis A
BEAM_B = (-8.0, 8)  # and of hypothesis B
SPEC_P = (0.5, 0.3, 0.2)  # target distribution
SPEC_Q = (0.2, 0.6, 0.2)  # draft distribution
SPEC_K = 4  # draft tokens per round


def _repetition_penalty() -> list[float]:
    import torch

    from lmbook.decoding import RepetitionPenalty

    scores = torch.tensor([PENALTY_LOGITS], dtype=torch.float64)
    seen = torch.tensor([PENALTY_SEEN])
    return RepetitionPenalty(PENALTY)(seen, scores)[0].tolist()


def _top_p_kept() -> int:
    import torch

    from lmbook.decoding import TopP

    logits = torch.tensor([TOP_P_PROBS], dtype=torch.float64).log()
    return int(TopP(TOP_P)(None, logits).isfinite().sum())


def _length_penalty_tie() -> float:
    # la / na**alpha == lb / nb**alpha  <=>  (nb / na)**alpha == lb / la
    (la, na), (lb, nb) = BEAM_A, BEAM_B
    return math.log(lb / la) / math.log(nb / na)


def _speculative_acceptance() -> float:
    return sum(min(p, q) for p, q in zip(SPEC_P, SPEC_Q, strict=True))


def _speculative_tokens_per_pass() -> float:
    alpha = _speculative_acceptance()
    return (1 - alpha ** (SPEC_K + 1)) / (1 - alpha)


register(
    "repetition-penalty",
    _repetition_penalty,
    "every token already in the text is penalised once, however often it occurs; "
    "a positive logit is divided by the penalty, a negative one multiplied by it, "
    "and the other logits stay as they are. Give the four processed logits.",
)
register(
    "top-p-kept",
    _top_p_kept,
    "sort the probabilities from the largest, add them up, and stop at the first "
    "token where the running sum reaches p; count the tokens up to and including "
    "it.",
    sig=None,  # a count
)
register(
    "length-penalty-tie",
    _length_penalty_tie,
    "set log p_A / n_A**alpha equal to log p_B / n_B**alpha and solve for alpha "
    "with logarithms: (n_B / n_A)**alpha = log p_B / log p_A.",
)
register(
    "speculative-acceptance",
    _speculative_acceptance,
    "a draft token y is accepted with probability min(1, p(y) / q(y)) and drawn "
    "with probability q(y); sum q(y) min(1, p(y) / q(y)) over y, which simplifies "
    "to a sum of minima.",
)
register(
    "speculative-tokens-per-pass",
    _speculative_tokens_per_pass,
    "with acceptance probability a per draft token and k drafts, a round yields "
    "1 + a + a**2 + ... + a**k tokens on average: a geometric sum.",
)
