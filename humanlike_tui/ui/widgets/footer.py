"""The workbench's footer: Textual's Footer, compact, with the keys that switch screens (F1-F5) first,
and never a key cut in the middle.

Textual lists the focused widget's keys, then the screen's, then the app's, and cuts whatever passes the
right edge: at 120 columns the Adapters footer ended 'c Co', at 80 the Config footer lost ctrl+t Start
and ctrl+q Quit, and the cut text showed as a stray character after '^p palette'. Here the keys that do
not fit are left out whole, the least used first: each screen names its most used keys in FOOTER_KEYS,
in order, with NAVIGATION where the screen keys and Quit rank among them. Before leaving any out, the
footer drops the shown screen's own key and greyed keys, then shortens long names ('Start training' ->
'Start'). Every key stays in the command palette (ctrl+p), which lists them all.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # Textual exports it only from here

SCREEN_ACTION = "show("  # the app's screen keys: Binding(key, "show('train')", ...)
NAVIGATION = "navigation"  # in a screen's FOOTER_KEYS: where the screen keys and Quit rank
QUIT_ACTIONS = ("quit", "app.quit")
# Shorter names for when the footer is short of room (screen names, and the longer key names).
SHORT_LABELS = {"Hardware": "HW", "Config": "Conf", "Adapters": "Adapt", "Start training": "Start",
                "Export merged": "Export", "Earlier run": "Earlier", "Reload list": "Reload",
                "Save transcript": "Save"}
PALETTE_WIDTH = 11  # '^p palette' and the bar before it (docked right, no margin: see DEFAULT_CSS)


def is_screen_key(action: str) -> bool:
    return action.startswith(SCREEN_ACTION) or action.startswith("app." + SCREEN_ACTION)


def label(binding: Binding, short: bool) -> str:
    """The key's description; a shorter one when the footer is short of room."""
    return SHORT_LABELS.get(binding.description, binding.description) if short else binding.description


def rank(binding: Binding, order: tuple[str, ...]) -> int:
    """Lower is kept longer. `order` is the screen's FOOTER_KEYS; keys it does not name rank last."""
    if is_screen_key(binding.action) or binding.action in QUIT_ACTIONS:
        return order.index(NAVIGATION) if NAVIGATION in order else -1
    return order.index(binding.action) if binding.action in order else len(order)


class WorkbenchFooter(Footer):
    DEFAULT_CSS = """
    WorkbenchFooter.-compact FooterKey.-command-palette { margin-right: 0; }
    """

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._laid_out_for = 0  # the width the keys were chosen for

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        by_action: dict[str, tuple] = {}
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = (binding, enabled, tooltip)
        ordered = sorted(by_action.values(), key=lambda item: not is_screen_key(item[0].action))  # stable
        self._laid_out_for = self.width_now()
        shown, short = self._fit(ordered, self._laid_out_for - PALETTE_WIDTH)
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

    def width_now(self) -> int:
        """The footer's own width once laid out: narrower than the terminal while the Keys panel is open."""
        return self.size.width or self.app.size.width

    def need(self, keys: list[tuple], short: bool) -> int:
        """Columns the keys take: 'key name' and one cell between keys (the palette's bar ends the last)."""
        return sum(len(self.app.get_key_display(b)) + 2 + len(label(b, short)) for b, _, _ in keys) - 1

    def _fit(self, keys: list[tuple], width: int) -> tuple[list[tuple], bool]:
        """The keys to show in `width` columns, in their order, and whether their names must be short."""
        if self.need(keys, False) <= width:
            return keys, False
        here = f"{SCREEN_ACTION}'{self.app.current_mode}')"
        keys = [k for k in keys if k[0].action not in (here, "app." + here)]
        if self.need(keys, False) > width:
            keys = [k for k in keys if k[1]]  # greyed out: not usable now
        if self.need(keys, False) <= width:
            return keys, False
        order = tuple(getattr(self.screen, "FOOTER_KEYS", ()))
        by_rank = sorted(keys, key=lambda k: rank(k[0], order))  # stable: equal ranks keep their order
        while by_rank and self.need(by_rank, True) > width:
            by_rank.pop()  # the least used key left
        kept = {id(k) for k in by_rank}
        return [k for k in keys if id(k) in kept], True

    def on_resize(self) -> None:
        if self.width_now() != self._laid_out_for:  # what fits changes with the width (not on every layout)
            self.call_after_refresh(self.recompose)
