"""The losses on summed answer log-probs (engine/logprobs.py computes them): DPO."""

from __future__ import annotations


def dpo_loss(pc, pr, rc, rr, beta: float):
    """Sigmoid DPO (Rafailov et al. 2023) on summed answer log-probs; returns per-pair loss and rewards."""
    import torch.nn.functional as F

    chosen_reward = beta * (pc - rc)
    rejected_reward = beta * (pr - rr)
    loss = -F.logsigmoid(chosen_reward - rejected_reward)
    return loss, chosen_reward.detach(), rejected_reward.detach()
