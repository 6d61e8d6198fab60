"""The persona in evaluation (issue 22.4): the held-out sample answers are asked with the run's
data.system_prompt, as the rows were trained (a recording stand-in for the model; no weights needed)."""

from __future__ import annotations

import contextlib

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine import data as D
from humanlike_tui.engine.training.heldout import HeldOut


@pytest.fixture(scope="module")
def tok():
    from humanlike_tui.engine.models.loading import load_tokenizer, resolve_model_path

    cfg = load_preset("demo")
    return load_tokenizer(cfg, resolve_model_path(cfg))


class RecordingModel:
    """Answers every prompt with EOS at once and keeps what it was asked."""

    def __init__(self, eos: int):
        self.eos, self.asked = eos, []

    def generate(self, input_ids, **kwargs):
        import torch

        self.asked.append(input_ids[0].tolist())
        return torch.cat([input_ids, torch.tensor([[self.eos]])], dim=1)


def test_sample_answers_are_asked_with_the_persona(tok):
    cfg = load_preset("demo").replace(**{"data.system_prompt": "You are Sam.", "train.sample_prompts": 1})
    model = RecordingModel(tok.eos_token_id)
    example = D.Example((1, 2), (3,), None, "hi there")
    held = HeldOut(cfg, model, tok, "cpu", contextlib.nullcontext, [example], None, None)
    assert held.sample_answers() == (("hi there", ""),)
    assert tok.decode(model.asked[0]) == "### System:\nYou are Sam.\n\n### Instruct:\nhi there\n\n### Output:\n"
