"""The command palette's entries for the screen on display: every key binding of the screen (hidden
ones too, e.g. the Chat's server key) and the screen's own extra commands (`palette_commands()`, e.g.
'Open adapter X'), so anything a key does can also be found by name (ctrl+p). The app adds the
commands that work everywhere (screens, training, presets: WorkbenchApp.get_system_commands)."""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterable

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

PaletteCommand = tuple[str, str, Callable]  # (text, help, callback)


class ScreenCommands(Provider):
    def _commands(self) -> list[PaletteCommand]:
        screen = self.screen
        title = getattr(screen, "SUB_TITLE", "") or type(screen).__name__
        out: list[PaletteCommand] = []
        for binding in getattr(screen, "BINDINGS", []):
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action.startswith("app."):
                continue  # the app's own commands list these once (Start training, ...)
            if screen.check_action(binding.action.split("(")[0], ()) is False:
                continue
            help_text = (binding.tooltip or binding.description) + f" ({binding.key})"
            out.append((f"{title}: {binding.description}", help_text, partial(screen.run_action, binding.action)))
        extra: Callable[[], Iterable[PaletteCommand]] | None = getattr(screen, "palette_commands", None)
        if extra is not None:
            out += [(f"{title}: {text}", help_text, callback) for text, help_text, callback in extra()]
        return out

    async def discover(self) -> Hits:
        for text, help_text, callback in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, callback in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
