"""`humanlike-tui picks`: the preference collections picked on the Chat screen.

    humanlike-tui picks list [--json]                 every collection with its count, newest first
    humanlike-tui picks show NAME [--json] [--last N] the picks of one collection, oldest first
    humanlike-tui picks export NAME FILE [--part all|train|held-out] [--force]
                                                      TRL's preference shape, one JSON object per line
    humanlike-tui picks delete NAME [--yes]           asks first on a terminal; scripts pass --yes

`export` writes prompt/chosen/rejected strings when every pick is single-turn, else TRL's conversational
shape (prompt = the messages so far, chosen/rejected = one assistant message each); both load with
`datasets.load_dataset("json", data_files=FILE)` and go to TRL's DPOTrainer unchanged. FILE `-` is stdout.
Train on a collection with `--set data.source=picks:NAME` (the newest fifth is held out for `eval --picks`).

Exit codes: 0 done, 2 unknown or invalid name, existing FILE without --force, refused delete.
"""

from __future__ import annotations

import argparse
import json
import sys

from humanlike_tui.errors import InputError
from humanlike_tui.formatting import date_text

PARTS = ("all", "train", "held-out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="every collection with its number of picks")
    p.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    p = sub.add_parser("show", help="the picks of one collection")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="the saved rows, one JSON object per line")
    p.add_argument("--last", type=int, default=0, metavar="N", help="only the newest N picks")
    p = sub.add_parser("export", help="write a collection in TRL's preference shape (.jsonl)")
    p.add_argument("name")
    p.add_argument("file", help="the .jsonl file to write ('-' = stdout)")
    p.add_argument("--part", default="all", choices=PARTS,
                   help="all picks (default), the trainable older four fifths, or the held-out newest fifth")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p = sub.add_parser("delete", help="delete a collection")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask")


def _warn_damaged(found) -> None:
    if found.damaged:
        print(f"warning: {found.damaged_note()}", file=sys.stderr)


def do_list(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import picks as P

    infos = P.list_collections()
    if args.json:
        print(json.dumps([c.__dict__ | {"held_out": P.held_out_count(c.count)} for c in infos], ensure_ascii=False))
        return 0
    if not infos:
        print(f"no picks yet in {P.picks_dir()}; on the Chat screen, after both answers, press the pick keys "
              "(shown in the footer)")
        return 0
    rows = [["NAME", "PICKS", "HELD OUT", "MULTI-TURN", "DAMAGED", "NEWEST"]]
    for c in infos:
        rows.append([c.name, str(c.count), str(P.held_out_count(c.count)), str(c.multi_turn), str(c.damaged),
                     date_text(c.newest, with_time=True, unknown="-")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def _cut(text: str, n: int = 200) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def do_show(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import picks as P

    found = P.read_picks(args.name)
    _warn_damaged(found)
    rows = sorted(found.rows, key=lambda r: r["time"])
    _, held = P.split_by_time(rows)
    held_ids = {r["id"] for r in held if "id" in r}
    rows = rows[-args.last:] if args.last > 0 else rows
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return 0
    for r in rows:
        mark = " · held out" if r.get("id") in held_ids else ""
        turns = len([m for m in r.get("history", []) if m["role"] == "user"])
        print(f"{date_text(r['time'], with_time=True)} · {r.get('adapter') or '?'} · chosen: {r['chosen_by']}, "
              f"rejected: {r['rejected_by']}" + (f" · {turns} earlier turns" if turns else "") + mark)
        print(f"  you:      {_cut(r['prompt'])}")
        print(f"  chosen:   {_cut(r['chosen'])}")
        print(f"  rejected: {_cut(r['rejected'])}")
    print(f"{found.count} picks in {found.path} ({len(held)} held out: the newest fifth)")
    return 0


def do_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from humanlike_tui.engine.storage import picks as P
    from humanlike_tui.fileio import atomic_write_text

    found = P.read_picks(args.name)
    _warn_damaged(found)
    train, held = P.split_by_time(found.rows)
    rows = {"all": sorted(found.rows, key=lambda r: r["time"]), "train": train, "held-out": held}[args.part]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in P.export_rows(rows))
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    target = Path(args.file).expanduser()
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name, e.g. {target / (args.name + '.jsonl')}")
    if target.exists() and not args.force:
        raise InputError(f"{target} exists; pass --force to replace it or choose another name")
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise InputError(f"cannot write {target} ({exc.strerror or exc}); check the folder") from None
    shape = "conversational" if any(P.is_multi_turn(r) for r in rows) else "prompt/chosen/rejected"
    print(f"wrote {len(rows)} picks ({args.part}, {shape}) to {target}")
    return 0


def do_delete(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.storage import picks as P

    found = P.read_picks(args.name)  # a clear error for an unknown name before asking anything
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("refusing to delete without confirmation: stdin is not a terminal; pass --yes")
        if input(f"delete picks collection {found.name} ({found.count} picks)? [y/N] ").strip().lower() not in (
                "y", "yes"):
            print("not deleted")
            return 0
    P.delete_collection(found.name)
    print(f"deleted {found.name} ({found.count} picks)")
    return 0


ACTIONS = {"list": do_list, "show": do_show, "export": do_export, "delete": do_delete}


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)
