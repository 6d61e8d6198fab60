"""The builtin tiny model made to write a scripted text: a hook on its output layer puts all the weight
on the script's next token, so transformers' real generate loop, stopping criteria and streamer run as
usual on a known answer. A fresh (untrained) LoRA is enough for the generator: seconds, not a training run."""

from __future__ import annotations

import contextlib

from humanlike_tui.engine.inference.generator import Generator
from tiny_run import tiny_config


def open_tiny() -> Generator:
    """The builtin tiny base with an untrained LoRA on it, as Generator.open would hold a run's."""
    from humanlike_tui.engine import models as M

    cfg = tiny_config()
    M.ensure_builtin(cfg.model.name)
    precision = M.resolve_precision(cfg, "cpu")
    base, tok = M.load_base_model(cfg, precision)
    model = M.attach_lora(cfg, base, gradient_checkpointing=False)
    model.eval()
    return Generator(model, tok, cfg, name="tiny-markers", device="cpu")


@contextlib.contextmanager
def scripted(gen: Generator, text: str):
    """Make the model write `text` token by token (then EOS), greedy, in every answer while it lasts;
    yields the script's ids and the count of forward passes of the current answer."""
    import torch

    ids = gen.tok(text, add_special_tokens=False)["input_ids"] + [gen.tok.eos_token_id]
    calls = {"n": 0}

    def force(module, inputs, output):
        k = min(calls["n"], len(ids) - 1)
        calls["n"] += 1
        forced = torch.full_like(output, -1e4)
        forced[..., -1, ids[k]] = 1e4
        return forced

    def restart(module, inputs):
        if inputs[0].shape[-1] > 1:  # a prompt, not one new token: a new answer begins the script again
            calls["n"] = 0

    handles = [gen.model.get_input_embeddings().register_forward_pre_hook(restart),
               gen.model.get_output_embeddings().register_forward_hook(force)]
    try:
        yield ids, calls
    finally:
        for handle in handles:
            handle.remove()
