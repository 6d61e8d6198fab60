"""Chat screen: ctrl+g starts and stops the local OpenAI-compatible server over the loaded adapter and the
status line shows its address (scripted services; the real server is tested in tests/engine/test_server.py)."""

from __future__ import annotations

from textual.widgets import Select

from humanlike_tui.ui.screens.chat import ChatScreen
from support.chat_fakes import FakeGeneration
from ui_helpers import SIZE, build, wait_until


async def open_adapter(pilot, name: str) -> ChatScreen:
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
    screen.query_one("#adapter-select", Select).value = name
    await wait_until(pilot, lambda: screen.loaded_name == name, what="the adapter")
    return screen


async def test_ctrl_g_serves_the_loaded_adapter_and_stops():
    generation = FakeGeneration()
    app = build(initial_screen="chat", library=generation.library, generation=generation)
    async with app.run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        await wait_until(pilot, lambda: screen.adapters is not None, what="the adapter list")
        await pilot.press("ctrl+g")  # nothing loaded: nothing to serve
        await pilot.pause(0.1)
        assert screen.server is None and generation.served == []
        screen = await open_adapter(pilot, "warm-sft-v2")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.server is not None, what="the server")
        [server] = generation.served
        assert server.generator is generation.opened[0]
        assert "serving at http://127.0.0.1:8000/v1 (ctrl+g stops)" in screen.status_text()
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: server.stopped, what="the server to stop")
        assert screen.server is None and "serving" not in screen.status_text()
        await pilot.press("ctrl+g")  # again, then another adapter: the server goes with the old model
        await wait_until(pilot, lambda: screen.server is not None, what="the server")
        second = generation.served[-1]
        await open_adapter(pilot, "warm-sft-v1")
        await wait_until(pilot, lambda: second.stopped, what="the server to stop with its model")
        assert screen.server is None


async def test_ctrl_g_says_when_port_8000_was_busy():
    generation = FakeGeneration()
    generation.port_busy = True
    app = build(initial_screen="chat", library=generation.library, generation=generation)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_adapter(pilot, "warm-sft-v2")
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: screen.server is not None, what="the server")
        said = [str(n.message) for n in app._notifications]
        assert any("Port 8000 is busy" in s and "http://127.0.0.1:8001/v1" in s for s in said), said
