"""Every screen at 80x24 (a snapshot each: the screens lay out again below 100 columns and 32 rows),
and the footer shows the keys that switch screens (F1-F5) on every screen at 120x40."""

from __future__ import annotations

import time

import pytest
from textual.widgets._footer import FooterKey

from support.chat_fakes import FakeGeneration, FakeLibrary
from support.fakes import FakeClock
from ui_helpers import SIZE, build, feed_readings, no_blink, settle, train_scene, wait_until

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
            assert set(shown) == set(SCREEN_KEYS), (key, sorted(shown))
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
