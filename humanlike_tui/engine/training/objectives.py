"""The losses on answer log-probs (engine/logprobs.py computes them): DPO on summed log-probs against a
reference; ORPO and SimPO, reference-free, on mean log-probs per answer token (as TRL's ORPOTrainer and
CPOTrainer with loss_type "simpo" compute them; tests/engine/test_preference_parity.py holds us to them)."""

from __future__ import annotations

LN_HALF = -0.6931471805599453  # log(1/2): where log1mexp switches formula


def dpo_loss(pc, pr, rc, rr, beta: float):
    """Sigmoid DPO (Rafailov et al. 2023) on summed answer log-probs; returns per-pair loss and rewards."""
    import torch.nn.functional as F

    chosen_reward = beta * (pc - rc)
    rejected_reward = beta * (pr - rr)
    loss = -F.logsigmoid(chosen_reward - rejected_reward)
    return loss, chosen_reward.detach(), rejected_reward.detach()


def log1mexp(x):
    """log(1 - exp(x)) for x < 0 without cancellation (Maechler 2012): expm1 near 0, log1p further out."""
    import torch

    return torch.where(x < LN_HALF, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_odds_ratio(avg_c, avg_r):
    """ORPO's odds-ratio term (Hong et al. 2024): log sigmoid of the log odds ratio of chosen over rejected,
    from mean log-probs per answer token; returns (log sigmoid per pair, log odds ratio per pair)."""
    import torch.nn.functional as F

    log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r))
    return F.logsigmoid(log_odds), log_odds.detach()


def simpo_loss(avg_c, avg_r, beta: float, gamma: float):
    """SimPO (Meng et al. 2024): -log sigmoid(beta * (mean log-prob chosen - rejected) - gamma), gamma the
    target margin; returns per-pair loss and the rewards beta * mean log-prob."""
    import torch.nn.functional as F

    loss = -F.logsigmoid(beta * (avg_c - avg_r) - gamma)
    return loss, (beta * avg_c).detach(), (beta * avg_r).detach()
