"""Every screen at 80x24 (a snapshot each: the screens lay out again below 100 columns and 32 rows),
and the footer shows the keys that switch screens (F1-F5) on every screen at 120x40."""

from __future__ import annotations

import time

import pytest
from textual.widgets._footer import FooterKey

from support.chat_fakes import FakeGeneration, FakeLibrary
from support.fakes import FakeClock, FakeEngine
from ui_helpers import SIZE, build, feed_readings, no_blink, run_to_hold, settle, train_scene, wait_until

SMALL = (80, 24)
SCREEN_KEYS = ("f1", "f2", "f3", "f4", "f5")


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def library_app(initial_screen: str):
    library = FakeLibrary()
    return build(initial_screen=initial_screen, library=library, generation=FakeGeneration(library))


def test_hardware_at_80x24(snap_compare):
    clock = FakeClock()
    app = build(clock=clock)

    async def run_before(pilot):
        await settle(pilot)
        await feed_readings(pilot, clock, 1)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_config_at_80x24(snap_compare):
    app = build(initial_screen="config")

    async def run_before(pilot):
        await settle(pilot)
        no_blink(app)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_train_at_80x24(snap_compare):
    app, run_before = train_scene()
    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_chat_at_80x24(snap_compare):
    app = library_app("chat")

    async def run_before(pilot):
        await wait_until(pilot, lambda: app.screen.adapters is not None, what="the adapter list")
        app.screen.request_adapter("warm-sft-v2")
        await wait_until(pilot, lambda: app.screen.loaded_name == "warm-sft-v2", what="the adapter")
        no_blink(app)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_adapters_at_80x24(snap_compare):
    app = library_app("adapters")

    async def run_before(pilot):
        await wait_until(pilot, lambda: app.screen.listed, what="the store")
        await wait_until(pilot, lambda: app.screen.details, what="the details")
        await pilot.pause(0.05)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


async def test_the_footer_shows_the_screen_keys_at_120x40():
    app = library_app("hardware")
    async with app.run_test(size=SIZE) as pilot:
        for key in SCREEN_KEYS:
            await pilot.press(key)
            await pilot.pause(0.1)
            footer_keys = list(app.screen.query(FooterKey))
            palette = next(k for k in footer_keys if k.has_class("-command-palette"))
            shown = {k.key: k for k in footer_keys if k.key in SCREEN_KEYS}
            # every other screen's key; the one on display may make room for the screen's own keys
            assert set(shown) >= set(SCREEN_KEYS) - {key}, (key, sorted(shown))
            for fkey in shown.values():
                region = fkey.region
                assert region.width >= len(fkey.description) + 2, (key, fkey.key)  # its name, not cut
                assert region.right <= palette.region.x, (key, fkey.key, region)  # left of the palette key


async def test_chat_settings_fold_away_on_a_narrow_terminal():
    app = library_app("chat")
    async with app.run_test(size=SMALL) as pilot:
        screen = app.screen
        await pilot.pause(0.1)
        assert not screen.settings_shown
        await pilot.press("ctrl+t")
        assert screen.settings_shown
        await pilot.resize_terminal(*SIZE)
        await pilot.pause(0.1)
        assert not screen.settings_shown  # flipped: on a wide terminal ctrl+t hid them
        await pilot.press("ctrl+t")
        assert screen.settings_shown


async def test_a_narrow_footer_keeps_the_keys_usable_now():
    """At 80 columns mid-run the Train footer showed 's Stop' and nothing of Pause or the charts: the
    footer now drops the shown screen's key and greyed keys, and shortens the screen names."""
    engine, clock = FakeEngine(total_steps=20, hold_at=4), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SMALL) as pilot:
        await run_to_hold(pilot, engine, clock)
        await pilot.pause(0.1)
        keys = {k.key: k for k in app.screen.query(FooterKey)}
        assert {"s", "p", "c"} <= set(keys)  # stop, pause and the charts
        assert "f3" not in keys and "n" not in keys  # this screen's own key; New run is greyed while training
        assert keys["f1"].description == "HW"
        for footer_key in keys.values():
            assert footer_key.region.right <= SMALL[0] and footer_key.region.width >= len(footer_key.description) + 2
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.state.tracker.active)
