"""Config screen: a field for every config key, validation as you type with the CLI's messages,
presets, TOML save/load in the user config dir, the data look, and Start refusing a broken config."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select, Static, Switch

from humanlike_tui import config as cfgmod
from humanlike_tui import paths
from humanlike_tui.ui.widgets.config_form import GROUPS, ConfigForm, parse_text
from humanlike_tui.ui.widgets.data_look import DataLook
from support.fakes import fake_preview
from ui_helpers import SIZE, build, flush, settle, wait_until


def problems_line(app) -> str:
    return str(app.screen.query_one("#config-problems", Static).render())


async def type_into(pilot, app, path: str, text: str) -> None:
    editor = (await app.screen.query_one(ConfigForm).reveal(path)).editor
    assert isinstance(editor, Input)
    editor.value = text
    await flush(pilot)


async def test_every_field_has_an_editor_in_its_group():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConfigForm)
        assert {f.spec.path.split(".")[0] for f in form.fields} == {"model", "quant"}  # other tabs: on opening
        for _, _, sections in GROUPS:
            first = next(s.path for s in cfgmod.field_specs() if s.path.startswith(sections[0]))
            await form.reveal(f"{sections[0]}.{first.split('.')[1]}")
        paths_in_form = [f.spec.path for f in form.fields]
        assert sorted(paths_in_form) == sorted(s.path for s in cfgmod.field_specs())
        assert isinstance(form.field("quant.mode").editor, Select)
        assert isinstance(form.field("model.trust_remote_code").editor, Switch)
        assert isinstance(form.field("train.max_steps").editor, Input)
        covered = {section for _, _, sections in GROUPS for section in sections}
        assert covered == set(cfgmod.SECTIONS)
        assert cfgmod.validate_dict(form.values()) == (cfgmod.load_preset("demo"), [])


async def test_typing_shows_the_validators_message_inline_and_blocks_start():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConfigForm)
        await type_into(pilot, app, "lora.r", "0")
        assert "must be >= 1, got 0" in form.field("lora.r").error
        assert "must be >= 1, got 0" in str(form.field("lora.r").query_one(".field-note", Static).render())
        assert form.field("lora.r").has_class("-invalid")
        assert "1 problem" in problems_line(app)
        await type_into(pilot, app, "train.max_steps", "lots")
        assert "must be an integer, got 'lots'" in form.field("train.max_steps").error
        assert "Training (1!)" in str(app.screen.query_one("#config-tabs").get_tab("tab-train").label)
        assert len(app.state.config_problems) == 2
        await pilot.press("ctrl+t")
        await flush(pilot)
        assert app.state.tracker.status == "idle"
        assert any(n.title == "fix the config first" for n in app._notifications)
        await type_into(pilot, app, "lora.r", "8")
        await type_into(pilot, app, "train.max_steps", "100")
        assert "valid config" in problems_line(app) and not form.field("lora.r").has_class("-invalid")
        assert app.state.config.lora.r == 8 and app.state.config.train.max_steps == 100


async def test_cross_field_problem_lands_on_its_field():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        form = app.screen.query_one(ConfigForm)
        (await form.reveal("train.method")).editor.value = "dpo"
        await type_into(pilot, app, "data.rejected_column", "")
        assert "needs the rejected answers" in form.field("data.rejected_column").error
        assert "needs the rejected answers" in problems_line(app)


async def test_preset_picker_fills_the_form():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#preset", Select).value = "gaming-8gb"
        await wait_until(pilot, lambda: app.state.config == cfgmod.load_preset("gaming-8gb"))
        assert app.screen.query_one(ConfigForm).field("model.name").editor.value == "microsoft/phi-2"
        lora_r = await app.screen.query_one(ConfigForm).reveal("lora.r")  # mounted after the fill
        assert lora_r.editor.value == str(cfgmod.load_preset("gaming-8gb").lora.r)


async def test_save_then_load_round_trips_in_the_user_config_dir():
    default = paths.config_dir() / "config.toml"
    app = build(initial_screen="config", config_path=default)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.query_one("#config-path", Input).value == str(default)
        await type_into(pilot, app, "lora.r", "32")
        await pilot.press("ctrl+s")
        await flush(pilot)
        assert cfgmod.load_config(default).lora.r == 32
        await type_into(pilot, app, "lora.r", "4")
        await pilot.click("#load")
        await flush(pilot)
        assert app.state.config.lora.r == 32


async def test_load_errors_are_reported_not_raised(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[lora]\nr = -1\n")
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = app.state.config
        for target, expected in ((bad, "lora.r: must be >= 1"), (tmp_path / "missing.toml", "config file not found")):
            app.screen.query_one("#config-path", Input).value = str(target)
            await pilot.press("ctrl+o")
            await flush(pilot)
            assert expected in list(app._notifications)[-1].message
        assert app.state.config == before


async def test_save_reports_an_unwritable_path(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.screen.query_one("#config-path", Input).value = str(blocker / "config.toml")
        await pilot.press("ctrl+s")
        await flush(pilot)
        assert list(app._notifications)[-1].message.startswith("cannot write")


async def test_data_look_shows_rows_dropped_share_and_examples():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        look = app.screen.query_one(DataLook)
        summary = str(look.query_one("#data-summary", Static).render())
        expected = fake_preview(cfgmod.load_preset("demo"))
        assert f"{expected.rows:,} rows" in summary and f"{expected.dropped_share:.1%}" in summary
        assert "### Instruct:" in str(look.query_one("#data-examples", Static).render())
        await type_into(pilot, app, "data.max_length", "512")
        await wait_until(pilot, lambda: app.state.preview.max_length == 512)
        await pilot.pause(0)
        assert "0.0% longer than max_length 512" in str(look.query_one("#data-summary", Static).render())


async def test_data_preview_failures_say_why():
    def missing(cfg):
        raise ImportError("humanlike_tui.engine.data has no preview")

    app = build(initial_screen="config", preview=missing)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "data preview unavailable" in str(app.screen.query_one("#data-summary", Static).render())


def test_parse_text_leaves_bad_text_for_the_validator():
    assert parse_text("12", int) == 12 and parse_text("1e-4", float) == 1e-4
    assert parse_text("twelve", int) == "twelve" and parse_text("nan", float) == "nan"
    assert parse_text("q_proj, v_proj,", tuple) == ["q_proj", "v_proj"]


async def test_trust_remote_code_warns_on_the_form_and_at_start():
    app = build(initial_screen="config")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        warning = app.screen.query_one("#config-trust-warning", Static)
        assert not warning.display  # off in the demo preset: nothing shown
        switch = app.screen.query_one(ConfigForm).field("model.trust_remote_code").editor
        assert isinstance(switch, Switch)
        switch.value = True
        await flush(pilot)
        assert app.state.config.model.trust_remote_code is True
        assert warning.display
        assert "model.trust_remote_code is on: the model's own Python code will run" in str(warning.render())
        await pilot.press("ctrl+t")
        await flush(pilot)
        # Starting asks first (the config alone never allows the model's code: see test_round2_safety).
        from humanlike_tui.ui.screens.dialogs import ConfirmDialog

        assert isinstance(app.screen, ConfirmDialog)
        assert "Python code shipped with the model" in " ".join(str(w.render()) for w in app.screen.query(Static))
