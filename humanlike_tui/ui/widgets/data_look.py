"""A look at the chosen data: how many rows (per shape: prompt/chosen, messages, ShareGPT, preference
conversations), their token lengths against data.max_length (with the share that would be dropped or
shortened) and a few rows as turns, the learned ones marked, as `humanlike-tui data inspect` prints them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from humanlike_tui.formatting import LOSS_MARK, shapes_line, turn_lines


class LengthHistogram(PlotextPlot):
    DEFAULT_CSS = """
    LengthHistogram { height: 12; }
    """

    def show(self, lengths: list[int], max_length: int) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(f"tokens per row (red: max_length {max_length})")
        if lengths:
            plt.hist(lengths, bins=24, color="cyan")
            plt.vline(max_length, "red")
            plt.xlim(0, max(max(lengths), max_length) * 1.05)
        self.refresh()


def summary_text(preview: Any) -> Text:
    rows, dropped = preview.rows, preview.dropped_share
    text = Text()
    text.append(f"{rows:,} rows", style="bold")
    if preview.lengths:
        text.append(f", median {sorted(preview.lengths)[len(preview.lengths) // 2]} tokens")
    style = "green" if dropped == 0 else "yellow" if dropped < 0.1 else "red"
    text.append(f"; {dropped:.1%} longer than max_length {preview.max_length}", style=style)
    if dropped:
        text.append(" (dropped)", style=style)
    shortened = getattr(preview, "shortened_share", 0.0)
    if shortened:
        text.append(f"; {shortened:.1%} conversations shortened (oldest turns left out)", style="yellow")
    shapes = getattr(preview, "shapes", None)
    if shapes and set(shapes) != {"prompt_chosen"}:
        text.append(f"\n{shapes_line(shapes)}")
    return text


def turns_text(rows: list[list[Any]], width: int = 100) -> Text:
    """Rows as turns: role and text, a learned turn marked and in colour (as `data inspect` prints them)."""
    text = Text()
    text.append(f"{LOSS_MARK} = a learned turn (carries loss)\n", style="dim")
    for i, turns in enumerate(rows, 1):
        text.append(f"── row {i} ──\n", style="bold")
        for line, loss in turn_lines(turns, width):
            text.append(line + "\n", style="green" if loss else "")
    return text


class DataLook(Vertical):
    DEFAULT_CSS = """
    DataLook { height: auto; }
    DataLook #data-summary { padding: 0 1; }
    DataLook #data-examples { padding: 0 1; color: $text-muted; }
    DataLook LengthHistogram { display: none; }
    DataLook.-loaded LengthHistogram { display: block; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="data-summary")
        yield LengthHistogram(id="data-histogram")
        yield Static("", id="data-examples")

    def on_mount(self) -> None:
        self.show_note("reading the data ...")

    def show_note(self, note: str, style: str = "dim") -> None:
        self.remove_class("-loaded")
        self.query_one("#data-summary", Static).update(Text(note, style=style))
        self.query_one("#data-examples", Static).update("")

    def show(self, preview: Any) -> None:
        self.add_class("-loaded")
        self.query_one("#data-summary", Static).update(summary_text(preview))
        self.query_one(LengthHistogram).show(list(preview.lengths), preview.max_length)
        turns = getattr(preview, "turns", None)
        if turns:
            self.query_one("#data-examples", Static).update(turns_text(list(turns), max(40, self.size.width - 4)))
            return
        examples = Text()
        for i, example in enumerate(preview.examples, 1):
            examples.append(f"── example {i} ──\n", style="bold")
            examples.append(example.rstrip() + "\n")
        self.query_one("#data-examples", Static).update(examples)
