"""`humanlike-tui adapters`: the runs and adapters in the store.

    humanlike-tui adapters list [--json]        every run, newest first, finished or not
    humanlike-tui adapters show NAME [--json]   one run in detail
    humanlike-tui adapters rename OLD NEW
    humanlike-tui adapters delete NAME [--yes]  asks first on a terminal; scripts pass --yes
    humanlike-tui adapters export NAME DIR [--merge-into trained|original] [--dtype auto|float32|bfloat16|float16]
                                           [--format safetensors|gguf] [--quant f16|q8_0|...] [--force]

`list --json` prints a JSON list, one object per run (newest first) with these keys: name, status
(finished | paused | stopped | failed | running | interrupted), complete (has a finished adapter),
state (a short label saying what an incomplete run needs), can_chat, can_resume, base_model,
data_source, method, steps, max_steps, final_loss, final_eval_loss (null when unknown), created and
finished (unix time) with created_iso/finished_iso, size_bytes (the whole run folder),
adapter_bytes, last_checkpoint (its step), run_dir, adapter_dir, error (why a failed run failed).

Exit codes: 0 done, 2 unknown name, invalid name, refused delete or export target, 1 export failure.
"""

from __future__ import annotations

import argparse
import json
import sys

from humanlike_tui.cli import add_trust_argument, consent_to_remote_code
from humanlike_tui.errors import ConfigError, InputError
from humanlike_tui.formatting import date_text, size_text
from humanlike_tui.records import DEFAULT_GGUF_QUANT, EXPORT_FORMATS, EXPORT_MERGE_INTO, GGUF_QUANTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="every run with base model, data, steps, eval loss, date and size")
    p.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    p = sub.add_parser("show", help="one run in detail")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("rename", help="rename a run (its folder)")
    p.add_argument("old")
    p.add_argument("new")
    p = sub.add_parser("delete", help="delete a run with its adapter and checkpoints")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p = sub.add_parser("export", help="write base + adapter merged into one model to a new folder: safetensors, or "
                       "one GGUF file with an Ollama Modelfile (--format gguf)")
    p.add_argument("name")
    p.add_argument("dir", help="folder to create (must not exist, or be empty, or hold an earlier export with --force)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights dtype; auto = the base checkpoint's own")
    p.add_argument("--force", action="store_true", help="replace an earlier export in DIR")
    add_trust_argument(p)
    p.add_argument("--merge-into", dest="merge_into", default="trained", choices=tuple(EXPORT_MERGE_INTO),
                   help="; ".join(f"{k}{' (default)' if k == 'trained' else ''}: {v}"
                                  for k, v in EXPORT_MERGE_INTO.items()))
    p.add_argument("--format", dest="fmt", default="safetensors", choices=tuple(EXPORT_FORMATS),
                   help="; ".join(f"{k}: {v}" for k, v in EXPORT_FORMATS.items()))
    p.add_argument("--quant", default=None, choices=GGUF_QUANTS,  # None: not given (refused without gguf)
                   help=f"GGUF weight type (with --format gguf; default {DEFAULT_GGUF_QUANT})")


def table_rows(infos) -> list[list[str]]:
    rows = [["NAME", "STATE", "BASE MODEL", "DATA", "METHOD", "STEPS", "EVAL LOSS", "DATE", "SIZE"]]
    for a in infos:
        steps = f"{a.steps if a.steps is not None else '?'}/{a.max_steps or '?'}"
        loss = f"{a.final_eval_loss:.4f}" if a.final_eval_loss is not None else "-"
        date = date_text(a.created, with_time=True, unknown="?")
        rows.append([a.name, a.state, a.base_model, a.data_source, a.method, steps, loss, date, size_text(a.size_bytes)])
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def do_list(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import library
    from humanlike_tui.paths import runs_dir

    infos = library.list_adapters()
    if args.json:
        print(json.dumps([a.to_dict() for a in infos], ensure_ascii=False))
    elif not infos:
        print(f"no runs yet in {runs_dir()}; train one: humanlike-tui train --preset demo")
    else:
        print_table(table_rows(infos))
    return 0


def do_show(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import library

    details = library.run_details(args.name)
    if args.json:
        print(json.dumps(details, ensure_ascii=False, default=str))
        return 0
    info = details["info"]
    for key in ("name", "state", "base_model", "data_source", "method", "steps", "max_steps", "final_loss",
                "final_eval_loss", "created_iso", "finished_iso", "size_bytes", "last_checkpoint", "run_dir",
                "adapter_dir", "error"):
        if info.get(key) not in (None, ""):
            print(f"{key:16} {show_value(key, info[key])}")
    if details["checkpoints"]:
        print(f"{'checkpoints':16} steps {', '.join(map(str, details['checkpoints']))}")
    return 0


def show_value(key: str, value) -> str:
    """A value of `adapters show` as a person reads it: losses to 4 significant digits (as the progress
    line shows them; --json keeps them whole)."""
    if key in ("final_loss", "final_eval_loss") and isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def do_rename(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import runs as store

    moved = store.rename_run(args.old, args.new)
    print(f"renamed {args.old} -> {moved.run_id}")
    return 0


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise InputError("refusing to delete without confirmation: stdin is not a terminal; pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def do_delete(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import library
    from humanlike_tui.engine.storage import runs as store

    info = library.get_adapter(args.name)  # a clear error for an unknown name before asking anything
    if not args.yes and not confirm(f"delete run {info.name} ({info.state}, {size_text(info.size_bytes)})?"):
        print("not deleted")
        return 0
    store.delete_run(info.name)
    print(f"deleted {info.name}")
    return 0


def do_export(args: argparse.Namespace) -> int:
    def log(message: str) -> None:
        print(message, file=sys.stderr)

    from humanlike_tui.engine.storage import runs as store

    if args.quant is not None and args.fmt != "gguf":  # else silently ignored: a float32 folder the user did not ask for
        raise ConfigError(f"--quant {args.quant}: only a GGUF export is quantized; add --format gguf, or leave "
                          "--quant out (a safetensors export takes --dtype)")
    consent_to_remote_code(args, store.get_run(args.name).config())  # both formats load the base
    if args.fmt == "gguf":
        from humanlike_tui.engine.storage import gguf_export

        path = gguf_export.export_gguf(args.name, args.dir, quant=args.quant or DEFAULT_GGUF_QUANT, merge_into=args.merge_into,
                                       overwrite=args.force, log=log)
        print(f"exported {args.name} (merged into the {args.merge_into} base) to {path}")
        print(f"Ollama: cd {path.parent} && ollama create {args.name} -f Modelfile && ollama run {args.name}")
        return 0
    from humanlike_tui.engine.storage import export as export_mod

    out = export_mod.export_merged(args.name, args.dir, dtype=args.dtype, overwrite=args.force,
                                   merge_into=args.merge_into, log=log)
    print(f"exported {args.name} (merged into the {args.merge_into} base) to {out}")
    return 0


ACTIONS = {"list": do_list, "show": do_show, "rename": do_rename, "delete": do_delete, "export": do_export}


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)
