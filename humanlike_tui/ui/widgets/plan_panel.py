"""The VRAM plan verdict for the current config: fits / tight / does not fit, and why."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from humanlike_tui.protocols import PlanView

VERDICT_STYLE = {"fits": "bold green", "tight": "bold yellow", "does not fit": "bold red"}


def render_plan(plan: PlanView | None, note: str = "") -> Text:
    if plan is None:
        return Text(note or "estimating ...", style="dim")
    text = Text()
    text.append(plan.verdict.upper(), style=VERDICT_STYLE.get(plan.verdict, "bold"))
    if plan.headline and plan.headline != plan.verdict:
        text.append(f"  {plan.headline}")
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
