"""One snapshot per screen at 120x40, built by make_app with the fakes: fixed clock, fixed GPU
readings, no cursor blink, a private HUMANLIKE_TUI_HOME. Update after an intended change with
`pytest tests/ui/test_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

from support.chat_fakes import FakeLibrary
from support.fakes import FakeClock
from ui_helpers import SIZE, build, feed_readings, no_blink, settle, train_scene, wait_until


def test_hardware_screen(snap_compare):
    clock = FakeClock()
    app = build(clock=clock)

    async def run_before(pilot):
        await settle(pilot)
        await feed_readings(pilot, clock, 1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_config_screen(snap_compare):
    app = build(initial_screen="config")

    async def run_before(pilot):
        await settle(pilot)
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_train_screen(snap_compare):
    app, run_before = train_scene()
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    # the held fake engine ends when the app exits (its stop event is set on unmount)


def test_chat_screen(snap_compare):
    app = build(initial_screen="chat", library=FakeLibrary(infos=[]))  # an empty store

    async def run_before(pilot):
        await wait_until(pilot, lambda: app.screen.adapters is not None, what="the adapter list")
        no_blink(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_adapters_screen(snap_compare):
    app = build(initial_screen="adapters", library=FakeLibrary(infos=[]))  # an empty store

    async def run_before(pilot):
        await wait_until(pilot, lambda: app.screen.listed, what="the store")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
