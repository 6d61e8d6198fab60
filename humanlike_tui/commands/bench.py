"""`humanlike-tui bench`: the original recipe against this engine, same samples, same process.

Prints tokens/s, seconds per sample, peak memory and held-out eval loss for both, then the ratio;
`--json` prints one object (baseline, engine, speedup, device) instead. Exit codes: 0 done,
2 bad input (model, data, too few samples), 1 failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

GIB = 2**30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from humanlike_tui.engine.bench.measure import DEFAULT_SAMPLES, DEFAULT_WARMUP

    parser.add_argument("--model", default="builtin:tiny-phi", metavar="NAME",
                        help="builtin:tiny-phi (CPU-sized), builtin:phi-2-random (phi-2's shapes, for a GPU), "
                             "a hub id or a local folder (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                        help="training samples per side, rounded up to whole engine steps (default: %(default)s)")
    parser.add_argument("--data", default="builtin:sample", metavar="FILE",
                        help="rows with prompt/chosen fields: builtin:sample or a .jsonl/.json/.csv/.parquet file")
    parser.add_argument("--warmup", type=int, default=None, metavar="STEPS",
                        help=f"optimizer steps per side left out of the timing (default: {DEFAULT_WARMUP}; "
                             "1 with --preference)")
    parser.add_argument("--lr", type=float, default=None, metavar="RATE",
                        help="the engine's learning rate (default: the recipe's 2e-4 x our 16 samples per step)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads for both sides (default: one per core); 1 is steadier on a busy machine")
    parser.add_argument("--engine-set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one engine setting for an A/B, e.g. quant.autocast=false (repeatable)")
    parser.add_argument("--engine-only", action="store_true",
                        help="skip the original recipe (no speedup): compare engine variants quickly")
    parser.add_argument("--preference", action="store_true",
                        help="preference step cost instead: our DPO, ORPO and SimPO steps (and TRL's DPOTrainer with "
                             "--sides ...,trl-dpo) on the same pairs, each in its own process")
    parser.add_argument("--sides", default="dpo,orpo,simpo", metavar="LIST",
                        help="with --preference: comma-separated, from dpo, orpo, simpo, trl-dpo (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4, metavar="N",
                        help="with --preference: optimizer steps per side, warm-up included (default: %(default)s)")
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="with --preference: settings to train with (default: demo for builtin:tiny-phi, "
                             "smol-cpu otherwise)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def max_threads() -> int:
    import os

    return max(256, 4 * (os.cpu_count() or 1))


def run(args: argparse.Namespace) -> int:
    from humanlike_tui.config import BUILTIN_MODELS
    from humanlike_tui.errors import InputError

    if args.samples < 1:
        raise InputError("--samples: must be at least 1")
    if args.threads < 0:
        raise InputError("--threads: must be 0 (one per core) or more")
    if args.threads > max_threads():
        raise InputError(f"--threads: at most {max_threads():,} here (4 per CPU core, at least 256; more threads than "
                         f"cores only slow torch down, and thousands crash it), got {args.threads:,}")
    if args.warmup is None:
        from humanlike_tui.engine.bench.measure import DEFAULT_WARMUP

        args.warmup = 1 if args.preference else DEFAULT_WARMUP
    if args.warmup < 0:
        raise InputError("--warmup: must be 0 or more")
    if args.model.startswith("builtin:") and args.model not in BUILTIN_MODELS:
        raise InputError(f"--model: unknown builtin model {args.model!r}; choose {' or '.join(BUILTIN_MODELS)}")
    from humanlike_tui.engine.bench.compare import run_bench

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.lr is not None and not 0 < args.lr <= 1:
        raise InputError("--lr: must be > 0 and <= 1")
    if args.preference:
        return run_preference(args, log)
    with contextlib.redirect_stdout(sys.stderr):  # library chatter must not mix with the table or JSON
        result = run_bench(args.model, args.samples, args.data, args.warmup, args.lr, threads=args.threads, log=log,
                           engine_overrides=tuple(args.engine_set), baseline=not args.engine_only)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


def run_preference(args: argparse.Namespace, log) -> int:
    from humanlike_tui.config import preset_names
    from humanlike_tui.engine.bench.preference import run_preference_bench
    from humanlike_tui.errors import InputError

    if args.preset is not None and args.preset not in preset_names():
        raise InputError(f"--preset: unknown preset {args.preset!r}; choose {', '.join(preset_names())}")
    sides = tuple(s.strip() for s in args.sides.split(",") if s.strip())
    with contextlib.redirect_stdout(sys.stderr):
        result = run_preference_bench(args.model, args.steps, sides, args.data, args.warmup, args.threads, args.preset,
                                      log)
    print(json.dumps(result) if args.json else format_preference_table(result))
    return 0


def format_preference_table(result: dict[str, Any]) -> str:
    """One row per side: tokens/s, s/step, tokens per CPU-second, peak RSS; then the ratios."""
    head = ["", "tokens/s", "s/step", "tok/CPU-s", "peak RSS", "grad ckpt", "reference"]
    rows = [head]
    for name, side in result["sides"].items():
        rows.append([name, f"{side['tokens_per_s']:,.1f}", f"{side['s_per_step']:.2f}",
                     f"{side['tokens_per_cpu_s']:,.1f}", _mem(side.get("peak_rss") or side.get("peak_reserved")),
                     str(side["settings"].get("grad_ckpt")), side["settings"].get("reference", "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([
        f"{result['device']}{_threads(result)}: {result['model']} ({result['preset']}) on {result['data']}, "
        f"{result['steps']} steps of {result['pairs_per_step']} pairs per side, {result['warmup_steps']} not timed",
        *lines, "ratios: " + (", ".join(f"{k} {v:.2f}x" for k, v in result["ratios"].items()) or "none")])


def _mem(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f} GiB"


def format_table(result: dict[str, Any]) -> str:
    """Both sides as rows, then the ratios."""
    b, e = result["baseline"], result["engine"]
    gpu = e.get("peak_reserved") is not None
    head = ["", "tokens/s", "s/sample", "tok/CPU-s", "eval loss"] + (["peak alloc", "peak reserved", "driver"] if gpu
                                                        else ["peak RSS"])
    rows = [head]
    for label, side in (("original recipe", b), ("engine", e)):
        if side is None:  # --engine-only
            continue
        mem = ([_mem(side["peak_allocated"]), _mem(side["peak_reserved"]), _mem(side["peak_driver"])] if gpu
               else [_mem(side["peak_rss"])])
        rows.append([label, f"{side['tokens_per_s']:,.0f}", f"{side['s_per_sample']:.4f}",
                     f"{side.get('tokens_per_cpu_s', 0):,.0f}", f"{side['eval_loss']:.4f}"]
                    + mem)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    settings = ", ".join(f"{k} {v}" for k, v in e["settings"].items() if k not in ("run_id", "device") and v is not None)
    return "\n".join([
        f"{result['device']}{_threads(result)}: {result['model']} on {result['data']}, {result['samples']} samples per side, "
        f"{result['warmup_steps']} warm-up step{'s' if result['warmup_steps'] != 1 else ''} not timed",
        *lines,
        (f"speedup {result['speedup']:.2f}x tokens/s; eval loss {result['eval_loss_delta']:+.4f} (engine - recipe)"
         if b is not None else "original recipe skipped (--engine-only): no speedup"),
        f"engine: {settings}" + (f"; changed: {', '.join(result['engine_overrides'])}"
                                 if result.get("engine_overrides") else ""),
    ])


def _threads(result: dict[str, Any]) -> str:
    n = result.get("threads")
    return f", {n} torch thread{'s' if n != 1 else ''}" if n else ""
