"""Live charts on textual-plotext. Each chart draws from data handed to it on the main thread and
uses its own `self.plt` (the global plotext module would be shared by every chart)."""

from __future__ import annotations

import textwrap
from typing import Sequence

from textual_plotext import PlotextPlot

from humanlike_tui.formatting import GIB

MAX_POINTS = 600  # more points than terminal cells only slows plotext down


def thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """Every k-th point, always keeping the newest, so long runs redraw as fast as short ones."""
    if not points:
        return [], []
    k = max(1, -(-len(points) // limit))
    kept = list(points[::k])
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return [p[0] for p in kept], [p[1] for p in kept]


class LossChart(PlotextPlot):
    """Train loss at every step and eval loss at each evaluation, over the run's steps."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 8; }
    """

    def on_mount(self) -> None:
        super().on_mount()
        self.show([], [], 0)

    shown_points = (0, 0)  # (train, eval) points in the last drawing, for tests and debugging

    def show(self, train: Sequence[tuple[int, float]], evals: Sequence[tuple[int, float]], total_steps: int) -> None:
        self.shown_points = (len(train), len(evals))
        plt = self.plt
        plt.clear_data()
        plt.title("loss" if train else "loss (waiting for the first step)")
        plt.xlabel("step")
        if train:
            xs, ys = thin(train)
            plt.plot(xs, ys, label="train", marker="braille", color="cyan")
        if evals:
            xs, ys = thin(evals)
            plt.plot(xs, ys, label="eval", marker="hd", color="orange")
        plt.xlim(0, max(total_steps, 1))
        self.refresh()


COMPARE_COLORS = ("cyan", "orange", "green", "magenta", "yellow", "red", "blue")
# A marker of its own for each run's train line: told apart without colour (a capture, a monochrome terminal)
COMPARE_MARKERS = ("braille", "+", "x", "o", "*", "#", "=")


def step_ticks(last_step: int, count: int = 5) -> list[int]:
    """Whole steps for the x axis ('1.0 150.8 300.5' read as if steps had fractions)."""
    if last_step <= 1:
        return [0, 1]
    return sorted({round(last_step * i / (count - 1)) for i in range(count)})


class CompareChart(PlotextPlot):
    """The loss curves of several runs over their steps, overlaid: train loss as lines, eval loss as dots."""

    DEFAULT_CSS = """
    CompareChart { height: 1fr; min-height: 8; }
    """

    shown_runs: tuple[str, ...] = ()

    def show(self, curves: dict[str, tuple[Sequence[tuple[int, float]], Sequence[tuple[int, float]]]]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("loss of the marked runs (lines: train, dots: eval)")
        plt.xlabel("step")
        self.shown_runs = tuple(curves)
        last = max((int(p[0]) for train, evals in curves.values() for p in (*train, *evals)), default=0)
        if last:
            plt.xticks(step_ticks(last))
        for i, (name, (train, evals)) in enumerate(curves.items()):
            color = COMPARE_COLORS[i % len(COMPARE_COLORS)]
            if train:
                xs, ys = thin(train)
                plt.plot(xs, ys, label=name, marker=COMPARE_MARKERS[i % len(COMPARE_MARKERS)], color=color)
            if evals:
                xs, ys = thin(evals)
                plt.scatter(xs, ys, marker="hd", color=color)
        self.refresh()


class MetricChart(PlotextPlot):
    """One figure of the run over its steps: learning rate, tokens/s, gradient norm, or DPO's reward
    margin with its accuracy on a second axis (right)."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 8; }
    """

    shown_title = ""
    shown_points = 0
    shown_note = ""  # why the chart is empty, written inside it ('' when it has points)

    def show(self, title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]], str, str]],
             total_steps: int, empty: str = "waiting for the first step") -> None:
        """series: (label, points, color, 'left' | 'right' axis). Without points, `empty` says why inside
        the box: as part of the title it made the title too long for the chart, and plotext left it out
        (an empty box with no word on why)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        plt.ylim()  # automatic again after a note (drawn on 0..1)
        drawn = [(label, points, color, side) for label, points, color, side in series if points]
        self.shown_title = title
        self.shown_points = sum(len(points) for _, points, _, _ in drawn)
        self.shown_note = "" if drawn else empty
        width = self.size.width or 80
        plt.title(title if len(title) <= width - 2 else title.split(" (")[0])  # plotext drops a title too wide
        for label, points, color, side in drawn:
            xs, ys = thin(points)
            plt.plot(xs, ys, label=label, marker="braille", color=color, yside=side)
        last = max(total_steps, 1)
        if not drawn:
            self._write_inside(empty, last / 2)
        plt.xlim(0, last)
        self.refresh()

    def _write_inside(self, note: str, middle: float) -> None:
        lines = textwrap.wrap(note, max((self.size.width or 40) - 10, 16))
        row = 1 / max((self.size.height or 12) - 5, 4)  # one text row on the 0..1 axis (less the frame)
        self.plt.ylim(0, 1)
        for i, line in enumerate(lines):
            self.plt.text(line, middle, 0.5 + (len(lines) / 2 - i - 0.5) * row, alignment="center")


class VramChart(PlotextPlot):
    """GPU memory over time: what the driver says is used (everything on the card) and what torch's
    allocator holds (this process), under the card's total as the ceiling. A CPU run shows the process's
    RAM over time instead (show_ram), titled so."""

    shown_title = ""  # the title of the last drawing, for tests

    def _title(self, title: str) -> None:
        self.shown_title = title
        self.plt.title(title)

    DEFAULT_CSS = """
    VramChart { height: 1fr; min-height: 8; }
    """

    def on_mount(self) -> None:
        super().on_mount()
        self.show([], has_gpu=True)

    def show(self, points: Sequence, *, has_gpu: bool) -> None:
        """points: VramPoint-like objects (t seconds, used, reserved, total bytes)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("seconds")
        if not points:
            self._title("VRAM GiB (waiting for a reading)" if has_gpu else "VRAM GiB (no GPU reading: training on CPU)")
            self.refresh()
            return
        total = points[-1].total / GIB
        self._title(f"VRAM GiB (total {total:.1f})")
        xs, used = thin([(p.t, p.used / GIB) for p in points])
        plt.plot(xs, used, label="used (driver)", marker="braille", color="green")
        reserved = [(p.t, p.reserved / GIB) for p in points if p.reserved is not None]
        if reserved:
            rx, ry = thin(reserved)
            plt.plot(rx, ry, label="reserved (torch)", marker="braille", color="magenta")
        plt.hline(total, "red")
        plt.ylim(0, max(total * 1.05, 0.1))
        self.refresh()

    def show_ram(self, points: Sequence) -> None:
        """Training on the CPU: this process's RAM over time (RamPoint-like: t, process, total bytes)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("seconds")
        if not points:
            self._title("process RAM GiB (training on the CPU; waiting for a reading)")
            self.refresh()
            return
        total = points[-1].total
        self._title("process RAM GiB (CPU run)" + (f" of {total / GIB:.1f} in the machine" if total else ""))
        xs, used = thin([(p.t, p.process / GIB) for p in points])
        plt.plot(xs, used, label="this process", marker="braille", color="green")
        plt.ylim(0, max(max(used) * 1.25, 0.1))
        self.refresh()
