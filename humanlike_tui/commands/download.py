"""`humanlike-tui download`: fetch a hub model into the Hugging Face cache before training on it.

    humanlike-tui download microsoft/phi-2 [--revision REV]

Shows the bytes, the rate and the time left; Ctrl+C cancels and keeps what was fetched, and the next
`download` (or the training run) resumes it. Only safetensors weights, configs and tokenizer files are
fetched. Exit codes: 0 done, 130 cancelled, 2 not a model id, no such model, a gated model without
`hf auth login`, no internet (each named as `train` names it), 1 another failure.
"""

from __future__ import annotations

import argparse
import threading


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="MODEL", help="a Hugging Face Hub model id, e.g. HuggingFaceTB/SmolLM2-360M-Instruct")
    parser.add_argument("--revision", metavar="REV", help="a branch, tag or commit (default: the main branch)")


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from humanlike_tui.commands.output import console
    from humanlike_tui.engine.models.download import DownloadCancelled, check_repo_id, download_model
    from humanlike_tui.formatting import size_text

    check_repo_id(args.name)  # before the progress bar: an odd id is a message, not an empty bar and then one
    out = console(stderr=True)
    stop = threading.Event()
    bar = Progress(TextColumn(f"[bold]{args.name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), console=out, transient=False)
    task = bar.add_task("download", total=None)
    last = {"line": -1}

    def progress(p) -> None:
        bar.update(task, completed=p.done_bytes, total=p.total_bytes or None)
        if not out.is_terminal:  # a log file: a line every 10% instead of a bar
            tenth = int(10 * p.done_bytes / p.total_bytes) if p.total_bytes else 0
            if tenth != last["line"] or p.finished:
                last["line"] = tenth
                eta = f", about {p.eta_s:.0f} s left" if p.eta_s else ""
                out.print(f"{args.name}: {size_text(p.done_bytes)} of {size_text(p.total_bytes)}, "
                          f"{size_text(p.bytes_per_s)}/s{eta}", highlight=False)

    try:
        with bar:
            folder = download_model(args.name, args.revision, progress=progress, stop=stop)
    except KeyboardInterrupt:
        out.print("cancelled; what was fetched is kept: the same command resumes it")
        return 130
    except DownloadCancelled as exc:
        out.print(str(exc))
        return 130
    print(folder)
    return 0
