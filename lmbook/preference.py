"""Preference optimisation: DPO's loss and the log-probabilities it needs.

"Direct Preference Optimization: Your Language Model is Secretly a Reward
Model" (Rafailov et al., 2023) trains a policy on pairs of completions, one
preferred ("chosen") and one not ("rejected"), without a reward model or
reinforcement learning: the loss is the Bradley-Terry likelihood (Bradley &
Terry, 1952) of the preferences under the reward that the policy implies,
beta log(pi(y|x) / pi_ref(y|x)). The batch layout (chosen pairs first, then
rejected, right-padded, labels -100 outside the completions) and the names of
the outputs follow Hugging Face's TRL (``DPOTrainer``, sigmoid loss), which the
tests compare against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmbook.checks import check_float, check_int, tname

__all__ = ["collate_preferences", "dpo_loss", "sequence_logprobs"]


def _check_tensor(name, t, dims=None, floating=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {tname(t)}")
    if dims is not None and t.dim() != dims:
        raise ValueError(
            f"{name} must have {dims} dimensions, got shape {tuple(t.shape)}"
        )
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if floating is False and t.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.int64, got {t.dtype}")


def sequence_logprobs(logits, labels, ignore_index: int = -100) -> torch.Tensor:
    """Sum of the log-probabilities of the labelled tokens of each sequence.

    logits: (B, T, V); labels: (B, T) int64, the input ids with ignore_index
    wherever a token is not scored (prompt, padding). As in Hugging Face,
    labels are *not* shifted: position t's logits score labels[:, t + 1], so
    the first label is never scored. Returns (B,): log pi(completion | prompt).
    """
    _check_tensor("logits", logits, dims=3, floating=True)
    _check_tensor("labels", labels, dims=2, floating=False)
    check_int("ignore_index", ignore_index)
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape (B, T) = {tuple(logits.shape[:2])} of the "
            f"logits, got {tuple(labels.shape)}"
        )
    V = logits.size(-1)
    if labels.device.type == "cpu":
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= V))
        if bad.any():
            raise ValueError(
                f"labels must be token ids in [0, {V}) or ignore_index="
                f"{ignore_index}, got {int(labels[bad][0])}"
            )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = F.log_softmax(logits[:, :-1].to(dtype), dim=-1)  # (B, T-1, V)
    target = labels[:, 1:]  # (B, T-1)
    scored = target != ignore_index
    token_logp = logp.gather(-1, target.masked_fill(~scored, 0).unsqueeze(-1))
    return (token_logp.squeeze(-1) * scored).sum(dim=-1)  # (B,)


def dpo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's sigmoid loss: -log sigmoid(r_chosen - r_rejected), averaged.

    Each argument is (B,): log-probabilities of the chosen and the rejected
    completions under the policy and under the frozen reference model. The
    implied reward of a completion is beta (log pi - log pi_ref). Returns
    (loss (), chosen_rewards (B,), rejected_rewards (B,)); the rewards are
    detached, as TRL logs them.
    """
    names = (
        "policy_chosen_logps",
        "policy_rejected_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
    )
    args = (
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
    )
    for name, t in zip(names, args, strict=True):
        _check_tensor(name, t, floating=True)
        if t.shape != policy_chosen_logps.shape:
            raise ValueError(
                f"{name} must have the shape of policy_chosen_logps "
                f"{tuple(policy_chosen_logps.shape)}, got {tuple(t.shape)}"
            )
    if policy_chosen_logps.numel() == 0:
        raise ValueError("the log-probabilities must hold at least one pair, got 0")
    beta = check_float("beta", beta, 0.0, low_open=True)
    chosen = policy_chosen_logps - ref_chosen_logps  # log pi/pi_ref, (B,)
    rejected = policy_rejected_logps - ref_rejected_logps  # (B,)
    loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
    return loss, beta * chosen.detach(), beta * rejected.detach()


def collate_preferences(
    prompts: list[list[int]],
    chosen: list[list[int]],
    rejected: list[list[int]],
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A DPO batch from token ids, laid out as TRL's DataCollatorForPreference.

    Row i is prompts[i] + chosen[i], row B + i is prompts[i] + rejected[i],
    right-padded with pad_id. Returns (input_ids (2B, T), labels (2B, T)):
    labels are the ids on completion tokens and -100 on prompts and padding.
    With right padding a causal model needs no attention mask: no real token
    sees a pad.
    """
    check_int("pad_id", pad_id, low=0)
    named = (("prompts", prompts), ("chosen", chosen), ("rejected", rejected))
    for name, seqs in named:
        if not isinstance(seqs, list | tuple) or not seqs:
            raise TypeError(f"{name} must be a non-empty list of lists of token ids")
        for ids in seqs:
            if not isinstance(ids, list | tuple) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids
            ):
                raise TypeError(
                    f"{name} must be a list of lists of non-negative int token "
                    f"ids, got an element {ids!r:.60}"
                )
            if name != "prompts" and not ids:
                raise ValueError(f"{name} holds an empty completion")
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(
            f"prompts, chosen and rejected must have the same length, got "
            f"{len(prompts)}, {len(chosen)} and {len(rejected)}"
        )
    rows = [(p, c) for p, c in zip(prompts, chosen, strict=True)]
    rows += [(p, r) for p, r in zip(prompts, rejected, strict=True)]
    T = max(len(p) + len(c) for p, c in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        n = len(p) + len(c)
        input_ids[i, :n] = torch.tensor([*p, *c], dtype=torch.long)
        labels[i, len(p) : n] = input_ids[i, len(p) : n]
    return input_ids, labels
