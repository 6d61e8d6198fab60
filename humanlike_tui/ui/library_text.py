"""The Adapters screen's text, pure so it is tested without a terminal: the table's cells, the
highlighted run's details, its last scorecard and the one-line summary of the library."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from humanlike_tui.formatting import date_text, duration, size_text
from humanlike_tui.records import SCORECARD_COLUMNS, AdapterInfo, scorecard_caption, scorecard_rows

# Method and folders are in the details pane. (title, widest it gets, drop rank): the name takes the
# spare width; on a narrow screen the columns with the highest drop rank go first, so the name keeps
# room to tell runs apart (two runs of a day differ only in their time and their end).
COLUMN_SPECS = (("Name", 0, 0), ("State", 14, 0), ("Base model", 18, 3), ("Data", 16, 5), ("Steps", 9, 2),
                ("Eval loss", 9, 4), ("Started", 16, 1), ("Size", 8, 6))
COLUMNS = tuple(title for title, _, _ in COLUMN_SPECS)
DROP_ORDER = tuple(title for title, _, rank in sorted(COLUMN_SPECS, key=lambda spec: -spec[2]) if rank)
NAME_MIN = 30  # a stamped name (20261202-133012-tiny-phi-sft) whole, where the screen allows it
CELL_PAD = 2  # DataTable's cell padding, one cell each side
SCROLLBAR = 2
INCOMPLETE_MARK = "⚠"
STATE_STYLE = {"finished": "green", "running": "bold cyan", "paused": "yellow", "stopped": "yellow",
               "interrupted": "red", "failed": "bold red"}


def run_size(n: int | None) -> str:
    """A run's size on disk; nothing yet (an adapter not written) is a dash, like unknown."""
    return size_text(n or None)


def tail(text: str, width: int) -> str:
    """The end of a long id or path ('…-DPO-Dataset'): the end is what tells them apart."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def head(text: str, width: int) -> str:
    """A run name cut at its end ('20261202-133012-tiny-ph…'): its start, the date and time, tells runs apart."""
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def state_cell(info: AdapterInfo) -> Text:
    if info.complete or info.status == "running":
        return Text(info.status, style=STATE_STYLE.get(info.status, ""))
    return Text(f"{INCOMPLETE_MARK} {info.status}", style=STATE_STYLE.get(info.status, ""))


def full_cells(info: AdapterInfo) -> dict[str, Text | str]:
    steps = f"{info.steps if info.steps is not None else '?'}/{info.max_steps or '?'}"
    loss = f"{info.final_eval_loss:.4f}" if info.final_eval_loss is not None else "—"
    return {"Name": info.name, "State": state_cell(info), "Base model": info.base_model, "Data": info.data_source,
            "Steps": steps, "Eval loss": loss, "Started": date_text(info.created, with_time=True),
            "Size": run_size(info.size_bytes)}


def table_layout(infos: list[AdapterInfo], width: int) -> list[tuple[str, int]]:
    """(title, width) of the columns shown in a table `width` cells wide: each column as wide as its
    widest cell (up to its cap), the name the rest; columns drop (highest rank first) while the name
    would get less than it needs."""
    cells = [full_cells(i) for i in infos]

    def natural(title: str, cap: int) -> int:
        widest = max([len(title)] + [len(str(c[title])) for c in cells])
        return min(widest, cap) if cap else widest

    widths = {title: natural(title, cap) for title, cap, _ in COLUMN_SPECS}
    shown = list(COLUMNS)

    def spare() -> int:  # what is left for the name
        return width - SCROLLBAR - CELL_PAD - sum(widths[t] + CELL_PAD for t in shown if t != "Name")

    for title in DROP_ORDER:
        if spare() >= min(widths["Name"], NAME_MIN):
            break
        shown.remove(title)
    name_width = max(spare(), min(12, widths["Name"]))  # the name takes all the spare width
    return [(t, name_width if t == "Name" else widths[t]) for t in shown]


MARK = "● "  # before the name of a run marked for comparison


def row_cells(info: AdapterInfo, layout: list[tuple[str, int]] | None = None, marked: bool = False) -> tuple:
    """The row's cells for `layout` (every column at its cap without one): names cut at their end, model
    ids and data sources at their start (their end tells them apart); a marked run's name has MARK."""
    layout = layout or [(title, cap or 26) for title, cap, _ in COLUMN_SPECS]
    full = full_cells(info)
    out: list[Text | str] = []
    for title, width in layout:
        cell = full[title]
        if title == "Name":
            cell = head((MARK if marked else "") + str(cell), width)
        elif title in ("Base model", "Data"):
            cell = tail(str(cell), width)
        out.append(cell)
    return tuple(out)


def details_text(info: AdapterInfo, details: dict[str, Any] | None) -> Text:
    """The highlighted run: what it is, how it went, what can be done with it."""
    text = Text()
    text.append(f"{info.name}\n", style="bold")
    text.append(f"{info.state}", style=STATE_STYLE.get(info.status, ""))
    if info.error:
        text.append(f" · {info.error}", style="red")
    text.append(f"\nbase {info.base_model} · data {info.data_source} · {info.method}, {info.steps or 0}/"
                f"{info.max_steps or '?'} steps · started {date_text(info.created, True)}")
    losses = []
    if info.final_loss is not None:
        losses.append(f"train loss {info.final_loss:.4f}")
    if info.final_eval_loss is not None:
        losses.append(f"eval loss {info.final_eval_loss:.4f}")
    if losses:
        text.append(" · " + ", ".join(losses))
    text.append(f"\nfolder {info.run_dir} · {run_size(info.size_bytes)} (adapter "
                f"{run_size(info.adapter_bytes)})")
    if details:
        text.append(_details_lines(details))
    if info.can_chat:
        text.append("\nenter/o: chat with it · x: export a merged model", style="dim")
    elif info.can_resume:
        start = f"from step {info.last_checkpoint}" if info.last_checkpoint else "from the start (no checkpoint yet)"
        text.append(f"\nincomplete: u resumes it {start} · d deletes it", style="dim")
    elif info.status != "running":
        text.append("\nincomplete, with no checkpoint to resume from: d deletes it", style="dim")
    return text


def _details_lines(details: dict[str, Any]) -> str:
    lines = []
    cfg = details.get("config") or {}
    if cfg:
        lora, train, data = cfg.get("lora", {}), cfg.get("train", {}), cfg.get("data", {})
        lines.append(f"LoRA r {lora.get('r')} alpha {lora.get('alpha')} · lr {train.get('learning_rate')} · "
                     f"batch {train.get('batch_size')}x{train.get('grad_accum')} · template {data.get('template')} · "
                     f"quant {cfg.get('quant', {}).get('mode')}")
    run = []
    data_counts = details.get("data") or {}
    if data_counts.get("train_rows"):
        run.append(f"{data_counts['train_rows']} train / {data_counts.get('eval_rows', 0)} eval rows")
    if details.get("duration_s"):
        seconds = details["duration_s"]  # a run under a minute in seconds: a 12 s run read '0 min'
        run.append(f"{seconds / 60:.0f} min" if seconds >= 60 else duration(seconds))
    if details.get("energy_wh"):
        run.append(f"{details['energy_wh']:.1f} Wh")
    if details.get("device"):
        run.append(str(details["device"]))
    if details.get("checkpoints"):
        run.append("checkpoints at step " + ", ".join(map(str, details["checkpoints"])))
    if run:
        lines.append(" · ".join(run))
    return "".join("\n" + line for line in lines)


def scorecard_table(card: dict[str, Any]) -> Table:
    """The whole scorecard as `humanlike-tui eval` prints it: every figure, base → adapter, beside the
    data's own chosen and rejected answers (records.scorecard_rows, the one source of both)."""
    title = "scorecard: base → adapter" + (" · a: every answer" if card.get("answers_file") else "")
    table = Table(title=title, caption=scorecard_caption(card), title_justify="left",
                  caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    table.add_column(SCORECARD_COLUMNS[0], ratio=1)  # the label wraps on a narrow screen; figures never
    for name in SCORECARD_COLUMNS[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    for label, base, adapter, chosen, rejected in scorecard_rows(card):
        table.add_row(label, base, Text(adapter, style="bold"), chosen, rejected)
    return table


def library_summary(infos: list[AdapterInfo]) -> str:
    incomplete = [i for i in infos if not i.complete and i.status != "running"]
    text = f"{len(infos)} run{'s' if len(infos) != 1 else ''}"
    if incomplete:
        text += (f" · {INCOMPLETE_MARK} {len(incomplete)} incomplete (no finished adapter): u resumes one from its "
                 "last checkpoint, d deletes it")
    return text
