"""Scripted doubles of the library, generation and scorecard services (humanlike_tui.protocols) for
the Chat and Adapters screens: a fixed, mutable library of runs and a generator that streams scripted
answers, can hold mid-answer (so a test can press Stop) or fail. Deterministic, no torch; the pilot
and snapshot tests run the real screens against these."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from humanlike_tui.config import Config, load_preset
from humanlike_tui.errors import GenerationError, StoreError
from humanlike_tui.events import AnswerDone, AnswerStarted, AnswerText
from humanlike_tui.protocols import LossHistory, RunChoice
from humanlike_tui.records import BASE_PREFIX, AdapterInfo, Answer, Exchange, GenSettings

MB = 1024 * 1024
FIXED_NOW = 1767268800.0  # 2026-01-01 12:00 UTC


def fake_info(name: str, *, status: str = "finished", steps: int = 60, max_steps: int = 60,
              eval_loss: float | None = 1.8421, created: float = FIXED_NOW - 86400, method: str = "sft",
              size: int = 58 * MB, last_checkpoint: int | None = 60, base: str = "microsoft/phi-2") -> AdapterInfo:
    complete = status == "finished"
    return AdapterInfo(name=name, status=status, complete=complete, base_model=base,
                       data_source="HumanLLMs/Human-Like-DPO-Dataset", method=method, steps=steps,
                       max_steps=max_steps, final_loss=1.7012 if complete else None, final_eval_loss=eval_loss,
                       created=created, finished=created + 3600 if complete else None, size_bytes=size,
                       adapter_bytes=20 * MB if complete else 0, last_checkpoint=last_checkpoint,
                       run_dir=f"/runs/{name}", adapter_dir=f"/runs/{name}/adapter",
                       error="loss became NaN at step 12" if status == "failed" else "")


def fake_library() -> list[AdapterInfo]:
    return [fake_info("warm-sft-v2", created=FIXED_NOW - 3600),
            fake_info("cozy-dpo", status="paused", steps=30, eval_loss=2.1034, method="dpo", last_checkpoint=30,
                      created=FIXED_NOW - 7200, size=41 * MB),
            fake_info("warm-sft-v1", eval_loss=2.0517, created=FIXED_NOW - 86400 * 3),
            fake_info("crashed-run", status="interrupted", steps=12, eval_loss=None, last_checkpoint=None,
                      created=FIXED_NOW - 86400 * 4, size=3 * MB)]


SCRIPTS = {
    "base": ["I", " am", " an", " AI", " language", " model", ".", " I", " do", " not", " have", " weekends", "."],
    "adapter": ["Oh", ",", " it", " was", " lovely", "!", " Slept", " in", ",", " then", " pancakes", ".",
                " You", "?"],
}


class FakeGenerator:
    """protocols.Generator: streams SCRIPTS per side through the engine's events, like
    engine.inference.generator.Generator.

    hold_after: after that many pieces of the first side, wait until `release()` or Stop (tests press Stop).
    fail_side: raise GenerationError when that side starts (after its AnswerStarted, as an OOM would)."""

    def __init__(self, name: str, config: Config | None = None, *, scripts: dict[str, list[str]] | None = None,
                 hold_after: int | None = None, fail_side: str | None = None):
        self.name = name
        self.config = config or load_preset("gaming-8gb")  # phi-2, like the fake library
        self.scripts = scripts or SCRIPTS
        self.hold_after, self.fail_side = hold_after, fail_side
        self.calls: list[tuple[str, list[Any], GenSettings]] = []
        self.systems: list[str | None] = []  # the persona of each call
        self.sides: list[tuple[str, ...]] = []  # the sides each call asked for
        self.closed = False
        self.holding = threading.Event()
        self.let_go = threading.Event()  # set when a hold ends (released or stopped)
        self._gate = threading.Event()

    def release(self) -> None:
        self._gate.set()

    def answer_both(self, prompt: str, history=(), settings: GenSettings | None = None, emit=lambda e: None,
                    stop: threading.Event | None = None, sides=("base", "adapter"), system: str | None = None) -> Exchange:
        settings = settings or GenSettings.from_config(self.config)
        stop = stop or threading.Event()
        self.calls.append((prompt, list(history), settings))
        self.systems.append(system)
        self.sides.append(tuple(sides))
        answers = {}
        for side in sides:
            emit(AnswerStarted(side, 12 + 20 * len(list(history)), len(list(history)), settings.max_new_tokens))
            if side == self.fail_side:
                raise GenerationError(f"out of GPU memory while generating the {side} answer (12 prompt tokens + up "
                                      f"to {settings.max_new_tokens} new); lower max new tokens, start a new "
                                      "conversation (less history), or close other programs using the memory.")
            answers[side] = self._stream(side, settings, emit, stop)
            emit(AnswerDone(side, answers[side].text, answers[side].tokens, answers[side].finish, 0.5))
        return Exchange(prompt, answers, settings)

    def _stream(self, side: str, settings: GenSettings, emit, stop: threading.Event) -> Answer:
        pieces = self.scripts[side][:settings.max_new_tokens]
        sent = []
        for i, piece in enumerate(pieces):
            if self.hold_after is not None and i == self.hold_after and side == "base":
                self._hold(stop)
            if stop.is_set():
                return Answer(side, "".join(sent).strip(), len(sent), "stopped", 0.5)
            emit(AnswerText(side, piece))
            sent.append(piece)
        finish = "length" if len(pieces) < len(self.scripts[side]) else "end"
        return Answer(side, "".join(sent).strip(), len(sent), finish, 0.5)

    def _hold(self, stop: threading.Event) -> None:
        self.holding.set()
        while not self._gate.wait(0.005) and not stop.is_set():
            pass
        self.holding.clear()
        self.let_go.set()

    def describe(self) -> dict[str, Any]:
        return {"adapter": self.name, "base_model": self.config.model.name, "quant": self.config.quant.mode,
                "template": self.config.data.template, "device": "cuda", "context_length": 2048}

    def memory(self) -> dict[str, Any]:
        return {"parameters": 1_521_392_640, "bytes": 1_794_000_000, "lora_parameters": 7_864_320,
                "lora_bytes": 31_457_280}

    def close(self) -> None:
        self.closed = True


def fake_loss(step: int) -> float:
    """The fake run's loss curve (FakeEngine's too)."""
    return 2.4 * math.exp(-step / 14) + 0.9 + 0.06 * math.sin(step * 1.7)


def fake_history(run_id: str) -> LossHistory:
    """An earlier run's curve up to step 6, where FakeEngine resumes a run from disk."""
    return [(s, fake_loss(s)) for s in range(1, 7)], [(5, fake_loss(5) + 0.15)]


def library_curves() -> dict[str, LossHistory]:
    """Distinct loss curves for the fake library's runs (the Adapters screen overlays them)."""
    out = {}
    for name, speed, floor in (("warm-sft-v2", 1.0, 1.6), ("warm-sft-v1", 0.6, 1.9), ("cozy-dpo", 1.4, 2.0)):
        train = [(s, floor + 1.6 * math.exp(-speed * s / 15) + 0.04 * math.sin(s)) for s in range(1, 61)]
        out[name] = (train, [(s, floor + 0.15 + 1.6 * math.exp(-speed * s / 15)) for s in range(10, 61, 10)])
    return out


@dataclass
class FakeLibrary:
    """protocols.LibraryService: rename, delete and export change it the way the store would."""

    infos: list[AdapterInfo] = field(default_factory=fake_library)
    runs: list[RunChoice] = field(default_factory=lambda: [
        RunChoice("20251231-090000-demo", "20251231-090000-demo · paused · step 30/60")])
    exports: list[tuple[str, Path, str]] = field(default_factory=list)
    export_choices: list[tuple[str, str, str]] = field(default_factory=list)  # (format, quant, merge_into)
    curves: dict[str, LossHistory] = field(default_factory=library_curves)
    fail_export: str = ""

    def names(self) -> list[str]:
        return [i.name for i in self.infos]

    def find(self, name: str) -> AdapterInfo:
        for info in self.infos:
            if info.name == name:
                return info
        raise StoreError(f"no run named {name!r} in /runs")

    def adapters(self) -> list[AdapterInfo]:
        return list(self.infos)

    def rename(self, old: str, new: str) -> None:
        if new in self.names():
            raise StoreError(f"a run named {new!r} already exists; choose another name")
        info = self.find(old)
        self.infos[self.infos.index(info)] = replace(info, name=new, run_dir=f"/runs/{new}")

    def delete(self, name: str) -> None:
        self.infos.remove(self.find(name))

    def export(self, name: str, folder: Path, dtype: str, log: Callable[[str], None], fmt: str = "safetensors",
               quant: str = "q8_0", merge_into: str = "trained") -> Path:
        log(f"merging adapter {name}")
        if self.fail_export:
            raise StoreError(self.fail_export)
        self.exports.append((name, Path(folder), dtype))
        self.export_choices.append((fmt, quant, merge_into))
        return Path(folder)

    def check_name(self, name: str) -> str:
        from humanlike_tui.engine.storage.runs import check_name  # the store's own rule (no torch)

        return check_name(name)

    def resumable(self) -> list[RunChoice]:
        return list(self.runs)

    def history(self, run_id: str) -> LossHistory:
        return self.curves.get(run_id) or fake_history(run_id)

    def details(self, name: str) -> dict[str, Any]:
        info = self.find(name)
        cfg = load_preset("gaming-8gb")
        return {"info": info.to_dict(), "config": cfg.to_dict(), "checkpoints": [30, 60] if info.complete else [30],
                "data": {"rows_read": 10884, "rows_kept": 10850, "train_rows": 10300, "eval_rows": 550},
                "eval_metrics": {"eval_pref_accuracy": 0.91}, "duration_s": 5400.0, "tokens_per_s": 2150.0,
                "energy_wh": 142.5, "device": "NVIDIA GeForce RTX 4060 Laptop GPU (bf16)",
                "trainable_params": 7_864_320, "versions": {}}


class FakeGeneration:
    """protocols.GenerationService over a FakeLibrary; `make(name)` makes the generator an adapter
    opens to. `opened` keeps every generator handed out, for assertions."""

    def __init__(self, library: FakeLibrary | None = None, *, make: Callable[[str], FakeGenerator] | None = None,
                 error: Exception | None = None) -> None:
        self.library = library or FakeLibrary()
        self.make = make or (lambda name: FakeGenerator(name))
        self.error = error
        self.opened: list[FakeGenerator] = []
        self.served: list[FakeServer] = []
        self.port_busy = False  # serve() finds 8000 taken

    def open(self, name: str, log: Callable[[str], None]) -> FakeGenerator:
        log(f"loading {name}")
        if self.error is not None:
            raise self.error
        if not name.startswith(BASE_PREFIX):  # a base model alone is no run of the library
            self.library.find(name)
        generator = self.make(name)
        self.opened.append(generator)
        return generator

    def serve(self, generator: FakeGenerator, log: Callable[[str], None]) -> FakeServer:
        port = 8000 + len(self.served) + self.port_busy
        server = FakeServer(generator, f"http://127.0.0.1:{port}/v1")
        self.served.append(server)
        if self.port_busy:  # as the real service: says why the address is not :8000
            log(f"Port 8000 is busy (another server?), so this one took port {port}.")
        return server


class FakeServer:
    """protocols.ServerHandle: remembers its generator and whether it was stopped."""

    def __init__(self, generator: FakeGenerator, url: str) -> None:
        self.generator, self.url, self.stopped = generator, url, False

    def stop(self) -> None:
        self.stopped = True


class FakeScorecard:
    """protocols.ScorecardService: returns `card` (or raises without one); `calls` keeps (name, loaded)."""

    def __init__(self, card: dict[str, Any] | None = None, answers: list[dict[str, Any]] | None = None) -> None:
        self.card = card
        self.calls: list[tuple[str, Any]] = []
        self.kept_answers = answers  # what answers() gives: the card's answers file

    def score(self, name: str, log: Callable[[str], None], loaded: Any = None) -> dict[str, Any]:
        log("scorecard: base likelihood 1/2")
        self.calls.append((name, loaded))
        if self.card is None:
            raise RuntimeError("no scorecard in this fake; a test passes its own")
        return {**self.card, "run_id": name}

    def last(self, name: str) -> dict[str, Any] | None:
        return None

    def answers(self, name: str) -> list[dict[str, Any]] | None:
        return self.kept_answers
