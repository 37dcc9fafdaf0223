"""Self-checks for Part V, "LoRA and preference optimisation": LoRA's parameter
count, DPO's loss and optimal policy, and GRPO's group-relative advantage.

The answers are computed with the package where it has the code
(`lmbook.lora.LoRALinear`, `lmbook.preference.dpo_loss`), following LoRA (Hu et
al., 2022), DPO (Rafailov et al., 2023) and GRPO (Shao et al., 2024) with the
standard deviation of TRL's ``GRPOTrainer`` (Bessel-corrected, plus 1e-4).
"""

from __future__ import annotations

from lmbook.exercises import register

# Numbers used in the chapter's exercise statements.
LLAMA_7B = dict(n_layer=32, n_embd=4096)  # Llama 2 7B: 32 layers, width 4096, MHA
LORA_R, LORA_TARGETS = 8, ("q_proj", "v_proj")  # each a 4096 x 4096 matrix
DPO_BETA = 0.1
DPO_LOGPS = dict(  # log-probabilities of one pair, in nats
    policy_chosen=-42.0, policy_rejected=-47.5, ref_chosen=-44.0, ref_rejected=-45.0
)
OPT_REF = (0.5, 0.3, 0.2)  # pi_ref over three answers
OPT_REWARD = (0.0, 1.0, 2.0)
OPT_BETA = 0.5
GRPO_REWARDS = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # one group of 8 samples
GRPO_EPS = 1e-4  # TRL adds it to the standard deviation


def _lora_params() -> int:
    import torch.nn as nn

    from lmbook.lora import LoRALinear, count_parameters

    C = LLAMA_7B["n_embd"]
    layer = LoRALinear(nn.Linear(C, C, bias=False, device="meta"), LORA_R, 16.0)
    per_matrix = count_parameters(layer)[0]
    return per_matrix * len(LORA_TARGETS) * LLAMA_7B["n_layer"]


def _dpo_loss() -> float:
    import torch

    from lmbook.preference import dpo_loss

    t = {k: torch.tensor([v], dtype=torch.float64) for k, v in DPO_LOGPS.items()}
    loss, _, _ = dpo_loss(
        t["policy_chosen"],
        t["policy_rejected"],
        t["ref_chosen"],
        t["ref_rejected"],
        beta=DPO_BETA,
    )
    return float(loss)


def _optimal_policy() -> float:
    import torch

    ref = torch.tensor(OPT_REF, dtype=torch.float64)
    reward = torch.tensor(OPT_REWARD, dtype=torch.float64)
    return float(torch.softmax(ref.log() + reward / OPT_BETA, dim=0)[2])


def _grpo_advantage() -> float:
    import torch

    r = torch.tensor(GRPO_REWARDS, dtype=torch.float64)
    return float((r[0] - r.mean()) / (r.std() + GRPO_EPS))


register(
    "lora-trainable-params",
    _lora_params,
    "an adapter on a (d_out, d_in) matrix has r * (d_in + d_out) parameters (A is "
    "r x d_in, B is d_out x r); count both targeted matrices in every layer",
    sig=None,
)
register(
    "dpo-loss-value",
    _dpo_loss,
    "each implied reward is beta * (log pi - log pi_ref); the loss is "
    "-log sigmoid(chosen reward - rejected reward), a positive number",
)
register(
    "dpo-optimal-policy",
    _optimal_policy,
    "the optimal policy is pi_ref(y) exp(r(y) / beta), normalised to sum to 1 "
    "over the three answers; divide the reward by beta, do not multiply",
)
register(
    "grpo-advantage",
    _grpo_advantage,
    "subtract the group's mean reward, then divide by the group's standard "
    "deviation with Bessel's correction (divide by n - 1), plus 1e-4",
)
