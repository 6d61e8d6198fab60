"""Streaming generation: the base model and an adapter answer the same prompt, on ONE loaded base.

    gen = Generator.open("my-run")                 # a run name from the store, or an adapter folder
    exchange = gen.answer_both("How was your day?", emit=print)
    exchange.answers["base"].text, exchange.answers["adapter"].text
    gen.close()

How it works, and why:

- One base model is loaded exactly as it was trained (the run's config: same quantization, same
  compute dtype) and the run's LoRA adapter is put on it. The base answer runs inside peft's
  `model.disable_adapter()`, so the comparison costs no second copy of the weights. That context
  manager flips state shared by every caller, so all generation goes through one lock.
- The prompt is formatted exactly as in training (`data.format_prompt` with the run's
  `data.template`). Earlier turns of a conversation (history) are formatted so that, for the
  instruct template, the text is the training examples of those turns one after another
  (`### Instruct: ... ### Output: <answer> ### End<eos>`), then the new prompt, the one layout the
  model has seen; for the chat template, the turns become alternating user/assistant messages of
  the model's own chat template. Each side continues ITS OWN conversation: the base sees the base's
  earlier answers, the adapter the adapter's. Turns whose answer on that side is empty (stopped
  before a word) are left out. When the conversation no longer fits the model's context with
  `max_new_tokens` room, the oldest turns are dropped (AnswerStarted says how many were kept).
- Tokens stream through a `streamer` that `model.generate` calls in the generating thread itself
  (no second thread): each new token is decoded and the new text emitted as `AnswerText`. Text that
  could be the start of the template's end marker ("\\n### End") is held back until it is clear that it
  is not, so the marker never flashes on screen; when it is complete, generation stops.
- Stop: a `threading.Event` checked by a StoppingCriteria after every token. Setting it ends the
  current answer at the next token and skips the sides not started yet (they finish as "stopped").
- Out of memory during generation raises GenerationError with what to change, after freeing the
  cache; the model stays loaded and usable.

This module imports torch and transformers only inside functions, so importing it is cheap.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine import store as S
from humanlike_tui.engine.chat_events import SIDES, AnswerDone, AnswerStarted, AnswerText, GenerationError
from humanlike_tui.errors import InputError, ModelError, StoreError
from humanlike_tui.events import Emit, Log, ignore

# Where an answer ends in the instruct template, and turns the model may start by itself after it.
INSTRUCT_MARKERS = (D.INSTRUCT_END, "\n### Instruct:", "\n### Output:")
GENERATE_KEYS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")


# --- settings and conversation ----------------------------------------------------------------------

@dataclass(frozen=True)
class GenSettings:
    """Generation settings; defaults and limits are the config's [generate] section."""

    max_new_tokens: int = 200
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> "GenSettings":
        """cfg.generate with per-call overrides (None = keep), checked by the config's own validator,
        so a bad value gets the same message as in a TOML file ('generate.top_p: must be <= 1 ...')."""
        unknown = [k for k in overrides if k not in GENERATE_KEYS]
        if unknown:
            raise InputError(f"unknown generation setting(s): {', '.join(unknown)}; known: {', '.join(GENERATE_KEYS)}")
        changes = {f"generate.{k}": v for k, v in overrides.items() if v is not None}
        g = (cfg.replace(**changes) if changes else cfg).generate
        return cls(g.max_new_tokens, g.temperature, g.top_p, g.repetition_penalty, g.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in GENERATE_KEYS}


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of the session: the user's prompt and each side's answer."""

    prompt: str
    base: str = ""
    adapter: str = ""

    def answer(self, side: str) -> str:
        return self.base if side == "base" else self.adapter


def format_conversation(prompt: str, history: Sequence[tuple[str, str]], template: str, tokenizer=None) -> str:
    """The text before the new answer: earlier (prompt, answer) turns, then the prompt as in training.

    With no history this is exactly `data.format_prompt(prompt, template, tokenizer)`."""
    turns = [(p, a) for p, a in history if a.strip()]
    if not turns:
        return D.format_prompt(prompt, template, tokenizer)
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return D.format_prompt(prompt, template, tokenizer)  # raises the clear 'needs a chat template' error
        messages = []
        for p, a in turns:
            messages += [{"role": "user", "content": p.strip()}, {"role": "assistant", "content": a.strip()}]
        messages.append({"role": "user", "content": prompt.strip()})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    eos = getattr(tokenizer, "eos_token", None) or "<|endoftext|>"
    past = "".join(D.format_example(D.Row(p, a, None), template, tokenizer, eos) for p, a in turns)
    return past + D.format_prompt(prompt, template, tokenizer)


def split_at_marker(text: str, markers: Sequence[str], final: bool = False) -> tuple[str, bool]:
    """(the text that may be shown, whether an end marker was reached).

    Cuts at the earliest complete marker. Otherwise, unless `final`, holds back a tail that could be
    the beginning of a marker ('\\n##' might become '\\n### End'), so it is never shown and then taken back."""
    hits = [i for i in (text.find(m) for m in markers) if i >= 0]
    if hits:
        return text[:min(hits)], True
    if not final:
        for k in range(min(max((len(m) for m in markers), default=0) - 1, len(text)), 0, -1):
            if any(m.startswith(text[-k:]) for m in markers):
                return text[:-k], False
    return text, False


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    side: str
    text: str
    tokens: int
    finish: str  # end | length | stopped
    seconds: float

    @property
    def stopped(self) -> bool:
        return self.finish == "stopped"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "finish": self.finish, "stopped": self.stopped,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Exchange:
    prompt: str
    answers: dict[str, Answer] = field(default_factory=dict)
    settings: GenSettings = field(default_factory=GenSettings)

    def turn(self) -> Turn:
        """This exchange as history for the next prompt."""
        return Turn(self.prompt, *(self.answers[s].text if s in self.answers else "" for s in SIDES))

    @property
    def stopped(self) -> bool:
        return any(a.stopped for a in self.answers.values())


# --- streaming pieces handed to model.generate ------------------------------------------------------

class _TextStream:
    """Receives token ids from model.generate (in the generating thread) and emits new text.

    Duck-typed like transformers' BaseStreamer (put/end), so importing this module needs no transformers."""

    def __init__(self, tokenizer, markers: Sequence[str], on_text: Callable[[str], None]):
        self.tok, self.markers, self.on_text = tokenizer, markers, on_text
        self.ids: list[int] = []
        self.shown = ""  # the answer text already emitted
        self.prompt_seen = False
        self.marker_hit = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands us the prompt
            self.prompt_seen = True
            return
        self.ids += [int(i) for i in value.reshape(-1).tolist()]
        text = self.decode()
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return
        visible, hit = split_at_marker(text, self.markers)
        self.marker_hit |= hit
        self._emit_upto(visible)

    def end(self) -> None:
        pass  # the caller flushes with final_text(), which also releases held-back text

    def decode(self) -> str:
        return self.tok.decode(self.ids, skip_special_tokens=True)

    def _emit_upto(self, visible: str) -> None:
        # Only ever append: if a decoder rewrote earlier text, AnswerDone's final text corrects it.
        if len(visible) > len(self.shown) and visible.startswith(self.shown):
            self.on_text(visible[len(self.shown):])
            self.shown = visible

    def final_text(self) -> str:
        visible, hit = split_at_marker(self.decode(), self.markers, final=True)
        self.marker_hit |= hit
        self._emit_upto(visible)
        return visible.strip()


def _stopping_criteria(should_stop: Callable[[], bool]):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopFlag(StoppingCriteria):
        """Checked after every new token: the Stop button, or the template's end marker."""

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopFlag()])


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text
                                              or "can't allocate memory" in text)


# --- finding the adapter ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AdapterSource:
    name: str  # the run name, or the folder as given
    config: Config  # the run's config: how the base was loaded for training
    adapter_dir: Path


def resolve_adapter(adapter: str) -> AdapterSource:
    """A run name from the store (its finished adapter), or an adapter folder saved by a run.

    Unknown names raise StoreError (with the recent runs); unusable folders raise ModelError."""
    text = (adapter or "").strip()
    path = Path(text).expanduser()
    looks_like_path = os.sep in text or text.startswith((".", "~")) or (os.altsep or "\0") in text
    if not looks_like_path:
        run = S.get_run(text)
        if not S.is_complete(run.adapter_dir):
            status = run.status()
            raise StoreError(f"run {run.run_id} has no finished adapter (it is {status}); resume it "
                             f"(humanlike-tui train --resume {run.run_id}) or delete it "
                             f"(humanlike-tui adapters delete {run.run_id})")
        return AdapterSource(run.run_id, run.config(), run.adapter_dir)
    if not path.is_dir():
        raise ModelError(f"{path}: adapter folder not found; give a run name (humanlike-tui adapters list) "
                         "or the adapter folder of a run")
    for folder in (path, path.parent):
        if (folder / "config.toml").is_file():
            from humanlike_tui.config import load_config

            return AdapterSource(text, load_config(folder / "config.toml"), path)
    raise ModelError(f"{path}: no config.toml beside this adapter, so how its base model was loaded for training "
                     "is unknown; point at the adapter folder inside a run (runs/<name>/adapter) or use the run name")


# --- the generator ----------------------------------------------------------------------------------

class Generator:
    """One base model with one adapter; answers as the base (adapter disabled) and as the adapter.

    Thread-safe: every generation holds `self.lock` (disable_adapter flips state shared by all callers)."""

    def __init__(self, model, tokenizer, config: Config, *, name: str = "adapter", adapter_dir: str | Path = "",
                 device: str = "cpu"):
        self.model, self.tok, self.config = model, tokenizer, config
        self.name, self.adapter_dir, self.device = name, str(adapter_dir), device
        self.lock = threading.RLock()
        self.default_settings = GenSettings.from_config(config)
        self.markers = INSTRUCT_MARKERS if config.data.template == "instruct" else ()

    @classmethod
    def open(cls, adapter: str, *, device: str | None = None, log: Callable[[str], None] = lambda m: None
             ) -> "Generator":
        """Load the run's base model, quantized as trained, and put the run's adapter on it."""
        from humanlike_tui.engine import model as M

        source = resolve_adapter(adapter)
        M.check_adapter_dir(source.adapter_dir, source.config.model.name)  # before the slow base load
        precision = M.resolve_precision(source.config, device)
        base, tok = M.load_base_model(source.config, precision, log=log)
        log(f"putting adapter {source.name} on {source.config.model.name}")
        try:
            model = M.load_adapter(base, source.adapter_dir, source.config.model.name)
        except (ValueError, RuntimeError, KeyError) as exc:  # shapes or module names that do not match
            del base
            gc.collect()
            raise ModelError(f"{source.adapter_dir}: this adapter does not fit {source.config.model.name} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); was the run's config "
                             "changed after training?") from None
        model.eval()
        return cls(model, tok, source.config, name=source.name, adapter_dir=source.adapter_dir,
                   device=precision.device)

    # ---- generation ----

    def settings(self, **overrides: Any) -> GenSettings:
        return GenSettings.from_config(self.config, **overrides)

    def answer_both(self, prompt: str, history: Iterable[Turn] = (), settings: GenSettings | None = None,
                    emit: Emit = ignore, stop: threading.Event | None = None,
                    sides: Sequence[str] = SIDES) -> Exchange:
        """Both answers, base first: one exchange holds the lock throughout, so no other caller can slip in."""
        settings = settings or self.default_settings
        stop = stop or threading.Event()
        history = list(history)
        with self.lock:
            answers = {side: self.answer(side, prompt, history, settings, emit, stop) for side in sides}
        return Exchange(prompt, answers, settings)

    def answer(self, side: str, prompt: str, history: Sequence[Turn] = (), settings: GenSettings | None = None,
               emit: Emit = ignore, stop: threading.Event | None = None) -> Answer:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if not prompt.strip():
            raise InputError("the prompt is empty; type a message first")
        settings = settings or self.default_settings
        stop = stop or threading.Event()
        with self.lock:
            if self.model is None:
                raise GenerationError("the model was unloaded; open the adapter again")
            ids, kept, max_new = self._encode(side, prompt, history, settings)
            emit(AnswerStarted(side, len(ids), kept, max_new))
            if stop.is_set():  # stopped before this side began
                answer = Answer(side, "", 0, "stopped", 0.0)
            else:
                with (self.model.disable_adapter() if side == "base" else contextlib.nullcontext()):
                    answer = self._generate(side, ids, max_new, settings, emit, stop)
            emit(AnswerDone(side, answer.text, answer.tokens, answer.finish, answer.seconds))
            return answer

    def _encode(self, side: str, prompt: str, history: Sequence[Turn], settings: GenSettings
                ) -> tuple[list[int], int, int]:
        """Token ids of the conversation, dropping the oldest turns until max_new_tokens fit the context."""
        context = self.context_length()
        turns = [(t.prompt, t.answer(side)) for t in history if t.answer(side).strip()]
        while True:
            text = format_conversation(prompt, turns, self.config.data.template, self.tok)
            ids = list(self.tok(text, add_special_tokens=False)["input_ids"])  # as in training: no extra BOS
            room = context - len(ids)
            if room >= settings.max_new_tokens or not turns:
                break
            turns = turns[1:]
        if room < 1:
            raise InputError(f"the prompt is {len(ids)} tokens but the model reads at most {context}; shorten it")
        return ids, len(turns), min(settings.max_new_tokens, room)

    def _generate(self, side: str, ids: list[int], max_new: int, settings: GenSettings, emit: Emit,
                  stop: threading.Event) -> Answer:
        import torch

        stream = _TextStream(self.tok, self.markers, lambda piece: emit(AnswerText(side, piece)))
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new, do_sample=not settings.greedy, repetition_penalty=settings.repetition_penalty,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id, use_cache=True,
            streamer=stream, stopping_criteria=_stopping_criteria(lambda: stop.is_set() or stream.marker_hit))
        if not settings.greedy:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)  # silence 'unused sampling flag' notices
        input_ids = torch.tensor([ids], device=self._input_device())
        t0 = time.perf_counter()
        try:
            # The same seed for both sides: with sampling, the two answers differ by the adapter only.
            with torch.random.fork_rng(devices=self._rng_devices()), torch.inference_mode():
                torch.manual_seed(settings.seed)
                out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        except Exception as exc:
            raise self._generation_error(exc, side, len(ids), max_new) from exc
        seconds = time.perf_counter() - t0
        new = out[0, len(ids):].tolist()
        text = stream.final_text()
        if stop.is_set():
            finish = "stopped"
        elif stream.marker_hit or (new and new[-1] == self.tok.eos_token_id):
            finish = "end"
        else:
            finish = "length" if len(new) >= max_new else "end"
        return Answer(side, text, len(new), finish, seconds)

    def _generation_error(self, exc: Exception, side: str, prompt_tokens: int, max_new: int) -> GenerationError:
        if _is_oom(exc):
            self._free_cache()
            where = "GPU" if self.device == "cuda" else "system"
            return GenerationError(
                f"out of {where} memory while generating the {side} answer ({prompt_tokens} prompt tokens + up to "
                f"{max_new} new); lower max new tokens, start a new conversation (less history), or close other "
                "programs using the memory. The model is still loaded; try again.")
        return GenerationError(f"generating the {side} answer failed: {type(exc).__name__}: {exc}")

    def _free_cache(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _input_device(self):
        try:
            return self.model.get_input_embeddings().weight.device
        except AttributeError:
            return "cpu"

    def _rng_devices(self) -> list:
        import torch

        dev = self._input_device()
        return [dev] if getattr(dev, "type", "") == "cuda" and torch.cuda.is_available() else []

    def context_length(self) -> int:
        cfg = self.model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        if not n:
            n = getattr(self.tok, "model_max_length", 2048)
            n = n if n < 10**7 else 2048  # tokenizers without a limit report a huge sentinel
        return int(n)

    # ---- bookkeeping ----

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"adapter": self.name, "adapter_dir": self.adapter_dir, "base_model": c.model.name,
                "quant": c.quant.mode, "template": c.data.template, "device": self.device,
                "context_length": self.context_length() if self.model is not None else None}

    def memory(self) -> dict[str, Any]:
        """This generator's model: parameter count and bytes, base and LoRA apart."""
        return model_memory(self.model) if self.model is not None else {"parameters": 0, "bytes": 0}

    def close(self) -> None:
        """Let go of the model (waits for a running answer: set its stop event first)."""
        with self.lock:
            self.model = None
            self._free_cache()


# --- memory -----------------------------------------------------------------------------------------

def _tensor_bytes(t) -> int:
    return int(t.numel() * t.element_size())


def model_memory(model) -> dict[str, Any]:
    """Parameters and buffers of one model (each storage once), base and LoRA weights apart.

    4-bit weights count as their packed bytes (two weights per byte), which is what they occupy."""
    seen: set[int] = set()
    base_n = base_b = lora_n = lora_b = 0
    named = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in named:
        key = t.data_ptr()
        if key in seen or t.device.type == "meta":
            continue
        seen.add(key)
        if "lora_" in name:
            lora_n, lora_b = lora_n + t.numel(), lora_b + _tensor_bytes(t)
        else:
            base_n, base_b = base_n + t.numel(), base_b + _tensor_bytes(t)
    return {"parameters": int(base_n), "bytes": int(base_b), "lora_parameters": int(lora_n),
            "lora_bytes": int(lora_b)}


def live_base_models() -> list:
    """Every transformers model alive in this process, found by the garbage collector (so a copy held
    anywhere counts), outermost only: a PhiForCausalLM holds a PhiModel, which is one model, not two."""
    import sys

    if "transformers" not in sys.modules:
        return []
    from transformers import PreTrainedModel

    gc.collect()
    found = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, PreTrainedModel):
                found.append(obj)
        except Exception:  # objects with odd __class__ (proxies) are not models
            continue
    inner = {id(sub) for m in found for sub in m.modules() if sub is not m and isinstance(sub, PreTrainedModel)}
    return [m for m in found if id(m) not in inner]


def memory_report() -> dict[str, Any]:
    """How many base models are loaded in this process and what they weigh.

    {"base_models": N, "parameters": ..., "bytes": ..., "lora_parameters": ..., "lora_bytes": ...,
     "models": [{"class": "PhiForCausalLM", "name_or_path": ..., "parameters": ..., "bytes": ...}, ...],
     "cuda_allocated": bytes or None}
    A Generator shows base_models == 1: the base answer reuses the adapter's base with the LoRA off."""
    models = live_base_models()
    per_model = []
    totals = {"parameters": 0, "bytes": 0, "lora_parameters": 0, "lora_bytes": 0}
    for m in models:
        mem = model_memory(m)
        for k in totals:
            totals[k] += mem[k]
        per_model.append({"class": type(m).__name__, "name_or_path": str(getattr(m, "name_or_path", "")), **mem})
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = int(torch.cuda.memory_allocated())
    except ImportError:
        pass
    return {"base_models": len(models), **totals, "models": per_model, "cuda_allocated": cuda}


def log_to(emit: Emit) -> Callable[[str], None]:
    """Loading messages as Log events, for listeners that show the engine's log."""
    return lambda message: emit(Log(message))
