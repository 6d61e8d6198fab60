"""Train: the live view of a run. Reads the RunTracker the app fills from engine events; redraws
at most a few times a second (the app batches), so a fast trainer cannot flood the terminal."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Label, ProgressBar, Static, Tab, Tabs

from humanlike_tui.formatting import duration
from humanlike_tui.ui import format as fmt
from humanlike_tui.ui.run_state import RunTracker
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.charts import LossChart, MetricChart, VramChart
from humanlike_tui.ui.widgets.flow_log import FlowLog
from humanlike_tui.ui.palette import ScreenCommands
from humanlike_tui.ui.widgets.footer import NAVIGATION, WorkbenchFooter

STATUS_STYLE = {"idle": "dim", "starting": "bold cyan", "training": "bold green", "stopping": "bold yellow",
                "pausing": "bold yellow", "paused": "bold yellow", "stopped": "bold yellow",
                "finished": "bold green", "failed": "bold red"}

# The charts beside the loss, in the order `c` cycles them.
CHARTS = (("memory", "memory"), ("lr", "learning rate"), ("speed", "tokens/s"), ("grad", "grad norm"),
          ("reward", "DPO reward"))

# Which button each status allows: the same rule as the app's check_action for the keys.
BUTTONS = {"new": "app.start_training", "stop": "app.stop_training", "pause": "app.pause_training",
           "resume": "app.resume_training", "earlier": "app.resume_earlier"}


def status_text(t: RunTracker) -> Text:
    text = Text()
    text.append(f" {t.status.upper()} ", style=STATUS_STYLE.get(t.status, "bold") + " reverse")
    if t.run_id:
        text.append(f" run {t.run_id}")
    if t.method:
        text.append(f" · {t.method}{'/' + t.phase if t.phase and t.phase != t.method else ''}")
    if t.device:
        text.append(f" · {t.device}")
    return text


def stats_text(t: RunTracker, price_per_kwh: float) -> Text:
    parts = [f"elapsed {duration(t.elapsed_s)}", f"ETA {duration(t.eta_s)}",
             f"lr {fmt.learning_rate(t.lr)}", f"{fmt.rate(t.tokens_per_s)} tok/s"]
    if t.train:
        parts.append(f"loss {t.train[-1][1]:.3f}")
    if t.evals:
        parts.append(f"eval {t.evals[-1][1]:.3f}")
    if t.has_gpu or t.energy.wh:
        parts.append(f"{t.energy.wh:.2f} Wh ≈ {t.energy.cost(price_per_kwh):.4f} at {price_per_kwh:g}/kWh")
    elif t.device:
        parts.append("energy: no power reading on CPU")
    return Text(" · ".join(parts))


def idle_hint(t: RunTracker) -> str:
    if t.status == "idle":
        return "No run yet: press n (or Start on the Config screen, F2); e resumes an earlier run."
    if t.status == "failed":
        return f"Failed: {t.failure}"
    if t.status == "paused":
        freed = "GPU memory" if t.has_gpu else "memory"
        return f"Paused: {freed} freed, checkpoint saved. Press r to resume exactly where it stopped."
    if t.status == "stopped" and not t.checkpoint:
        return "Stopped before the first step, while loading: nothing to save. n starts a new run."
    if t.status == "stopped":
        return f"Stopped with a checkpoint ({t.checkpoint}). r resumes it, n starts a new run."
    if t.status == "finished":
        return f"Finished. Adapter: {t.adapter_dir}"
    return ""


class TrainScreen(Screen):
    SUB_TITLE = "Train"
    FOOTER_KEYS = ("app.start_training", "app.stop_training", "app.pause_training", "show_view('log')",
                   "show_view('charts')", NAVIGATION, "app.resume_training", "next_chart",
                   "app.resume_earlier")  # most used first: what the footer keeps at 80 columns
    COMMANDS = {ScreenCommands}
    BINDINGS = [
        Binding("n", "app.start_training", "New run"),
        Binding("s", "app.stop_training", "Stop"),
        Binding("p", "app.pause_training", "Pause"),
        Binding("r", "app.resume_training", "Resume"),
        Binding("e", "app.resume_earlier", "Earlier run"),
        Binding("c", "next_chart", "Chart", tooltip="The chart beside the loss: memory, learning rate, tokens/s, "
                "gradient norm, DPO reward"),
        # Below 32 rows the charts and the answers/log panes take turns (check_action hides these elsewhere):
        # all four at once left 3-4 rows per chart at 80x24.
        Binding("v", "show_view('log')", "Log", tooltip="Show the answers at each evaluation and the log"),
        Binding("v", "show_view('charts')", "Charts", tooltip="Show the charts again"),
    ]
    DEFAULT_CSS = """
    TrainScreen #train-head { height: auto; padding: 0 1; }
    TrainScreen #progress-row { height: 1; }
    TrainScreen #status { width: auto; max-width: 70%; margin-right: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen ProgressBar { width: 1fr; }
    TrainScreen ProgressBar Bar { width: 1fr; }
    TrainScreen #step-label { width: auto; margin-left: 2; }
    TrainScreen #hint { color: $text-warning; height: auto; }
    TrainScreen #charts { height: 1fr; min-height: 10; }
    TrainScreen #chart-side { width: 1fr; }
    TrainScreen #chart-tabs { height: 2; }
    TrainScreen #metric-chart { display: none; }
    TrainScreen.-metric #metric-chart { display: block; }
    TrainScreen.-metric #vram-chart { display: none; }
    TrainScreen #bottom { height: 1fr; }
    TrainScreen #bottom > Vertical { width: 1fr; }
    TrainScreen .pane-title { text-style: bold; color: $text-accent; padding: 0 1; }
    TrainScreen FlowLog { height: 1fr; padding: 0 1; background: $surface; }
    TrainScreen #buttons { height: auto; padding: 0 1; }
    TrainScreen #buttons Button { margin-right: 1; min-width: 0; width: auto; }
    TrainScreen.-short #charts { min-height: 8; }
    TrainScreen.-short #bottom { display: none; }
    TrainScreen.-short.-log-view #bottom { display: block; }
    TrainScreen.-short.-log-view #charts { display: none; }
    TrainScreen.-short LossChart, TrainScreen.-short VramChart { min-height: 6; }
    """

    def __init__(self, state: WorkbenchState) -> None:
        super().__init__()
        self.state = state
        self._drawn_version = -1
        self._log_shown = 0
        self._samples_shown = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="train-head"):
            with Horizontal(id="progress-row"):
                yield Static("", id="status")
                yield ProgressBar(total=self.state.config.train.max_steps, show_eta=False, id="progress")
                yield Static("", id="step-label")
            yield Static("", id="stats")
            yield Static("", id="hint")
        with Horizontal(id="charts"):
            yield LossChart(id="loss-chart")
            with Vertical(id="chart-side"):
                yield Tabs(*[Tab(title, id=f"chart-{key}") for key, title in CHARTS], id="chart-tabs")
                yield VramChart(id="vram-chart")
                yield MetricChart(id="metric-chart")
        with Horizontal(id="bottom"):
            with Vertical():
                yield Label("Answers at each evaluation", classes="pane-title")
                yield FlowLog(id="samples")
            with Vertical():
                yield Label("Log (+mm:ss since the app started)", classes="pane-title")
                yield FlowLog(id="log")
        with Horizontal(id="buttons"):
            yield Button("New run", id="new", variant="success", compact=True)
            yield Button("Stop", id="stop", variant="error", compact=True)
            yield Button("Pause", id="pause", variant="warning", compact=True)
            yield Button("Resume", id="resume", variant="primary", compact=True)
            yield Button("Earlier run ...", id="earlier", compact=True)
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.refresh_view()

    @property
    def chart(self) -> str:
        active = self.query_one("#chart-tabs", Tabs).active or "chart-memory"
        return active.removeprefix("chart-")

    def action_next_chart(self) -> None:
        keys = [key for key, _ in CHARTS]
        self.query_one("#chart-tabs", Tabs).active = f"chart-{keys[(keys.index(self.chart) + 1) % len(keys)]}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        self.set_class(self.chart != "memory", "-metric")
        self._drawn_version = -1  # draw the chosen chart now
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_view":  # only where the panes take turns; v names the one it shows
            return self.has_class("-short") and (parameters[0] == "log") != self.has_class("-log-view")
        return True

    def action_show_view(self, view: str) -> None:
        self.set_class(view == "log", "-log-view")
        self.refresh_bindings()

    def on_resize(self) -> None:
        self.refresh_bindings()  # v shows only below 32 rows

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        await self.run_action(BUTTONS[event.button.id or ""])

    def refresh_view(self) -> None:
        t = self.state.tracker
        if t.version == self._drawn_version:
            return
        self._drawn_version = t.version
        price = (t.config or self.state.config).train.price_per_kwh
        self.query_one("#status", Static).update(status_text(t))
        total = max(t.total_steps or self.state.config.train.max_steps, 1)
        self.query_one(ProgressBar).update(total=total, progress=min(t.step, total))
        self.query_one("#step-label", Static).update(f"step {t.step}/{total}")
        self.query_one("#stats", Static).update(stats_text(t, price))
        hint = idle_hint(t)
        hint_widget = self.query_one("#hint", Static)
        hint_widget.update(hint)
        hint_widget.display = bool(hint)
        self.query_one(LossChart).show(t.train, t.evals, total)
        self._draw_side_chart(t, total)
        self._append_log(t)
        self._append_samples(t)
        for button_id, action in BUTTONS.items():
            allowed = self.app.check_action(action.removeprefix("app."), ())
            self.query_one(f"#{button_id}", Button).disabled = not allowed

    def _draw_side_chart(self, t: RunTracker, total: int) -> None:
        chart = self.chart
        if chart == "memory":
            if t.has_gpu or (not t.device and self.state.readings):
                self.query_one(VramChart).show(t.vram, has_gpu=True)
            else:  # a CPU run (or no GPU at all): the process's RAM over time instead
                self.query_one(VramChart).show_ram(t.ram)
            return
        metric = self.query_one(MetricChart)
        if chart == "lr":
            metric.show("learning rate", [("lr", t.lrs, "cyan", "left")], total)
        elif chart == "speed":
            metric.show("tokens/s", [("tokens/s", t.speeds, "green", "left")], total)
        elif chart == "grad":
            metric.show("gradient norm (before clipping)", [("grad norm", t.grad_norms, "orange", "left")], total)
        else:
            name = {"orpo": "ORPO", "simpo": "SimPO"}.get(t.method, "DPO")  # reference-free: no reference pass
            metric.show(f"{name} reward margin (left) and accuracy (right)",
                        [("margin", t.reward_margins, "magenta", "left"),
                         ("accuracy", t.reward_accuracies, "cyan", "right")], total,
                        empty=f"drawn from the first {name} step" if t.method != "sft" else
                        "an SFT run has no reward margin: preference runs (dpo, orpo, simpo) draw it here")

    def _append_log(self, t: RunTracker) -> None:
        new = t.log_total - self._log_shown
        if new > 0:
            log = self.query_one("#log", FlowLog)
            for line in list(t.log)[-min(new, len(t.log)):]:
                log.add(line)
            self._log_shown = t.log_total

    def _append_samples(self, t: RunTracker) -> None:
        pane = self.query_one("#samples", FlowLog)
        if len(t.samples) < self._samples_shown:  # a new run began: start the pane afresh
            pane.clear_entries()
            self._samples_shown = 0
        for block in t.samples[self._samples_shown:]:
            pane.add(Text(f"── step {block.step} · eval loss {block.eval_loss:.3f} ──", style="bold"))
            for prompt, answer in block.answers:
                pane.add(Text(f"> {prompt}", style="cyan"))
                # Why it is empty, not just that it is: early in a run models often end at once.
                text = answer.strip()
                pane.add(Text(text) if text else Text("(empty: the model ended its answer at once)", style="dim"))
        self._samples_shown = len(t.samples)
