"""A look at the chosen data: how many rows, their token lengths against data.max_length (with the
share that would be dropped) and a few examples exactly as the model will see them."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot


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
        examples = Text()
        for i, example in enumerate(preview.examples, 1):
            examples.append(f"── example {i} ──\n", style="bold")
            examples.append(example.rstrip() + "\n")
        self.query_one("#data-examples", Static).update(examples)
