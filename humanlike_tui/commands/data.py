"""`humanlike-tui data inspect FILE`: what training would make of a data file, without the workbench.

    humanlike-tui data inspect chats.jsonl                  rows per shape, dropped rows and why, the
                                                            first rows as turns ('*' = the turn is learned)
    humanlike-tui data inspect chats.jsonl --rows 5 --set data.loss_on=last --set data.system_prompt="..."
    humanlike-tui data inspect chats.jsonl --preset smol-cpu --tokens
                                                            also token lengths against data.max_length and
                                                            the exact text the model reads (loads the tokenizer)
    humanlike-tui data inspect builtin:chat-sample --json   one JSON object

The same look as the Config screen's data panel. Shapes are told from each row (OpenAI `messages`,
ShareGPT `conversations`, prompt/chosen/rejected, preference conversations) unless data.format sets one.
Exit codes: 0 shown, 2 unreadable or unusable data, a bad setting.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from humanlike_tui.cli import DEFAULT_PRESET, add_config_arguments, config_from_args
from humanlike_tui.formatting import LOSS_MARK, shapes_line, turn_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("inspect", help="rows per shape, dropped rows and why, the first rows as turns")
    p.add_argument("file", help="a .jsonl/.json/.csv/.parquet file, builtin:sample, builtin:chat-sample or a hub id")
    p.add_argument("--rows", type=int, default=3, metavar="N", help="how many rows to show as turns (default 3)")
    p.add_argument("--tokens", action="store_true",
                   help="count tokens with the config's model tokenizer and show the exact text (loads it)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    add_config_arguments(p)


def inspect_config(args: argparse.Namespace):
    """The config whose data settings (format, loss_on, system_prompt, template ...) apply, with the file."""
    from humanlike_tui import config as cfgmod

    cfg = config_from_args(args, default_preset=DEFAULT_PRESET if args.tokens else None)
    if cfg is None:
        cfg = cfgmod.apply_overrides(cfgmod.Config(), getattr(args, "overrides", []) or [])
    return cfg.replace(**{"data.source": args.file})


def look(cfg, rows_shown: int, tokens: bool) -> dict[str, Any]:
    """What the Config screen's data look shows, as plain data."""
    from humanlike_tui.engine import data as D

    rows, counts = D.load_rows(cfg.data, need_rejected=cfg.train.method != "sft")
    out: dict[str, Any] = {"source": cfg.data.source, "counts": counts.to_dict(),
                           "system_prompt": cfg.data.system_prompt, "loss_on": cfg.data.loss_on,
                           "rows": [{"shape": r.shape, "turns": [t.__dict__ for t in D.row_turns(r, cfg)]}
                                    for r in rows[:rows_shown]]}
    if tokens:
        from humanlike_tui.engine.models.loading import load_tokenizer, resolve_model_path

        p = D.preview(cfg, load_tokenizer(cfg, resolve_model_path(cfg)), n_examples=rows_shown)
        out["tokens"] = {"model": cfg.model.name, "max_length": p.max_length, "lengths": p.lengths,
                         "dropped_share": p.dropped_share, "shortened_share": p.shortened_share,
                         "texts": p.examples}
    return out


class _Turn:
    def __init__(self, role: str, text: str, loss: bool):
        self.role, self.text, self.loss = role, text, loss


def text_report(report: dict[str, Any], width: int) -> str:
    c = report["counts"]
    dropped = ", ".join(f"{n:,} {why}" for why, n in sorted(c["dropped"].items(), key=lambda kv: -kv[1]))
    lines = [f"{report['source']}: {c['rows_read']:,} rows read, {sum(c['shapes'].values()):,} usable "
             f"({shapes_line(c['shapes'])})" + (f"; dropped: {dropped}" if dropped else ""),
             f"persona (data.system_prompt): {report['system_prompt']!r}" if report["system_prompt"].strip()
             else "persona (data.system_prompt): none",
             "learned: " + ("every assistant turn" if report["loss_on"] == "all_assistant" else
                            "the last assistant turn") + f" (data.loss_on = {report['loss_on']}); "
             f"'{LOSS_MARK}' marks a learned turn"]
    for i, row in enumerate(report["rows"], 1):
        lines += ["", f"── row {i} ({row['shape']}) ──"]
        lines += [text for text, _ in turn_lines([_Turn(**t) for t in row["turns"]], width)]
    tok = report.get("tokens")
    if tok:
        lengths = sorted(tok["lengths"])
        median = lengths[len(lengths) // 2] if lengths else 0
        lines += ["", f"tokens ({tok['model']}): median {median}, longest {lengths[-1] if lengths else 0}, "
                      f"max_length {tok['max_length']}; {tok['dropped_share']:.1%} dropped as too long, "
                      f"{tok['shortened_share']:.1%} conversations shortened (oldest turns left out)"]
        for i, text in enumerate(tok["texts"], 1):
            lines += ["", f"── row {i} as the model reads it ──", text.rstrip()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = inspect_config(args)
    report = look(cfg, max(0, args.rows), args.tokens)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(text_report(report, min(120, shutil.get_terminal_size((100, 24)).columns)))
    return 0
