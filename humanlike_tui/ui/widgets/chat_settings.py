"""Generation settings for the Chat screen: five inputs checked as you type by the config's own
validator (the same limits and messages as `[generate]` in a TOML file and the CLI flags)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Label, Static

from humanlike_tui.config import Config
from humanlike_tui.errors import ConfigError

# (key, label, type, hint)
FIELDS = (
    ("max_new_tokens", "Max new tokens", int, "longest answer"),
    ("temperature", "Temperature", float, "0 = greedy"),
    ("top_p", "Top-p", float, "nucleus sampling"),
    ("repetition_penalty", "Repetition penalty", float, "1 = off"),
    ("seed", "Seed", int, "same seed, same answer"),
)


def parse_setting(key: str, text: str, kind: type, config: Config) -> tuple[Any, str]:
    """(value, problem): the text as a number, checked against generate.<key>'s limits."""
    text = text.strip()
    try:
        value = kind(text)
    except ValueError:
        return None, f"must be {'a whole number' if kind is int else 'a number'}"
    try:
        config.replace(**{f"generate.{key}": value})
    except ConfigError as exc:
        return None, exc.problems[0].removeprefix(f"generate.{key}: ")
    return value, ""


class GenSettingsForm(VerticalScroll):
    DEFAULT_CSS = """
    GenSettingsForm { width: 30; height: 1fr; border: round $primary-darken-1; padding: 0 1; }
    GenSettingsForm > .form-title { text-style: bold; color: $text-accent; }
    GenSettingsForm > Label { margin-top: 1; }
    GenSettingsForm > Input { width: 1fr; }
    GenSettingsForm > .setting-hint { color: $text-muted; }
    GenSettingsForm > .setting-problem { color: $text-error; }
    """

    def __init__(self, config: Config, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.config = config

    def compose(self) -> ComposeResult:
        yield Static("Generation", classes="form-title")
        for key, label, kind, hint in FIELDS:
            yield Label(label)
            yield Input(str(getattr(self.config.generate, key)), id=f"gen-{key}",
                        type="integer" if kind is int else "number", compact=True)
            yield Static(hint, id=f"gen-{key}-note", classes="setting-hint")

    def on_input_changed(self, event: Input.Changed) -> None:
        key = (event.input.id or "").removeprefix("gen-")
        spec = next((f for f in FIELDS if f[0] == key), None)
        if spec is None:
            return
        _, problem = parse_setting(key, event.value, spec[2], self.config)
        note = self.query_one(f"#gen-{key}-note", Static)
        note.update(problem or spec[3])
        note.set_class(bool(problem), "setting-problem")
        note.set_class(not problem, "setting-hint")

    def read(self) -> tuple[dict[str, Any], list[str]]:
        """The settings and every problem ('Top-p: must be <= 1, got 2')."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, label, kind, _ in FIELDS:
            value, problem = parse_setting(key, self.query_one(f"#gen-{key}", Input).value, kind, self.config)
            if problem:
                problems.append(f"{label}: {problem}")
            else:
                values[key] = value
        return values, problems
