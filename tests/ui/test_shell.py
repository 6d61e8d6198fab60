"""The shell: five screens on F1-F5 and in the command palette, quitting, and the import direction
(the first frame without torch; an engine without textual)."""

from __future__ import annotations

import subprocess
import sys

from textual.command import CommandList, CommandPalette

from humanlike_tui.ui.app import SCREENS
from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.config import ConfigScreen
from humanlike_tui.ui.screens.hardware import HardwareScreen
from humanlike_tui.ui.screens.train import TrainScreen
from ui_helpers import SIZE, build, wait_until


async def test_function_keys_switch_between_the_five_screens():
    app = build()
    async with app.run_test(size=SIZE) as pilot:
        for key, cls in (("f2", ConfigScreen), ("f3", TrainScreen), ("f4", ChatScreen), ("f5", AdaptersScreen),
                         ("f1", HardwareScreen)):
            await pilot.press(key)
            await wait_until(pilot, lambda: isinstance(app.screen, cls), what=cls.__name__)
            header = app.screen.query_one("HeaderTitle")
            await wait_until(pilot, lambda: f"humanlike-tui — {cls.SUB_TITLE}" in str(header.render()),
                             what=f"the header to name the {cls.SUB_TITLE} screen")


async def test_command_palette_offers_screens_and_training_actions():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        names = [c.title for c in app.get_system_commands(app.screen)]
        for title in (t for _, t, _ in SCREENS.values()):
            assert f"{title} screen" in names
        for name in ("Start training", "Stop training", "Pause training", "Resume training",
                     "Resume an earlier run", "Save config", "Load config"):
            assert name in names
        train_cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Train screen")
        train_cmd.callback()
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen))
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        hits = app.screen.query_one(CommandList)
        await pilot.press(*"pause")

        def offered() -> list[str]:
            return [hits.get_option_at_index(i).prompt.plain.split("\n")[0] for i in range(hits.option_count)]

        await wait_until(pilot, lambda: "Pause training" in offered(), what="'Pause training' among the hits")
        while offered()[hits.highlighted or 0] != "Pause training":
            await pilot.press("down")
        await pilot.press("enter")  # no run is training: the command says so
        await wait_until(pilot, lambda: any("Only a training run can be paused" in str(n.message)
                                            for n in app._notifications), what="the command to run")
        assert isinstance(app.screen, TrainScreen)


async def test_quit_without_a_run_exits_at_once():
    app = build()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


def test_first_frame_does_not_import_torch_or_the_engine():
    code = ("import sys, humanlike_tui.ui.app; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('humanlike_tui.engine', 'transformers'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_never_imports_textual():
    code = ("import sys, importlib, pkgutil, humanlike_tui.engine as e; "
            "[importlib.import_module(f'humanlike_tui.engine.{m.name}') for m in pkgutil.iter_modules(e.__path__)]; "
            "bad = [m for m in sys.modules if m.startswith(('textual', 'humanlike_tui.ui'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_startup_config_comes_from_flags_then_the_saved_file_then_the_preset(tmp_path):
    from argparse import Namespace

    from humanlike_tui import config as cfgmod
    from humanlike_tui import paths
    from humanlike_tui.ui.app import initial_config

    saved = paths.config_dir() / "config.toml"
    none = Namespace(config=None, preset=None, overrides=[])
    assert initial_config(none) == (cfgmod.load_preset("gaming-8gb"), saved, "")
    cfgmod.save_config(cfgmod.load_preset("demo"), saved)
    assert initial_config(none)[0] == cfgmod.load_preset("demo")
    saved.write_text("[lora]\nr = 0\n")
    cfg, _, note = initial_config(none)
    assert cfg == cfgmod.load_preset("gaming-8gb") and "lora.r: must be >= 1" in note
    flags = Namespace(config=None, preset="demo", overrides=["train.max_steps=5"])
    assert initial_config(flags)[0].train.max_steps == 5
    other = tmp_path / "mine.toml"
    cfgmod.save_config(cfgmod.load_preset("demo"), other)
    assert initial_config(Namespace(config=str(other), preset=None, overrides=[]))[1] == other
