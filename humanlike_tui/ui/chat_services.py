"""The Chat and Adapters screens' service adapters over the real engine: generation (one base model
with the adapter on it, both sides answering) and the scorecard. They implement
protocols.GenerationService and protocols.ScorecardService; tests hand the app scripted doubles
instead (tests/support/chat_fakes.py). The engine is imported on first use, always inside a worker
thread: nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from humanlike_tui.protocols import Generator, Log, ServerHandle
from humanlike_tui.records import BASE_PREFIX
from humanlike_tui.ui.services import prepare, warm_imports

SCORECARD_ROWS = 50  # the Adapters screen's scorecard: enough rows to compare, a few minutes on a GPU


class EngineGeneration:
    """protocols.GenerationService over engine.inference.generator.Generator."""

    def open(self, name: str, log: Log) -> Generator:
        warm_imports()  # transformers' lazy imports are not safe from two threads at once
        from humanlike_tui.engine.inference.generator import Generator as EngineGenerator
        from humanlike_tui.engine.inference.generator import base_config, resolve_adapter

        if name.startswith(BASE_PREFIX):  # a base model alone (the picker's "base model" entries)
            model = name.removeprefix(BASE_PREFIX)
            prepare(base_config(model))
            return EngineGenerator.open_base(model, log=log)
        prepare(resolve_adapter(name).config)  # and a builtin base is made by one thread only
        return EngineGenerator.open(name, log=log)

    def serve(self, generator: Generator, log: Log) -> ServerHandle:
        from humanlike_tui.engine.inference.server import ChatServer
        from humanlike_tui.errors import InputError

        try:
            return ChatServer(generator, "127.0.0.1", 8000).start()
        except InputError:  # 8000 is taken: any free port, and the person is told why the address changed
            server = ChatServer(generator, "127.0.0.1", 0).start()
            log(f"Port 8000 is busy (another server?), so this one took port {server.port}.")
            return server


class EngineScorecard:
    """protocols.ScorecardService over engine.evaluation."""

    def score(self, name: str, log: Log, loaded: Generator | None = None) -> dict[str, Any]:
        warm_imports()
        from humanlike_tui import events
        from humanlike_tui.engine import evaluation
        from humanlike_tui.engine.storage import runs

        prepare(runs.get_run(name).config())

        def emit(event: events.Event) -> None:
            if isinstance(event, events.EvalProgress):
                log(f"scorecard: {event.side} {event.stage} {event.done}/{event.total}")
            elif isinstance(event, events.Log):
                log(event.message)

        return evaluation.scorecard(name, limit=SCORECARD_ROWS, emit=emit, loaded=loaded).to_dict()

    def last(self, name: str) -> dict[str, Any] | None:
        from humanlike_tui.engine import evaluation

        return evaluation.last_scorecard(name)

    def answers(self, name: str) -> list[dict[str, Any]] | None:
        from humanlike_tui.engine import evaluation

        return evaluation.last_answers(name)


class EnginePicks:
    """protocols.PicksService over engine.storage.picks (stdlib only: cheap from any thread)."""

    def add(self, collection: str, draft) -> int:
        from dataclasses import asdict

        from humanlike_tui.engine.storage import picks

        picks.append_pick(collection, picks.pick_row(**asdict(draft)))
        return picks.read_picks(collection).count

    def collections(self) -> list[tuple[str, int]]:
        from humanlike_tui.engine.storage import picks

        return [(c.name, c.count) for c in picks.list_collections()]
