"""DPO's reference model on the same loaded base, never a second copy: the base alone (adapter disabled)
for plain DPO, or, in sft+dpo, the adapter as it was when SFT ended (DPO's reference should be the SFT
model), swapped in from a saved copy of the LoRA weights: one extra LoRA, never a second base."""

from __future__ import annotations

import contextlib
from typing import Any, Callable


class DpoReference:
    def __init__(self, model, state: dict[str, Any] | None = None):
        self.model = model
        self.state = state  # LoRA weights of the reference adapter; None = the base alone
        self.cache: dict[int, tuple[float, float]] = {}

    def context(self):
        """The model behaves as the reference inside this context."""
        if self.state is None:
            return self.model.disable_adapter()
        return self._swapped()

    @contextlib.contextmanager
    def _swapped(self):
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        current = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        set_peft_model_state_dict(self.model, self.state)
        try:
            yield
        finally:
            set_peft_model_state_dict(self.model, current)

    def snapshot(self) -> None:
        """The adapter as it is now becomes the reference (sft+dpo, when SFT ends)."""
        from peft import get_peft_model_state_dict

        self.state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        self.cache.clear()

    def logps(self, keys: list[int], exs: list, pair_logps: Callable, autocast) -> tuple[list[float], list[float]]:
        """log p_ref(chosen), log p_ref(rejected), cached per example: the reference never changes, so each
        pair costs one forward per run."""
        import torch

        todo = [(k, e) for k, e in zip(keys, exs) if k not in self.cache]
        if todo:
            was_training = self.model.training
            self.model.eval()  # no dropout in the reference
            with torch.no_grad(), self.context(), autocast():
                pc, pr, _ = pair_logps([e for _, e in todo])
            self.model.train(was_training)
            for (k, _), a, b in zip(todo, pc.tolist(), pr.tolist()):
                self.cache[k] = (a, b)
        return [self.cache[k][0] for k in keys], [self.cache[k][1] for k in keys]
