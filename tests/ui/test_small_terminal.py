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
# The keys each screen's footer shows at 80 columns (a new user's most used), and more at 120.
MOST_USED = {"hardware": {"f2", "f3", "f4", "f5", "ctrl+q"},
             "config": {"ctrl+t", "ctrl+s", "ctrl+l", "ctrl+q", "f1", "f3", "f4", "f5"},
             "train": {"n", "ctrl+q", "f1", "f2", "f4", "f5"},
             "chat": {"ctrl+o", "ctrl+t", "ctrl+q", "f1", "f2", "f3", "f5"},
             "adapters": {"o", "r", "x", "ctrl+q", "f1", "f2", "f3", "f4"}}
AT_120 = {"config": {"ctrl+r", "ctrl+o"}, "train": {"e", "c"}, "chat": {"ctrl+g", "ctrl+n"},
          "adapters": {"d", "space", "c"}}


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
    """And each screen's keys whole: the Adapters footer ended 'c Co', the Chat footer never had ctrl+g."""
    app = library_app("hardware")
    async with app.run_test(size=SIZE) as pilot:
        for mode, key in zip(MOST_USED, SCREEN_KEYS):
            await pilot.press(key)
            if mode == "adapters":
                await wait_until(pilot, lambda: app.screen.listed and app.screen.selected is not None)
            await footer_settled(pilot)
            assert footer_problems(app) == [], mode
            wanted = MOST_USED[mode] | AT_120.get(mode, set())
            assert wanted <= shown_keys(app), (mode, sorted(wanted - shown_keys(app)))
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


async def footer_settled(pilot) -> None:
    """The shown screen's footer has its keys laid out (a screen shown the first time composes it late)."""
    app = pilot.app

    def laid_out() -> bool:
        keys = list(app.screen.query(FooterKey))
        return any(k.has_class("-command-palette") for k in keys) and all(k.region.width for k in keys)

    await wait_until(pilot, laid_out, what="the footer")
    await pilot.pause(0.05)
    await wait_until(pilot, laid_out, what="the footer")


def footer_problems(app) -> list[str]:
    """What is wrong with the footer on display: a key cut or hidden, a key over the palette or past the
    footer's right edge (the cut text showed as a stray character after '^p palette')."""
    from humanlike_tui.ui.widgets.footer import WorkbenchFooter

    footer = app.screen.query_one(WorkbenchFooter)
    keys = list(footer.query(FooterKey))
    palette = next(k for k in keys if k.has_class("-command-palette"))
    problems = [] if palette.region.right == footer.region.right else [f"palette ends at {palette.region.right}"]
    for key in keys:
        if key is palette:
            continue
        whole = len(key.key_display) + 1 + len(key.description)
        if key.region.width < whole or key.region.right > palette.region.x:
            problems.append(f"{key.key_display} {key.description!r} at {key.region}")
    return problems


def shown_keys(app) -> set[str]:
    return {k.key for k in app.screen.query(FooterKey) if not k.has_class("-command-palette")}


async def test_each_screen_footer_shows_its_most_used_keys_whole_at_80_columns():
    """Found in the walk-through: ctrl+t Start and ctrl+q Quit hidden on Config at 80 columns, a stray
    character after '^p palette' (the cut keys' text under it)."""
    app = library_app("hardware")
    async with app.run_test(size=SMALL) as pilot:
        for mode, key in zip(MOST_USED, SCREEN_KEYS):
            await pilot.press(key)
            if mode == "adapters":
                await wait_until(pilot, lambda: app.screen.listed and app.screen.selected is not None)
            await footer_settled(pilot)
            assert footer_problems(app) == [], mode
            assert MOST_USED[mode] <= shown_keys(app), (mode, sorted(MOST_USED[mode] - shown_keys(app)))


async def test_the_keys_panel_leaves_the_footer_whole_and_escape_closes_it():
    app = library_app("chat")
    async with app.run_test(size=SMALL) as pilot:
        for size in (SMALL, SIZE):
            await pilot.resize_terminal(*size)
            app.action_show_help_panel()
            await wait_until(pilot, lambda: bool(app.screen.query("HelpPanel")), what="the Keys panel")
            await pilot.pause(0.1)
            await footer_settled(pilot)
            assert footer_problems(app) == [], size
            assert "ctrl+o" in shown_keys(app)
            await pilot.press("escape")
            await wait_until(pilot, lambda: not app.screen.query("HelpPanel"), what="Escape to close the panel")
        await pilot.press("escape")  # with the panel closed Escape is the screen's again (nothing to stop)
        assert app.screen.id != "_default" and app.is_running


async def test_train_at_80x24_gives_the_charts_the_height_and_v_shows_the_log():
    """At 80x24 the charts were 3-4 rows (the memory chart one) beside the answers and the log: below
    32 rows they take turns, v switching."""
    from humanlike_tui.ui.widgets.charts import LossChart, VramChart
    from humanlike_tui.ui.widgets.flow_log import FlowLog

    engine, clock = FakeEngine(total_steps=20, eval_every=5, hold_at=12), FakeClock()
    app = build(engine, clock)
    async with app.run_test(size=SMALL) as pilot:
        await run_to_hold(pilot, engine, clock)
        screen = app.screen
        assert screen.query_one(LossChart).region.height >= 14 and screen.query_one(VramChart).region.height >= 12
        assert not screen.query_one("#log", FlowLog).display or screen.query_one("#log", FlowLog).region.height == 0
        await footer_settled(pilot)
        assert "v" in shown_keys(app) and footer_problems(app) == []
        await pilot.press("v")  # the answers and the log
        await pilot.pause(0.3)
        log = screen.query_one("#log", FlowLog)
        assert log.region.height >= 12 and screen.query_one(LossChart).region.height == 0
        assert max(len(line.text) for line in log.lines) > 20  # flowed at the pane's width, not a letter a line
        await pilot.press("v")  # the charts again
        await pilot.pause(0.1)
        assert screen.query_one(LossChart).region.height >= 14
        await pilot.resize_terminal(*SIZE)  # tall enough for all four: no v
        await pilot.pause(0.2)
        assert screen.query_one(LossChart).region.height >= 8 and log.region.height >= 8
        assert "v" not in {b.key for b in (a.binding for a in screen.active_bindings.values())}
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.state.tracker.active)
