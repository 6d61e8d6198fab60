"""Evaluation while training, on the run's held-out rows: loss on `chosen`, the two preference figures on
the pairs, and greedy sample answers to a few fixed prompts to watch the style change.

Two accuracies, named apart on purpose:
- `eval_logp_accuracy`: share of pairs where the model gives `chosen` the higher mean log-prob per token
  (length-normalised; the scorecard's `preference_accuracy` is the same measure);
- `eval_reward_accuracy` (DPO runs): share of pairs where DPO's implicit reward, beta * (log p - log p_ref),
  is higher for `chosen`; the training steps report the same on their own pairs as `reward_accuracy`.
"""

from __future__ import annotations

from typing import Callable

from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine import logprobs as L
from humanlike_tui.engine.training.reference import DpoReference
from humanlike_tui.engine.training.schedule import pack_micro_batches
from humanlike_tui.engine.inference.streaming import cut_answer_text


class HeldOut:
    def __init__(self, cfg: Config, model, tok, device, autocast: Callable, eval_set: list[D.Example],
                 pair_logps: Callable, reference: DpoReference | None):
        self.cfg, self.model, self.tok, self.device, self.autocast = cfg, model, tok, device, autocast
        self.eval_set, self.pair_logps, self.reference = eval_set, pair_logps, reference

    def evaluate(self, budget: int, samples: bool) -> tuple[float, dict[str, float], tuple[tuple[str, str], ...]]:
        """(loss on chosen per answer token, preference figures, sample answers); NaN loss with no rows."""
        import torch

        exs = self.eval_set[: self.cfg.train.eval_max_rows]
        if not exs:
            return float("nan"), {}, ()
        was_training = self.model.training
        self.model.eval()
        metrics: dict[str, float] = {}
        with torch.no_grad(), self.autocast():
            total, count = 0.0, 0
            for mb in pack_micro_batches([e.length for e in exs], budget):
                batch = [exs[j] for j in mb]
                ids, labels, att = D.pad_batch([D.sft_tensors(e, False) for e in batch], self.tok.pad_token_id)
                logp, _ = L.answer_logprobs(self.model, ids, labels, att, self.device)
                total += float(-logp.sum())
                count += int(logp.numel())
            pairs = [e for e in exs if e.rejected_ids is not None]
            if pairs:
                metrics = self.preference_metrics(pairs, budget)
        answers = self.sample_answers() if samples else ()
        self.model.train(was_training)
        return total / max(1, count), metrics, answers

    def preference_metrics(self, pairs: list[D.Example], budget: int) -> dict[str, float]:
        wins, margin, reward_wins = 0, 0.0, 0
        dpo = self.reference is not None and self.cfg.train.method != "sft"
        for mb in pack_micro_batches([2 * e.length for e in pairs], budget):
            batch = [pairs[j] for j in mb]
            pc, pr, _ = self.pair_logps(batch)
            pc, pr = pc.tolist(), pr.tolist()
            if dpo:  # eval pairs are cached under negative keys, apart from the training rows
                keys = [-1 - pairs.index(e) for e in batch]
                rc, rr = self.reference.logps(keys, batch, self.pair_logps, self.autocast)
                reward_wins += sum((a - ra) > (b - rb) for a, b, ra, rb in zip(pc, pr, rc, rr))
            for e, a, b in zip(batch, pc, pr):
                d = a / len(e.chosen_ids) - b / len(e.rejected_ids or (1,))
                wins += d > 0
                margin += d
        out = {"eval_logp_accuracy": wins / len(pairs), "eval_logp_margin": margin / len(pairs)}
        if dpo:
            out["eval_reward_accuracy"] = reward_wins / len(pairs)
        return out

    def sample_answers(self) -> tuple[tuple[str, str], ...]:
        """Greedy answers to a few fixed held-out prompts, to watch the style change while training."""
        import torch

        template = D.resolve_template(self.cfg.data.template, self.tok)
        n = self.cfg.train.sample_prompts
        prompts = list(dict.fromkeys(e.prompt for e in self.eval_set))[:n]
        out = []
        max_new = min(self.cfg.generate.max_new_tokens, 96)
        for prompt in prompts:
            text = D.format_prompt(prompt, self.cfg.data.template, self.tok, self.cfg.data.system_prompt)
            enc = self.tok(text, return_tensors="pt", add_special_tokens=False).to(self.device)
            with torch.no_grad(), self.autocast():
                ids = self.model.generate(**enc, max_new_tokens=max_new, do_sample=False, use_cache=True,
                                          pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            answer = self.tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.append((prompt, cut_answer_text(answer, template)))
        return tuple(out)
