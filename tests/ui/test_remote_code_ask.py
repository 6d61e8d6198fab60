"""A run whose config asks to run the model's own code (model.trust_remote_code): the Chat screen and the
scorecard ask the person, as training does, instead of failing with 'confirm when asked' and never asking."""

from __future__ import annotations

import pytest

from humanlike_tui import config as C
from humanlike_tui.errors import RemoteCodeRefused
from humanlike_tui.ui.screens.adapters import AdaptersScreen
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.dialogs import ConfirmDialog
from support.chat_fakes import FakeGeneration, FakeLibrary, FakeScorecard
from ui_helpers import SIZE, build, wait_until

MODEL = "someone/model-with-code"


def allowed() -> bool:
    return C.remote_code_allowed(C.Config().replace(**{"model.name": MODEL}))


def refuse_unless_allowed() -> None:
    if not allowed():
        raise RemoteCodeRefused(f"model.trust_remote_code is on for {MODEL!r} ...", MODEL)


class CodeGeneration(FakeGeneration):
    def open(self, name, log):
        refuse_unless_allowed()
        return super().open(name, log)


class CodeScorecard(FakeScorecard):
    def score(self, name, log, loaded=None):
        refuse_unless_allowed()
        return super().score(name, log, loaded)


@pytest.fixture(autouse=True)
def no_consent():
    """Consent is per process: start without it and leave none behind."""
    C.forget_remote_code_consent()
    yield
    C.forget_remote_code_consent()


def code_app(initial_screen: str):
    library = FakeLibrary()
    return build(initial_screen=initial_screen, library=library, generation=CodeGeneration(library),
                 scorecard=CodeScorecard({"rows": 1, "base": {}, "adapter": {}}))


async def test_chat_asks_then_opens_on_yes_and_not_on_no():
    app = code_app("chat")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_until(pilot, lambda: bool(screen.adapters), what="the adapter list")
        name = screen.adapters[0].name
        screen.open_adapter(name)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert screen.loaded_name is None and not allowed()
        screen.open_adapter(name)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question again")
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.loaded_name == name, what="the adapter opened after yes")


async def test_scorecard_asks_then_runs_on_yes():
    app = code_app("adapters")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, AdaptersScreen)
        await wait_until(pilot, lambda: screen.selected is not None, what="a selected run")
        screen.action_scorecard()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        assert not screen.working  # nothing runs while the person decides
        await pilot.press("y")
        name = screen.selected.name
        await wait_until(pilot, lambda: "scorecard" in screen.details.get(name, {}), what="the scorecard")
