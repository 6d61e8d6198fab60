"""Helpers shared by the UI tests: build the app the way production does (make_app) with fakes,
and wait on conditions instead of sleeping for guessed times."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import Input

from humanlike_tui.config import load_preset
from humanlike_tui.ui.app import WorkbenchApp, make_app
from support.fakes import FIXED_READINGS, FakeClock, FakeEngine, fake_services, ramp_readings
from humanlike_tui.ui.messages import GpuSamples

SIZE = (120, 40)
# Shown in the Config screen's path box; a fixed text, so snapshots do not carry a temp dir.
SHOWN_CONFIG_PATH = Path("~/.config/humanlike-tui/config.toml")


def build(engine: FakeEngine | None = None, clock: FakeClock | None = None, *, initial_screen: str = "hardware",
          config_path: Path = SHOWN_CONFIG_PATH, **services_kw) -> WorkbenchApp:
    services = fake_services(engine or FakeEngine(), clock or FakeClock(), **services_kw)
    return make_app(services, load_preset("demo"), config_path, initial_screen=initial_screen)


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `condition()` holds (workers are threads: their messages need turns)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def settle(pilot: Pilot) -> None:
    """Wait for the batched Train redraw, the debounced estimates and their messages to land."""
    app = pilot.app
    await wait_until(pilot, lambda: app.state.hardware is not None and app.state.plan is not None
                     and (app.state.preview is not None or bool(app.state.preview_note)), what="estimates")
    await pilot.pause(0.25)
    app.redraw_train()
    await pilot.pause(0)


async def feed_readings(pilot: Pilot, clock: FakeClock, n: int, readings=FIXED_READINGS, step_s: float = 1.0) -> None:
    """GPU readings one second apart on the fake clock, each handled before the next (no merging).
    `readings` is a list, or a function of the reading's number giving one."""
    app = pilot.app
    for i in range(n):
        clock.advance(step_s)
        app.post_message(GpuSamples(list(readings(i) if callable(readings) else readings), clock()))
        await pilot.pause(0)  # waits until the message is handled, without the idle-CPU heuristic


async def flush(pilot: Pilot, rounds: int = 4) -> None:
    """Let a chain of messages run (Input.Changed -> ConfigForm.Edited -> ConfigChanged ...): each
    pause(0) waits until what is queued now is handled, which may queue the next hop."""
    for _ in range(rounds):
        await pilot.pause(0)


def no_blink(app: WorkbenchApp) -> None:
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def run_to_hold(pilot: Pilot, engine: FakeEngine, clock: FakeClock, readings: int = 6,
                      pattern=FIXED_READINGS) -> None:
    """Start a run from the Train screen and let the fake engine reach its hold step, with VRAM readings."""
    await pilot.press("f3")
    await pilot.press("n")
    await wait_until(pilot, engine.holding.is_set, what="the engine to reach its hold step")
    await feed_readings(pilot, clock, readings, pattern)
    await settle(pilot)


def train_scene() -> tuple[WorkbenchApp, Callable[[Pilot], Awaitable[None]]]:
    """The Train screen mid-run (step 45 of 60, three evaluations, a minute of VRAM readings): the
    snapshot test and the README screenshot both use it."""
    engine, clock = FakeEngine(total_steps=60, eval_every=15, hold_at=45), FakeClock()
    app = build(engine, clock)

    async def run_before(pilot: Pilot) -> None:
        await run_to_hold(pilot, engine, clock, readings=60, pattern=ramp_readings)
        no_blink(app)

    return app, run_before


def write_train_screenshot(path: str = "docs/train-screen.svg") -> None:
    """Regenerate the README's screenshot: python tests/ui/ui_helpers.py [path]."""
    app, run_before = train_scene()

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await run_before(pilot)
            target = Path(path)
            app.save_screenshot(target.name, str(target.parent))
            await pilot.press("s")
            await wait_until(pilot, lambda: not app.state.tracker.active)

    asyncio.run(main())


if __name__ == "__main__":
    import os
    import sys
    import tempfile

    os.environ.setdefault("HUMANLIKE_TUI_HOME", tempfile.mkdtemp())  # never the user's real config
    write_train_screenshot(*sys.argv[1:])
