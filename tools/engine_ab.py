"""Per-step interleaved A/B of engine speed changes on the tiny model (the figures in docs/benchmarks.md).

One trainer per variant in one process; the variants take turns step by step, so drift in the
machine's load hits them alike. Each variant turns one of the engine's speed choices back:

  default    the engine as it is
  ckpt       activation checkpointing forced on
  nogelu     phi's Python gelu_new instead of the fused GELU
  nobucket   a plain shuffle instead of length bucketing
  headckpt   the lm_head always recomputed in backward (chunked checkpoint), even for small logits
  headkeep   the logits always kept (no chunked recompute), however large

Usage: python tools/engine_ab.py [--data FILE] [--rows N] [--steps N] [--threads N] [variants...]
Runs go to a temporary HUMANLIKE_TUI_HOME and are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from humanlike_tui.engine import logprobs


class ShuffledOrder(dict):
    """An order cache for data.step_indices that hands out plain shuffles instead of bucketed orders."""

    def __init__(self, n: int, seed: int):
        super().__init__()
        self.n, self.seed = n, seed

    def __contains__(self, epoch) -> bool:
        if not dict.__contains__(self, epoch):
            self.clear()
            self[epoch] = random.Random(f"{self.seed}:{epoch}").sample(range(self.n), self.n)
        return True


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("variants", nargs="*", default=["default", "ckpt", "nogelu", "nobucket", "headckpt"])
    p.add_argument("--data", default="builtin:sample")
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    os.environ.setdefault("HUMANLIKE_TUI_HOME", tempfile.mkdtemp(prefix="hlt-ab-"))

    import torch
    from transformers.activations import GELUTanh, NewGELUActivation

    from humanlike_tui.config import load_preset
    from humanlike_tui.engine.storage import runs as S
    from humanlike_tui.engine.training import run as T

    torch.set_num_threads(args.threads)
    current = [""]
    keep_small = logprobs.LOGITS_KEEP_BYTES

    original_logprobs = logprobs.token_logprobs

    def token_logprobs(hidden, head, targets):  # the headckpt variant switches the small-logits path off
        logprobs.LOGITS_KEEP_BYTES = {"headckpt": -1, "headkeep": 2**40}.get(current[0], keep_small)
        return original_logprobs(hidden, head, targets)

    logprobs.token_logprobs = token_logprobs
    cfg = load_preset("gaming-8gb").replace(**{
        "model.name": "builtin:tiny-phi", "data.source": args.data, "data.rejected_column": "",
        "data.max_rows": args.rows, "data.eval_fraction": 0.1, "train.max_steps": 10_000,
        "train.warmup_steps": 1, "train.eval_every": 0, "train.save_every": 0, "train.sample_prompts": 0})
    trainers = {}
    for v in args.variants:
        tr = T.Trainer(cfg, lambda e: None, threading.Event(), threading.Event(), S.create_run(cfg, None),
                        T.Dist(), None)
        tr.setup()
        if v == "ckpt":
            tr.model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if v == "nogelu":
            for module in list(tr.model.modules()):
                for name, child in list(module.named_children()):
                    if isinstance(child, GELUTanh):
                        setattr(module, name, NewGELUActivation())
        if v == "nobucket":
            tr.order_cache = ShuffledOrder(len(tr.lengths), cfg.train.seed)
        tr.t0 = time.perf_counter()
        tr.model.train()
        current[0] = v
        tr.train_one(0)  # warm-up, not timed
        trainers[v] = tr
    acc = {v: [0.0, 0.0, 0] for v in args.variants}
    names = list(args.variants)
    for step in range(1, args.steps + 1):
        for v in names[step % len(names):] + names[:step % len(names)]:
            tr, current[0] = trainers[v], v
            before = tr.tokens_seen
            wall, cpu = time.perf_counter(), time.process_time()
            tr.train_one(step)
            acc[v][0] += time.perf_counter() - wall
            acc[v][1] += time.process_time() - cpu
            acc[v][2] += tr.tokens_seen - before
    for v in names:
        wall, cpu, tokens = acc[v]
        print(json.dumps({"variant": v, "data": args.data, "threads": args.threads, "tokens": tokens,
                          "tokens_per_s": round(tokens / wall), "tokens_per_cpu_s": round(tokens / cpu)}))
    for tr in trainers.values():
        tr.free()
        S.delete_run(tr.run.run_id)


if __name__ == "__main__":
    main()
