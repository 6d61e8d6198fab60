"""Chat screen with a scripted generator: both answers stream side by side, Stop stops mid-answer,
a generation error is shown and the screen stays usable, history and settings reach the engine,
transcripts are saved without tokens; plus a snapshot, and one end-to-end test on the real engine
(the builtin tiny model trained for a few steps, opened from the Adapters screen)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input, Select

from humanlike_tui.errors import ModelError
from humanlike_tui.records import GenSettings, Turn
from humanlike_tui.ui.screens.chat import ChatScreen
from humanlike_tui.ui.screens.chat_dialogs import TextPromptDialog
from humanlike_tui.ui.widgets.chat_pane import ChatPane
from support.chat_fakes import SCRIPTS, FakeGeneration, FakeGenerator, FakeLibrary
from ui_helpers import SIZE, build, no_blink, wait_until


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Transcript names and stamps are in local time: pin the zone so they read the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def chat_app(generation: FakeGeneration | None = None, library: FakeLibrary | None = None, **services_kw):
    library = library or (generation.library if generation else FakeLibrary())
    generation = generation or FakeGeneration(library)
    return build(initial_screen="chat", library=library, generation=generation, **services_kw)


def one(generator: FakeGenerator) -> FakeGeneration:
    """Generation that opens every adapter to `generator` (a test holds or fails it)."""
    return FakeGeneration(make=lambda name: generator)


def drawn_pieces(monkeypatch) -> dict[str, list[str]]:
    """What each pane is handed to draw, call by call (the streamed text arrives in batches)."""
    calls: dict[str, list[str]] = {}
    append = ChatPane.append

    def spy(pane: ChatPane, text: str) -> None:
        calls.setdefault(pane.id.removeprefix("pane-"), []).append(text)
        append(pane, text)

    monkeypatch.setattr(ChatPane, "append", spy)
    return calls


async def open_adapter(pilot, name: str = "warm-sft-v2") -> ChatScreen:
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
    screen.query_one("#adapter-select", Select).value = name
    await wait_until(pilot, lambda: screen.loaded_name == name or bool(screen.load_error), what="the adapter")
    return screen


async def ask(pilot, screen: ChatScreen, prompt: str, wait: bool = True) -> None:
    screen.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")
    if wait:
        await wait_until(pilot, lambda: not screen.busy, what="both answers")
        await pilot.pause(0.08)


def full(side: str) -> str:
    return "".join(SCRIPTS[side]).strip()


def test_transcript_markdown_quotes_answers_and_redacts_tokens():
    from humanlike_tui.ui.chat_transcript import ChatTurn, SideAnswer, redact_secrets, transcript_markdown

    turn = ChatTurn("Hi", "warm", "microsoft/phi-2", {"temperature": 0.7})
    turn.answers["base"] = SideAnswer("# not a heading\n---", 5, "end")
    turn.answers["adapter"] = SideAnswer("hey", 2, "stopped")
    text = transcript_markdown([turn], 0.0, environ={"HF_TOKEN": "supersecretvalue"})
    assert "> # not a heading\n> ---" in text and "**Adapter warm** · 2 tokens · stopped" in text
    assert redact_secrets("a supersecretvalue b", {"HF_TOKEN": "supersecretvalue"}) == "a [redacted token] b"
    assert redact_secrets("x hf_" + "a" * 34 + " y", {}) == "x [redacted token] y"
    assert redact_secrets("half_done", {}) == "half_done"  # ordinary words stay


async def test_both_answers_stream_side_by_side(monkeypatch):
    generation = FakeGeneration()
    app = chat_app(generation)
    drawn = drawn_pieces(monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        assert [o for o in screen.adapters if not o.can_chat] == []  # incomplete runs are not offered
        assert "warm-sft-v2 on microsoft/phi-2" in screen.status_text()
        await ask(pilot, screen, "How was your weekend?")
        for side in ("base", "adapter"):
            assert screen.pane(side).text == full(side)
            assert screen.turns[0].answers[side].finish == "end"
        for side in ("base", "adapter"):  # drawn in batches (at most one a piece), nothing lost
            assert 1 <= len(drawn[side]) <= len(SCRIPTS[side]) and "".join(drawn[side]) == "".join(SCRIPTS[side])
        [generator] = generation.opened
        prompt, history, settings = generator.calls[0]
        assert (prompt, history) == ("How was your weekend?", [])
        assert settings == GenSettings(48, 0.7, 0.9, 1.1, 0)  # the demo config's [generate]
        assert screen.query_one("#prompt", Input).value == ""
        from humanlike_tui.ui.screens.chat_dialogs import ScreenBindingsProvider

        commands = [text for text, _, _ in ScreenBindingsProvider(screen, None)._commands()]
        assert "Chat: Stop" in commands and "Chat: Save transcript" in commands  # in the command palette


async def test_stop_in_the_middle_keeps_what_was_written():
    gen = FakeGenerator("warm-sft-v2", hold_after=3)
    app = chat_app(one(gen))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "Tell me about your day", wait=False)
        await wait_until(pilot, gen.holding.is_set, what="the generator to hold mid-answer")
        assert screen.busy and app.screen.check_action("stop_generation", ()) is True
        await pilot.press("escape")
        await wait_until(pilot, lambda: not screen.busy, what="the stop")
        await pilot.pause(0.08)
        turn = screen.turns[0]
        assert turn.answers["base"].finish == "stopped" and turn.answers["base"].text == "I am an"
        assert turn.answers["adapter"].finish == "stopped" and turn.answers["adapter"].tokens == 0
        assert screen.pane("base").text == "I am an"
        assert app.screen.check_action("stop_generation", ()) is None  # dimmed again


async def test_generation_error_is_clear_and_the_screen_stays_usable():
    gens = iter([FakeGenerator("warm-sft-v2", fail_side="adapter")])
    app = chat_app(FakeGeneration(make=lambda name: next(gens)))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "Hi")
        turn = screen.turns[0]
        assert turn.answers["base"].text == full("base")
        assert "out of GPU memory" in turn.error and turn.answers["adapter"].finish == "failed"
        assert any("out of GPU memory" in str(n.message) for n in app._notifications)
        screen.generator.fail_side = None
        await ask(pilot, screen, "Hi again")
        prompt, history, _ = screen.generator.calls[1]
        assert history == []  # the failed turn is not history
        assert screen.pane("adapter").text == full("adapter")


async def test_history_and_settings_reach_the_engine():
    generation = FakeGeneration()
    app = chat_app(generation)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "First")
        screen.query_one("#gen-temperature", Input).value = "0"
        screen.query_one("#gen-max_new_tokens", Input).value = "5"
        await ask(pilot, screen, "Second")
        _, history, settings = generation.opened[0].calls[1]
        assert history == [Turn("First", full("base"), full("adapter"))]  # each side's own earlier answer
        assert (settings.temperature, settings.max_new_tokens) == (0.0, 5)
        assert screen.turns[1].answers["base"].finish == "length"
        screen.query_one("#gen-top_p", Input).value = "2"
        await pilot.pause(0.05)
        assert "must be <= 1" in str(screen.query_one("#gen-top_p-note").render())
        await ask(pilot, screen, "Third", wait=False)
        await pilot.pause(0.05)
        assert len(generation.opened[0].calls) == 2 and not screen.busy  # refused: the form has a problem
        await pilot.press("ctrl+n")
        assert screen.turns == [] and screen.pane("base").text == ""


async def test_switching_adapters_frees_the_previous_one():
    generation = FakeGeneration()
    app = chat_app(generation)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot, "warm-sft-v2")
        await ask(pilot, screen, "Hi")
        await open_adapter(pilot, "warm-sft-v1")
        first, second = generation.opened
        assert first.closed and not second.closed  # one base model in memory at a time
        await ask(pilot, screen, "Hi")
        assert second.calls[0][1] == []  # history starts again with the new adapter
        assert screen.history_start == 1 and len(screen.turns) == 2


async def test_open_error_and_no_adapters():
    app = chat_app(FakeGeneration(error=ModelError("/runs/x/adapter: incomplete adapter, missing "
                                                   "adapter_model.safetensors; resume or retrain the run")))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        assert "could not open warm-sft-v2: /runs/x/adapter: incomplete adapter" in screen.status_text()
        await ask(pilot, screen, "Hi", wait=False)
        assert screen.turns == []
    empty = chat_app(library=FakeLibrary(infos=[]))
    async with empty.run_test(size=SIZE) as pilot:
        screen = empty.screen
        await wait_until(pilot, lambda: screen.adapters == [], what="the empty list")
        assert "No finished adapter yet" in screen.status_text()


async def test_save_transcript_as_markdown_without_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SecretValueThatIsLongEnough1234")
    app = chat_app(transcripts_dir=lambda: tmp_path / "transcripts")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "my token is hf_SecretValueThatIsLongEnough1234 and hf_abcdefghijklmnopqrstuvwxyz12")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the save dialog")
        path_box = app.screen.query_one(Input)
        assert path_box.value == str(tmp_path / "transcripts" / "chat-20260101-120000.md")  # the fixed clock, UTC
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the dialog to close")
        [saved] = (tmp_path / "transcripts").iterdir()
        text = saved.read_text()
        assert "hf_" not in text and text.count("[redacted token]") == 2
        assert "## 1. You" in text and "**Adapter warm-sft-v2**" in text and "> " + full("adapter") in text
        # The same name again is refused, never overwritten.
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TextPromptDialog), what="the save dialog")
        app.screen.query_one(Input).value = str(saved)
        await pilot.press("enter")
        dialog = app.screen
        assert isinstance(dialog, TextPromptDialog)
        await wait_until(pilot, lambda: "exists" in str(dialog.query_one(".dialog-problem").render()),
                         what="the refusal")
        assert app.screen is dialog  # still open: nothing was written


async def test_quitting_mid_answer_does_not_hang():
    gen = FakeGenerator("warm-sft-v2", hold_after=2)
    app = chat_app(one(gen))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "Hello", wait=False)
        await wait_until(pilot, gen.holding.is_set, what="the hold")
        await pilot.press("ctrl+q")
    assert screen.stop_event.is_set()  # set on unmount: the generation thread ends at its next token
    assert gen.let_go.wait(5), "the generation thread still holds after quitting"


def test_chat_screen_snapshot(snap_compare):
    app = chat_app()

    async def run_before(pilot):
        screen = await open_adapter(pilot)
        await ask(pilot, screen, "How was your weekend?")
        no_blink(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- end to end: the real engine ------------------------------------------------------------------------

async def test_end_to_end_trained_adapter_opened_from_the_library_answers_twice(home, monkeypatch):
    from support.memory_probe import memory_report
    from humanlike_tui.ui.screens.adapters import AdaptersScreen
    from tiny_run import RUN_NAME, install_run

    from humanlike_tui.ui.chat_services import EngineGeneration, EngineScorecard
    from humanlike_tui.ui.services import EngineLibrary

    install_run(home)
    drawn = drawn_pieces(monkeypatch)
    # The real store and engine behind the library, generation and scorecard; the hardware scripted.
    app = build(initial_screen="adapters", library=EngineLibrary(), generation=EngineGeneration(),
                scorecard=EngineScorecard())
    async with app.run_test(size=SIZE) as pilot:
        library = app.screen
        assert isinstance(library, AdaptersScreen)
        await wait_until(pilot, lambda: library.infos, timeout=20, what="the store")
        assert library.infos[0].name == RUN_NAME and library.infos[0].can_chat
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the Chat screen")
        chat = app.screen
        await wait_until(pilot, lambda: chat.loaded_name == RUN_NAME or bool(chat.load_error), timeout=90,
                         what="the real model to load")
        assert not chat.load_error
        chat.query_one("#gen-max_new_tokens", Input).value = "6"
        await ask(pilot, chat, "How was your weekend?", wait=False)
        await wait_until(pilot, lambda: not chat.busy, timeout=90, what="two real answers")
        await pilot.pause(0.08)
        turn = chat.turns[0]
        assert not turn.error
        for side in ("base", "adapter"):
            answer = turn.answers[side]
            assert answer.finish in ("end", "length") and 1 <= answer.tokens <= 6
            assert chat.pane(side).text == answer.text
        assert drawn.get("base") and drawn.get("adapter")  # streamed: drawn as it came, on each side
        report = memory_report()
        assert report["base_models"] == 1, report["models"]  # base and adapter share ONE base model
        assert report["bytes"] == chat.generator.memory()["bytes"]


def test_the_scorecard_service_scores_a_real_run(home, monkeypatch):
    """The Adapters screen's scorecard through the real engine (the screen's tests use a fake service):
    it once called the evaluation module instead of its scorecard function and failed on every run."""
    from tiny_run import RUN_NAME, install_run

    from humanlike_tui.ui import chat_services

    install_run(home)
    monkeypatch.setattr(chat_services, "SCORECARD_ROWS", 2)
    heard: list[str] = []
    card = chat_services.EngineScorecard().score(RUN_NAME, heard.append)
    assert card["run_id"] == RUN_NAME and card["rows"] == 2
    assert {"base", "adapter"} <= set(card) and any("scorecard" in line for line in heard)
    assert chat_services.EngineScorecard().last(RUN_NAME)["rows"] == 2  # kept beside the run
    answers = chat_services.EngineScorecard().answers(RUN_NAME)  # what the screen's a key opens
    assert len(answers) == 2 * card["prompts"] and {a["side"] for a in answers} == {"base", "adapter"}


async def test_the_picker_offers_base_models_alone():
    """A new user can try the real model before training: the picker offers the builtin base models and the
    bases of the finished runs alone (no adapter); one answers in the base pane only."""
    generation = FakeGeneration()
    app = chat_app(generation)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
        values = [value for _, value in screen.query_one("#adapter-select", Select)._options]
        assert "base:builtin:smollm2-135m" in values and "base:builtin:tiny-phi" in values
        assert "base:microsoft/phi-2" in values  # the fake runs' base
        screen = await open_adapter(pilot, "base:builtin:smollm2-135m")
        assert screen.base_only and screen.pane("adapter")._title.startswith("No adapter")
        await ask(pilot, screen, "Hi")
        assert generation.opened[-1].sides == [("base",)]
        assert screen.turns[-1].answers["base"].text == full("base")
