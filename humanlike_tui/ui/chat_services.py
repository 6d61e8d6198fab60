"""What the Chat and Adapters screens need from the engine, as plain callables: production imports
the engine on first use (always inside a worker thread), tests pass scripted stand-ins
(chat_fakes.py). Nothing here imports torch.

The screens find these in the shell's `Services.extra["chat"]` (the shell's injection point, so the
shell's Services and make_app stay as they are); when absent, the production ones are used.

A generator is anything with the engine Generator's interface: `name`, `config`,
`answer_both(prompt, history, settings, emit, stop)`, `describe()`, `memory()`, `close()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from humanlike_tui import paths

Log = Callable[[str], None]
EXTRA_KEY = "chat"


@dataclass
class ChatServices:
    list_adapters: Callable[[], list[Any]]  # engine.library.AdapterInfo (or look-alikes)
    open_generator: Callable[[str, Log], Any]
    run_details: Callable[[str], dict[str, Any]]
    rename: Callable[[str, str], Any]
    delete: Callable[[str], None]
    export: Callable[[str, Path, str, Log], Path]  # (name, folder, dtype, log) -> folder
    check_name: Callable[[str], str]  # raises with a clear message for a name that cannot be a run name
    clock: Callable[[], float] = time.time  # transcript timestamps (fixed in tests)
    transcripts_dir: Callable[[], Path] = field(default=lambda: paths.config_dir() / "transcripts")
    exports_dir: Callable[[], Path] = field(default=lambda: paths.data_dir() / "exports")
    # (name, log) -> Scorecard.to_dict(); long (loads the model): call it from a worker thread
    scorecard: Callable[..., dict[str, Any]] = field(default_factory=lambda: _scorecard)  # (name, log[, loaded])
    last_scorecard: Callable[[str], dict[str, Any] | None] = field(default_factory=lambda: _last_scorecard)


def production_chat_services() -> ChatServices:
    return ChatServices(list_adapters=_list_adapters, open_generator=_open_generator, run_details=_run_details,
                        rename=_rename, delete=_delete, export=_export, check_name=_check_name)


def chat_services(app: Any) -> ChatServices:
    """The app's chat services (injected by tests through Services.extra), else production ones."""
    services = getattr(app, "services", None)
    extra = getattr(services, "extra", None)
    if isinstance(extra, dict):
        if not isinstance(extra.get(EXTRA_KEY), ChatServices):
            extra[EXTRA_KEY] = production_chat_services()
        return extra[EXTRA_KEY]
    return production_chat_services()


# ---- the real engine, imported on first use ----

def _list_adapters() -> list[Any]:
    from humanlike_tui.engine import library

    return library.list_adapters()


def _open_generator(name: str, log: Log) -> Any:
    from humanlike_tui.ui.services import prepare, warm_imports

    warm_imports()  # the shell's guard: transformers' lazy imports are not safe from two threads at once
    from humanlike_tui.engine.generate import Generator, resolve_adapter

    prepare(resolve_adapter(name).config)  # and a builtin base is made by one thread only
    return Generator.open(name, log=log)


def _run_details(name: str) -> dict[str, Any]:
    from humanlike_tui.engine import library

    return library.run_details(name)


def _rename(old: str, new: str) -> Any:
    from humanlike_tui.engine import store

    return store.rename_run(old, new)


def _delete(name: str) -> None:
    from humanlike_tui.engine import store

    store.delete_run(name)


def _export(name: str, folder: Path, dtype: str, log: Log) -> Path:
    from humanlike_tui.ui.services import prepare, warm_imports

    warm_imports()
    from humanlike_tui.engine import library, store

    prepare(store.get_run(name).config())
    return library.export_merged(name, folder, dtype=dtype, log=log)


def _scorecard(name: str, log: Log, loaded: Any = None) -> dict[str, Any]:
    """The scorecard (limit 50); `loaded` is the Chat screen's generator when it holds this adapter,
    whose model is then borrowed instead of loading a second base."""
    from humanlike_tui.ui.services import prepare, warm_imports

    warm_imports()
    from humanlike_tui.engine import evaluate, store
    from humanlike_tui.events import EvalProgress, Log as LogEvent

    prepare(store.get_run(name).config())

    def emit(event: Any) -> None:
        if isinstance(event, EvalProgress):
            log(f"scorecard: {event.side} {event.stage} {event.done}/{event.total}")
        elif isinstance(event, LogEvent):
            log(event.message)

    return evaluate.scorecard(name, limit=50, emit=emit, loaded=loaded).to_dict()


def _last_scorecard(name: str) -> dict[str, Any] | None:
    from humanlike_tui.engine import evaluate

    return evaluate.last_scorecard(name)


def _check_name(name: str) -> str:
    from humanlike_tui.engine import store

    return store.check_name(name)
