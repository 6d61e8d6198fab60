"""The workbench's footer: Textual's Footer, compact, with the keys that switch screens (F1-F5) first.

Textual lists the focused widget's keys, then the screen's, then the app's: at 120 columns the screen
keys came last and were cut ('f5|', 'f2 Conf|'), so the one way to another screen shown on every
screen disappeared. Here they come first; a screen's own keys follow (its buttons and the command
palette offer the same actions when a narrow footer cuts them).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # Textual exports it only from here

SCREEN_ACTION = "show("  # the app's screen keys: Binding(key, "show('train')", ...)
SHORT_SCREEN_NAMES = {"Hardware": "HW", "Config": "Conf", "Adapters": "Adapt"}
PALETTE_WIDTH = 12  # '^p palette' and its padding


def is_screen_key(action: str) -> bool:
    return action.startswith(SCREEN_ACTION) or action.startswith("app." + SCREEN_ACTION)


def label(binding, short: bool) -> str:
    """The key's description; a screen's short name when the footer is short of room."""
    if short and is_screen_key(binding.action):
        return SHORT_SCREEN_NAMES.get(binding.description, binding.description)
    return binding.description


class WorkbenchFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        by_action: dict[str, tuple] = {}
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = (binding, enabled, tooltip)
        ordered = sorted(by_action.values(), key=lambda item: not is_screen_key(item[0].action))  # stable
        shown, short = self._fit(ordered, self.app.size.width - PALETTE_WIDTH)
        self.styles.grid_size_columns = len(shown)
        for binding, enabled, tooltip in shown:
            yield FooterKey(binding.key, self.app.get_key_display(binding), label(binding, short), binding.action,
                            disabled=not enabled, tooltip=tooltip).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            palette = active.get(self.app.COMMAND_PALETTE_BINDING)
            if palette is not None:
                _, binding, enabled, _ = palette
                yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                                classes="-command-palette", disabled=not enabled,
                                tooltip=binding.tooltip or binding.description)

    def _fit(self, keys: list[tuple], width: int) -> tuple[list[tuple], bool]:
        """The keys to show in `width` columns and whether screen names must be short."""
        def need(items: list[tuple]) -> int:
            return sum(len(self.app.get_key_display(b)) + 2 + len(label(b, False)) for b, _, _ in items)

        if need(keys) <= width:
            return keys, False
        here = f"{SCREEN_ACTION}'{self.app.current_mode}')"
        keys = [k for k in keys if k[0].action not in (here, "app." + here)]
        if need(keys) > width:
            keys = [k for k in keys if k[1]]  # greyed out: not usable now
        return keys, need(keys) > width

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)  # what fits changes with the width
