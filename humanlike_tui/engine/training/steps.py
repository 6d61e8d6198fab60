"""One optimizer step: the step's rows split into passes of at most `budget` tokens, forward and backward
for each (SFT, or a preference method: DPO, ORPO, SimPO), one optimizer update; an out-of-memory error
halves the budget and retries the step. The loss is normalised by the whole step's answer tokens (SFT) or
pairs (preference methods; ORPO's SFT term by the step's chosen tokens), so how a step is split into passes
changes the speed, never the result."""

from __future__ import annotations

import gc
from typing import Any, Callable

from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine import logprobs as L
from humanlike_tui.engine.training import objectives as O
from humanlike_tui.engine.training.distributed import Dist, all_reduce_grads
from humanlike_tui.engine.training.reference import DpoReference
from humanlike_tui.engine.training.schedule import pack_micro_batches
from humanlike_tui.errors import TrainingError
from humanlike_tui.events import BatchReduced, Emit

MAX_BUDGET_HALVINGS = 6
# Phases whose passes hold chosen and rejected together; only DPO also needs the reference's log-probs.
PAIR_PHASES = ("dpo", "orpo", "simpo")


def sft_normaliser(ex: D.Example, train_on_prompt: bool) -> int:
    """Tokens that are targets in one SFT row: the answer (its EOS included), plus, with
    data.train_on_prompt, every prompt token but the first (the first token is never predicted), else a
    conversation's earlier assistant turns that carry loss."""
    return len(ex.chosen_ids) + (max(0, len(ex.prompt_ids) - 1) if train_on_prompt else ex.history_targets)


class StepRunner:
    def __init__(self, cfg: Config, model, tok, device, autocast: Callable, train_set: list[D.Example],
                 params: list, opt, scaler, dist: Dist, reference: DpoReference, budget: int, emit: Emit):
        self.cfg, self.model, self.tok, self.device, self.autocast = cfg, model, tok, device, autocast
        self.train_set, self.params, self.opt, self.scaler, self.dist = train_set, params, opt, scaler, dist
        self.reference, self.budget, self.emit = reference, budget, emit
        self.halvings = 0

    def passes(self, idx: list[int], phase: str) -> list[list[int]]:
        factor = 2 if phase in PAIR_PHASES else 1  # chosen and rejected go through together
        return pack_micro_batches([self.train_set[i].length * factor for i in idx], self.budget)

    def pair_logps(self, exs: list[D.Example]):
        """Summed answer log-probs for chosen and rejected, one padded batch of 2n rows."""
        seqs = [D.sft_tensors(e, False, "chosen") for e in exs] + [D.sft_tensors(e, False, "rejected") for e in exs]
        ids, labels, att = D.pad_batch(seqs, self.tok.pad_token_id)
        logp, rows = L.answer_logprobs(self.model, ids, labels, att, self.device)
        sums = L.per_row_sum(logp, rows, len(seqs))
        return sums[: len(exs)], sums[len(exs):], int(att.sum())

    def mean_pair_logps(self, exs: list[D.Example], nll_on_prompt: bool):
        """Mean answer log-prob per token for chosen and rejected (one padded batch of 2n rows), and the summed
        log-prob of the chosen rows' SFT targets (the answer, plus the prompt when nll_on_prompt) for ORPO."""
        import torch

        n = len(exs)
        answers = [D.sft_tensors(e, False, "chosen") for e in exs] + [D.sft_tensors(e, False, "rejected") for e in exs]
        seqs = [D.sft_tensors(e, True, "chosen") for e in exs] + answers[n:] if nll_on_prompt else answers
        ids, labels, att = D.pad_batch(seqs, self.tok.pad_token_id)
        logp, rows = L.answer_logprobs(self.model, ids, labels, att, self.device)
        nll_sum = -logp[rows < n].sum()
        if nll_on_prompt:  # the mean log-probs stay on answer tokens: drop the prompt's from the selection
            answer_labels = D.pad_batch(answers, self.tok.pad_token_id)[1][:, 1:].reshape(-1)
            keep = (answer_labels[(labels[:, 1:] != D.IGNORE).reshape(-1)] != D.IGNORE).to(logp.device)
            logp, rows = logp[keep], rows[keep]
        sums = L.per_row_sum(logp.float(), rows, 2 * n)
        counts = torch.bincount(rows, minlength=2 * n).clamp(min=1)
        avg = sums / counts
        return avg[:n], avg[n:], nll_sum.float(), int(att.sum())

    def sft_pass(self, exs: list[D.Example], norm: float):
        seqs = [D.sft_tensors(e, self.cfg.data.train_on_prompt) for e in exs]
        ids, labels, att = D.pad_batch(seqs, self.tok.pad_token_id)
        with self.autocast():
            logp, _ = L.answer_logprobs(self.model, ids, labels, att, self.device)
            loss_sum = -logp.sum()
        self.backward(loss_sum / norm)
        return {"loss_sum": loss_sum.detach()}, int(att.sum())

    def dpo_pass(self, keys: list[int], exs: list[D.Example], norm: float):
        import torch

        rc, rr = self.reference.logps(keys, exs, self.pair_logps, self.autocast)
        with self.autocast():
            pc, pr, tokens = self.pair_logps(exs)
        ref_c = torch.tensor(rc, device=pc.device)
        ref_r = torch.tensor(rr, device=pc.device)
        loss, cr, rj = O.dpo_loss(pc.float(), pr.float(), ref_c, ref_r, self.cfg.train.dpo_beta)
        self.backward(loss.sum() / norm)
        # "dpo_reward_accuracy": share of pairs whose implicit reward (beta * log-ratio to the reference)
        # is higher for chosen. Not the scorecard's log-prob preference accuracy.
        return {"loss_sum": loss.detach().sum(), "chosen_sum": cr.sum(), "rejected_sum": rj.sum(),
                "correct": (cr > rj).float().sum()}, tokens

    def reference_free_pass(self, phase: str, exs: list[D.Example], norm: float, token_norm: float):
        """ORPO or SimPO on mean log-probs per answer token: no reference pass. ORPO adds the SFT loss on
        chosen (its own normaliser: the step's chosen target tokens) to lambda x the odds-ratio term."""
        t = self.cfg.train
        orpo = phase == "orpo"
        with self.autocast():
            avg_c, avg_r, nll_sum, tokens = self.mean_pair_logps(exs, orpo and self.cfg.data.train_on_prompt)
        stats = {}
        if orpo:
            ratio, log_odds = O.orpo_odds_ratio(avg_c.float(), avg_r.float())
            loss_sum = nll_sum * (norm / token_norm) - t.orpo_lambda * ratio.sum()
            cr, rj = t.orpo_lambda * avg_c.detach(), t.orpo_lambda * avg_r.detach()  # TRL's ORPO rewards
            stats = {"nll_sum": nll_sum.detach() * (norm / token_norm), "log_odds_sum": log_odds.sum()}
        else:
            loss, cr, rj = O.simpo_loss(avg_c.float(), avg_r.float(), t.simpo_beta, t.simpo_gamma)
            loss_sum = loss.sum()
        self.backward(loss_sum / norm)
        return stats | {"loss_sum": loss_sum.detach(), "chosen_sum": cr.sum(), "rejected_sum": rj.sum(),
                        "correct": (cr > rj).float().sum(), "logp_chosen_sum": avg_c.detach().sum(),
                        "logp_rejected_sum": avg_r.detach().sum()}, tokens

    def backward(self, loss) -> None:
        # DDP-style averaging happens once per step in all_reduce_grads, so each backward here is local.
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def forward_backward(self, phase: str, idx: list[int], global_idx: list[int]) -> tuple[dict, int]:
        """Forward/backward every pass of the step; returns summed stats (per normaliser) and tokens seen."""
        on_prompt = self.cfg.data.train_on_prompt
        chosen_tokens = float(sum(sft_normaliser(self.train_set[i], on_prompt) for i in global_idx))
        norm = float(len(global_idx)) if phase in PAIR_PHASES else chosen_tokens
        totals: dict[str, Any] = {}
        tokens = 0
        for mb in self.passes(idx, phase):
            keys = [idx[j] for j in mb]
            exs = [self.train_set[k] for k in keys]
            if phase == "dpo":
                stats, n = self.dpo_pass(keys, exs, norm)
            elif phase in PAIR_PHASES:
                stats, n = self.reference_free_pass(phase, exs, norm, chosen_tokens)
            else:
                stats, n = self.sft_pass(exs, norm)
            tokens += n
            for k, v in stats.items():
                totals[k] = totals[k] + v if k in totals else v
        return {k: v / norm for k, v in totals.items()} | {"_norm": norm}, tokens

    def run(self, step: int, phase: str, idx: list[int], global_idx: list[int]) -> tuple[dict, int]:
        """The step's passes, retried with half the budget after an out-of-memory error."""
        import torch

        while True:
            try:
                return self.forward_backward(phase, idx, global_idx)
            except torch.OutOfMemoryError:
                self.recover_oom(step, idx, phase)

    def update(self, lr: float):
        """The optimizer step after the all-reduce; returns the gradient norm before clipping."""
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        all_reduce_grads(self.params, self.dist)
        if self.scaler:
            self.scaler.unscale_(self.opt)
        max_norm = self.cfg.train.max_grad_norm or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return norm

    def recover_oom(self, step: int, idx: list[int], phase: str) -> None:
        """Out of memory: drop this step's partial gradients, halve the token budget, try again."""
        import torch

        self.opt.zero_grad(set_to_none=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        factor = 2 if phase in PAIR_PHASES else 1
        longest = max(self.train_set[i].length * factor for i in idx)
        new = self.budget // 2
        if self.halvings >= MAX_BUDGET_HALVINGS or new < longest:
            raise TrainingError(
                f"out of GPU memory at step {step + 1} even with {self.budget} tokens per pass; lower "
                "data.max_length, turn on model.gradient_checkpointing, or close other programs using the GPU "
                "(the last checkpoint is kept)")
        self.halvings += 1
        old, self.budget = self.budget, new
        self.emit(BatchReduced(step + 1, old, new, f"out of memory: micro-batch budget {old} -> {new} tokens, "
                                                   "more accumulation keeps the same effective batch"))
