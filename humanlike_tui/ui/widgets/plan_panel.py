"""The VRAM plan verdict for the current config: fits / tight / does not fit, and why."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from humanlike_tui.protocols import PlanView

VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "does not fit": "bold red"}


def plan_title(plan: PlanView | None, what: str = "estimate") -> str:
    """'VRAM estimate' on a GPU, 'RAM and time estimate' on the CPU (no GPU words where there is none)."""
    return f"RAM and time {what}" if plan is not None and plan.device == "cpu" else f"VRAM {what}"


def render_plan(plan: PlanView | None, note: str = "") -> Text:
    if plan is None:
        return Text(note or "estimating ...", style="dim")
    text = Text()
    verdict = plan.verdict.upper() + (" IN RAM" if plan.device == "cpu" and plan.verdict != "unknown" else "")
    text.append(verdict, style=VERDICT_STYLE.get(plan.verdict, "bold"))
    if plan.headline and plan.headline != plan.verdict:
        text.append(f"  {plan.headline}")
    if plan.slow:
        text.append(f"\nbut slow on this CPU: {plan.slow}", style="bold yellow")
    for line in plan.lines:
        text.append(f"\n  {line}", style="dim")
    return text


class PlanPanel(Static):
    DEFAULT_CSS = """
    PlanPanel { height: auto; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.show(None)

    def show(self, plan: PlanView | None, note: str = "") -> None:
        self.update(render_plan(plan, note))
