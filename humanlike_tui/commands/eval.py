"""`humanlike-tui eval`: the human-likeness scorecard of an adapter against its base model.

    humanlike-tui eval --adapter RUN [--data FILE] [--limit N] [--max-new-tokens N] [--answers OUT] [--json]

Scores the held-out rows of the run (its own eval split, recomputed exactly as training made it) or
the rows of FILE, up to --limit (200). Progress goes to stderr, so `--json` prints exactly one object on stdout.
--answers OUT writes every generated answer (prompt, side, text, tokens, stopped) as JSON lines. Exit
codes: 0 done, 2 unknown run / unusable data / an --answers path that cannot be written, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys

from humanlike_tui.cli import add_trust_argument, consent_to_remote_code
from humanlike_tui.events import Event, EvalProgress, Log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, metavar="NAME", help="the run whose adapter to score "
                        "(see `humanlike-tui adapters`)")
    parser.add_argument("--data", metavar="FILE", help="score the rows of this .jsonl/.json/.csv/.parquet file (up to "
                        "--limit) instead of the run's held-out split; picks:NAME scores your Chat picks' newest "
                        "fifth (never trained on)")
    parser.add_argument("--limit", type=_positive, default=None, metavar="N",
                        help="score at most N held-out rows (default 200)")
    parser.add_argument("--max-new-tokens", type=_positive, default=None, metavar="N",
                        help="longest generated answer (default: the run's generate.max_new_tokens)")
    parser.add_argument("--answers", metavar="OUT", help="also write every generated answer (prompt, side, text, "
                        "tokens, stopped, judge_human) to OUT as JSON lines; the card and its answers are then kept "
                        "in the run folder (the Adapters screen's scorecard opens them), even for --data")
    parser.add_argument("--json", action="store_true", help="print one JSON object with base, adapter, reference")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_trust_argument(parser)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class Progress:
    """Engine events -> one rich progress bar per stage on stderr (stdout stays clean for --json)."""

    def __init__(self, quiet: bool = False):
        from humanlike_tui.commands.output import console

        self.console = console(stderr=True)
        self.quiet = quiet
        self.progress = None
        self.tasks: dict[tuple[str, str], int] = {}

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, Log):
            self._console().print(f"[dim]{event.message}[/]", highlight=False)
        elif isinstance(event, EvalProgress):
            self._advance(event)

    def _console(self):
        return self.progress.console if self.progress else self.console

    def _advance(self, e: EvalProgress) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        if self.progress is None:
            self.progress = Bar(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console)
            self.progress.start()
        key = (e.side, e.stage)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{e.side} {e.stage}", total=e.total)
        self.progress.update(self.tasks[key], completed=e.done, total=e.total)

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def render(card) -> None:
    """The scorecard as a rich table: one row per figure, base | adapter | data chosen | data rejected."""
    from rich.table import Table

    from humanlike_tui.commands.output import console as make_console
    from humanlike_tui.records import SCORECARD_COLUMNS, scorecard_caption, scorecard_rows

    d = card.to_dict()
    table = Table(title=f"scorecard of {d['run_id']} on {d['base_model']}")
    table.add_column(SCORECARD_COLUMNS[0])
    for name in SCORECARD_COLUMNS[1:]:
        table.add_column(name, justify="right")
    for row in scorecard_rows(d):
        table.add_row(*row)
    console = make_console()
    console.print(table)
    console.print(scorecard_caption(d), highlight=False)  # not the table's caption: that wraps at its width
    for s in d["samples"]:
        console.print(f"[bold]> {s['prompt'][:100]}[/]", highlight=False)
        console.print(f"  base:    {s['base'][:160]!r}", highlight=False)
        console.print(f"  adapter: {s['adapter'][:160]!r}", highlight=False)


def run(args: argparse.Namespace) -> int:
    from humanlike_tui.engine import evaluation as evaluate
    from humanlike_tui.engine.storage import runs

    consent_to_remote_code(args, runs.get_run(args.adapter).config())  # before the model loads
    listener = Progress(quiet=args.quiet)
    try:  # Ctrl+C ends it: nothing is written, so there is nothing to save (cli.main exits 130)
        card = evaluate.scorecard(args.adapter, data=args.data, limit=args.limit or evaluate.DEFAULT_LIMIT,
                                  max_new_tokens=args.max_new_tokens, emit=listener, answers=args.answers)
    finally:
        listener.close()
    if args.json:
        print(json.dumps(card.to_dict()))
    else:
        render(card)
    sys.stdout.flush()
    return 0
