"""Config: every field in a grouped form, validated as you type by the CLI's own validator, with a
preset picker, TOML load/save, the VRAM estimate and a look at the data for what is on screen."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Select, Static

from humanlike_tui import config as cfgmod
from humanlike_tui.errors import ConfigError
from humanlike_tui.protocols import Services
from humanlike_tui.ui.messages import ConfigChanged
from humanlike_tui.ui.screens.model_dialogs import ModelPicker
from humanlike_tui.ui.state import WorkbenchState
from humanlike_tui.ui.widgets.config_form import ConfigForm
from humanlike_tui.ui.widgets.data_look import DataLook
from humanlike_tui.ui.widgets.plan_panel import PlanPanel, plan_title
from humanlike_tui.ui.palette import ScreenCommands
from humanlike_tui.ui.widgets.footer import NAVIGATION, WorkbenchFooter
from humanlike_tui.ui.widgets.key_select import KeySelect


TRUST_REMOTE_CODE_WARNING = ("model.trust_remote_code is on: the model's own Python code will run. "
                             "Turn it on only for models you trust.")


def problems_text(problems: list[str], shown: int = 3) -> Text:
    """A summary above the form: the count and the first few, since some may sit in closed tabs."""
    if not problems:
        return Text("✓ valid config", style="green")
    text = Text(f"✗ {len(problems)} problem{'s' if len(problems) > 1 else ''} (tabs marked !):", style="bold red")
    for line in problems[:shown]:
        text.append(f"\n  {line}", style="red")
    if len(problems) > shown:
        text.append(f"\n  ... and {len(problems) - shown} more", style="red")
    return text


class ConfigScreen(Screen):
    SUB_TITLE = "Config"
    FOOTER_KEYS = ("app.start_training", "save", "pick_model", NAVIGATION, "choose_preset", "load")  # most used first
    COMMANDS = {ScreenCommands}
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Write the config to the TOML file"),
        Binding("ctrl+o", "load", "Load", tooltip="Read the config from the TOML file"),
        Binding("ctrl+r", "choose_preset", "Preset", tooltip="Open the preset list (Down, Enter loads one)"),
        Binding("ctrl+l", "pick_model", "Model", tooltip="Choose the model: the curated list with the plan for "
                "this machine, any hub id or a local folder; downloads with progress"),
        Binding("ctrl+t", "app.start_training", "Start training"),
    ]
    DEFAULT_CSS = """
    ConfigScreen #config-left { width: 2fr; }
    ConfigScreen #config-right { width: 1fr; min-width: 44; border-left: tall $panel; }
    ConfigScreen #config-problems { padding: 0 1; height: auto; }
    ConfigScreen #config-trust-warning { padding: 0 1; height: auto; color: $warning; text-style: bold; }
    ConfigScreen .section { text-style: bold; color: $text-accent; padding: 0 1; margin-top: 1; }
    ConfigScreen #config-path { margin: 0 1; }
    ConfigScreen #preset { margin: 0 1; }
    ConfigScreen .file-buttons { height: auto; padding: 0 1; }
    ConfigScreen .file-buttons Button { width: 1fr; min-width: 8; margin-right: 1; }
    ConfigScreen #start { width: 100%; margin: 1 1 0 1; }
    ConfigScreen #pick-model { width: 100%; margin: 1 1 0 1; }
    ConfigScreen.-narrow #config-right { width: 28; min-width: 0; }
    ConfigScreen.-narrow ConfigField { grid-columns: 23 1fr; }
    ConfigScreen.-narrow ConfigField .field-note { padding-left: 0; }
    ConfigScreen.-short .section { margin-top: 0; }
    ConfigScreen.-short #start { margin: 0 1; }
    """

    def __init__(self, state: WorkbenchState, services: Services) -> None:
        super().__init__()
        self.state = state
        self.services = services

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="config-left"):
                yield Static("", id="config-problems")
                trust = Static(f"⚠ {TRUST_REMOTE_CODE_WARNING}", id="config-trust-warning", classes="warning")
                trust.display = bool(self.state.config.model.trust_remote_code)
                yield trust
                yield ConfigForm(self.state.config, id="config-form")
            with VerticalScroll(id="config-right"):
                yield Button("Choose a model … (ctrl+l)", id="pick-model", compact=True)
                yield Label("Preset", classes="section")
                yield KeySelect([(name, name) for name in cfgmod.preset_names()], prompt="load a preset ... (ctrl+r)",
                                id="preset", compact=True)
                yield Label("TOML file", classes="section")
                yield Input(str(self.state.config_path), id="config-path", compact=True)
                with Horizontal(classes="file-buttons"):
                    yield Button("Load", id="load")
                    yield Button("Save", id="save")
                yield Button("Start training", id="start", variant="success")
                yield Label("VRAM estimate", classes="section", id="plan-label")
                yield PlanPanel(id="config-plan")
                yield Label("Data", classes="section")
                yield DataLook(id="data-look")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.validate()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        self.query_one(PlanPanel).show(self.state.plan, self.state.plan_note)
        self.query_one("#plan-label", Label).update(plan_title(self.state.plan))
        look = self.query_one(DataLook)
        if self.state.preview is not None and not self.state.preview_note:
            look.show(self.state.preview)
        else:
            look.show_note(self.state.preview_note or "reading the data ...",
                           style="yellow" if self.state.preview_note else "dim")

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    def validate(self) -> None:
        """The form's values through config.validate_dict; the app hears the outcome."""
        values = self.form.values()
        config, problems = cfgmod.validate_dict(values)
        self.form.show_problems(problems)
        self.query_one("#config-problems", Static).update(problems_text(problems))
        self.query_one("#config-trust-warning", Static).display = (
            values.get("model", {}).get("trust_remote_code") is True)
        self.app.post_message(ConfigChanged(config, problems))

    def on_config_form_edited(self, event: ConfigForm.Edited) -> None:
        self.validate()

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.load_preset(event.value)

    def load_preset(self, name: str) -> None:
        """Fill the form with preset `name` (the preset list, ctrl+r, or 'Load preset' in the palette)."""
        try:
            self.form.fill(cfgmod.load_preset(name))
        except ConfigError as exc:
            self.notify(str(exc), title=f"preset {name} is broken", severity="error", timeout=12)
            return
        self.notify(f"loaded preset {name}", timeout=3)

    def action_pick_model(self) -> None:
        if self.services.models is None:
            self.notify("No model list here: type the model's name in model.name.", severity="warning")
            return
        current = str(self.form.values()["model"]["name"])
        self.app.push_screen(ModelPicker(self.services, self.state.config, self.state.hardware, current),
                             self.model_chosen)

    def model_chosen(self, name: str | None) -> None:
        if name:
            self.form.set_field("model.name", name)
            self.notify(f"model.name = {name}", timeout=4)

    def action_choose_preset(self) -> None:
        select = self.query_one("#preset", KeySelect)
        select.focus()
        select.action_show_overlay()

    @on(Button.Pressed, "#pick-model")
    def pick_model_pressed(self) -> None:
        self.action_pick_model()

    @on(Button.Pressed, "#load")
    def load_pressed(self) -> None:
        self.action_load()

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_save()

    def action_load(self) -> None:
        path = self._path()
        try:
            cfg = cfgmod.load_config(path)
        except ConfigError as exc:
            self.notify(str(exc), title="cannot load the config", severity="error", timeout=15)
            return
        self.form.fill(cfg)
        self.notify(f"loaded {path}", timeout=4)

    def action_save(self) -> None:
        path = self._path()
        config, problems = cfgmod.validate_dict(self.form.values())
        if config is None:
            self.notify(f"not saved: the config has {len(problems)} problem(s); first: {problems[0]}",
                        severity="error", timeout=10)
            return
        try:
            cfgmod.save_config(config, path)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror or exc}", severity="error", timeout=10)
            return
        self.notify(f"saved to {path}", timeout=4)

    @on(Button.Pressed, "#start")
    async def start(self) -> None:
        await self.run_action("app.start_training")

    def _path(self) -> Path:
        text = self.query_one("#config-path", Input).value.strip()
        return Path(text).expanduser() if text else self.state.config_path
