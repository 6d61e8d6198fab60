"""A form for every config field, built from config.field_specs(), grouped in tabs. It turns what
the user typed back into a TOML-shaped dict and leaves judging it to config.validate_dict, the same
validator the CLI uses, so the form and `humanlike-tui train` never disagree.

The form's values live in a dict, not in the widgets: a tab's fields are mounted the first time the
tab is opened (fifty fields with their editors are several hundred widgets, and styling them all
would hold up the first frame of the screen for seconds).
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import AwaitMount, Widget
from textual.widgets import Input, Label, Select, Static, Switch, TabbedContent, TabPane

from humanlike_tui.config import GROUP_TITLES, Config, FieldSpec, field_specs

# The tabs, in the order of the workflow (what to train, how to adapt it, on what, how, then chat).
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("model", "Model & quant", ("model", "quant")),
    ("lora", "LoRA", ("lora",)),
    ("data", "Data", ("data",)),
    ("train", "Training", ("train",)),
    ("generate", "Generation", ("generate",)),
)


def tab_of(path: str) -> str:
    section = path.split(".", 1)[0]
    return next(tab for tab, _, sections in GROUPS if section in sections)


def editor_id(path: str) -> str:
    return "field-" + path.replace(".", "--")


def display_value(value: Any, t: type) -> str:
    if isinstance(value, str) and t is not str:
        return value  # text that did not parse stays as the user typed it
    if t is tuple:
        return ", ".join(value)
    if t is float:
        return repr(float(value))
    return str(value)


def parse_text(text: str, t: type) -> Any:
    """Typed value from the text box; text that does not parse goes to the validator unchanged, so it
    reports it exactly as it would in a TOML file ('must be an integer, got ...')."""
    s = text.strip()
    if t is int:
        try:
            return int(s)
        except ValueError:
            return text
    if t is float:
        try:
            value = float(s)
        except ValueError:
            return text
        return value if math.isfinite(value) else text
    if t is tuple:
        return [part.strip() for part in s.split(",") if part.strip()]
    return text


def limits_text(spec: FieldSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f" [{_n(spec.min)} to {_n(spec.max)}]"
    if spec.min is not None:
        return f" [>= {_n(spec.min)}]"
    return ""


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class ConfigField(Widget):
    """One field in a two-column grid: key | editor, then its help (and its problem, in red)."""

    DEFAULT_CSS = """
    ConfigField { layout: grid; grid-size: 2; grid-columns: 24 1fr; grid-rows: auto; height: auto;
                  margin-bottom: 1; }
    ConfigField .field-name { color: $text-primary; }
    ConfigField.-invalid .field-name { color: $text-error; text-style: bold; }
    ConfigField Switch { border: none; height: 1; padding: 0; }
    ConfigField Switch:focus { border: none; background-tint: $foreground 10%; }
    ConfigField Input:focus { background-tint: $foreground 10%; }
    ConfigField .field-note { column-span: 2; padding-left: 24; color: $text-muted; }
    """

    def __init__(self, spec: FieldSpec, value: Any, error: str = "") -> None:
        super().__init__(id="row-" + spec.path.replace(".", "--"))
        self.spec = spec
        self._initial = value
        self._error = error

    def compose(self) -> ComposeResult:
        yield Label(self.spec.path.split(".", 1)[1], classes="field-name")
        yield self._editor()
        yield Static(self._note(), classes="field-note")

    def on_mount(self) -> None:
        self.set_class(bool(self._error), "-invalid")

    def on_click(self) -> None:
        """A click anywhere on the field (its name, its help) puts the cursor in its editor. Without this
        the click focused the scrolling form, where End scrolled away and typed digits went nowhere."""
        editor = self.editor
        if not editor.has_focus:
            editor.focus()

    def _editor(self) -> Widget:
        spec, value, eid = self.spec, self._initial, editor_id(self.spec.path)
        if spec.type is bool and isinstance(value, bool):
            return Switch(value=value, id=eid)
        if spec.choices and value in spec.choices:
            return Select([(str(c), c) for c in spec.choices], value=value, allow_blank=False, compact=True, id=eid)
        return Input(display_value(value, spec.type), compact=True, id=eid, select_on_focus=False)

    def _note(self) -> Text:
        note = Text(self.spec.help + limits_text(self.spec))
        if self._error:
            note.append("\n" + self._error, style="bold red")
        return note

    @property
    def editor(self) -> Widget:
        return self.query_one("#" + editor_id(self.spec.path))

    @property
    def value(self) -> Any:
        editor = self.editor
        if isinstance(editor, (Switch, Select)):
            return editor.value
        assert isinstance(editor, Input)
        return parse_text(editor.value, self.spec.type)

    def set_value(self, value: Any) -> None:
        editor = self.editor
        if isinstance(editor, (Switch, Select)):
            editor.value = value
        else:
            assert isinstance(editor, Input)
            editor.value = display_value(value, self.spec.type)

    @property
    def error(self) -> str:
        return self._error

    def set_error(self, message: str) -> None:
        if message == self._error:
            return  # most fields keep their (empty) message on each keystroke: no re-layout for them
        self._error = message
        self.query_one(".field-note", Static).update(self._note())
        self.set_class(bool(message), "-invalid")


class ConfigForm(Vertical):
    """Every field of Config in tabs. Posts ConfigForm.Edited when the user changes anything."""

    DEFAULT_CSS = """
    ConfigForm { height: 1fr; }
    ConfigForm TabbedContent { height: 1fr; }
    ConfigForm TabPane { padding: 0; }
    ConfigForm VerticalScroll { padding: 0 1; }
    ConfigForm .group-title { text-style: bold; color: $text-accent; margin-bottom: 1; }
    """

    class Edited(Message):
        pass

    def __init__(self, config: Config, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._specs = {s.path: s for s in field_specs()}
        self._values: dict[str, Any] = {path: config.get(path) for path in self._specs}
        self._errors: dict[str, str] = {}
        self._mounted_tabs: set[str] = set()

    def compose(self) -> ComposeResult:
        with TabbedContent(id="config-tabs"):
            for tab_id, title, _ in GROUPS:
                with TabPane(title, id=f"tab-{tab_id}"):
                    # Not a focus stop: keys belong to the fields (the form scrolls to the focused one).
                    yield VerticalScroll(id=f"scroll-{tab_id}", can_focus=False)

    def on_mount(self) -> None:
        self._mount_tab(GROUPS[0][0])

    def _mount_tab(self, tab_id: str) -> AwaitMount | None:
        if tab_id in self._mounted_tabs:
            return None
        self._mounted_tabs.add(tab_id)
        sections = next(s for t, _, s in GROUPS if t == tab_id)
        widgets: list[Widget] = []
        for section in sections:
            if len(sections) > 1:
                widgets.append(Static(GROUP_TITLES[section], classes="group-title"))
            widgets += [ConfigField(spec, self._values[path], self._errors.get(path, ""))
                        for path, spec in self._specs.items() if path.startswith(section + ".")]
        return self.query_one(f"#scroll-{tab_id}", VerticalScroll).mount_all(widgets)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        if event.pane.id:
            self._mount_tab(event.pane.id.removeprefix("tab-"))

    async def reveal(self, path: str) -> ConfigField:
        """Open the tab holding `path` (mounting it if needed) and return the field."""
        tab_id = tab_of(path)
        self.query_one(TabbedContent).active = f"tab-{tab_id}"
        pending = self._mount_tab(tab_id)
        if pending is not None:
            await pending
        return self.field(path)

    @property
    def fields(self) -> list[ConfigField]:
        return list(self.query(ConfigField))

    def field(self, path: str) -> ConfigField:
        return self.query_one("#row-" + path.replace(".", "--"), ConfigField)

    def values(self) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = {}
        for path, value in self._values.items():
            section, key = path.split(".", 1)
            data.setdefault(section, {})[key] = list(value) if isinstance(value, tuple) else value
        return data

    def fill(self, config: Config) -> None:
        """Show a loaded config or preset; one Edited afterwards instead of one per field."""
        self._values = {path: config.get(path) for path in self._specs}
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            for f in self.fields:
                f.set_value(self._values[f.spec.path])
        self.post_message(self.Edited())

    def set_field(self, path: str, value: Any) -> None:
        """One field set from outside the form (the model picker); one Edited afterwards."""
        self._values[path] = value
        match = [f for f in self.fields if f.spec.path == path]
        if match:
            with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
                match[0].set_value(value)
        self.post_message(self.Edited())

    def show_problems(self, problems: list[str]) -> list[str]:
        """Put each problem under its field; return those that name no field (shown above the form)."""
        by_path: dict[str, list[str]] = {}
        for problem in problems:
            path, _, message = problem.partition(": ")
            by_path.setdefault(path, []).append(message or problem)
        self._errors = {path: "; ".join(msgs) for path, msgs in by_path.items() if path in self._specs}
        for f in self.fields:
            f.set_error(self._errors.get(f.spec.path, ""))
        self._mark_tabs()
        return [f"{path}: {'; '.join(msgs)}" for path, msgs in by_path.items() if path not in self._specs]

    def _mark_tabs(self) -> None:
        """A problem count on each tab's label: the problem may sit in a tab that is not open."""
        tabs = self.query_one(TabbedContent)
        for tab_id, title, _ in GROUPS:
            n = sum(1 for path in self._errors if tab_of(path) == tab_id)
            label = f"{title} ({n}!)" if n else title
            tab = tabs.get_tab(f"tab-{tab_id}")
            if str(tab.label) != label:
                tab.label = label

    def _edited(self, editor: Widget) -> None:
        field = next((a for a in editor.ancestors if isinstance(a, ConfigField)), None)
        if field is not None:
            self._values[field.spec.path] = field.value
            self.post_message(self.Edited())

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._edited(event.input)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._edited(event.switch)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._edited(event.select)
