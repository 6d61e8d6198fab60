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
  could be the start of the template's end marker ("\n### End") is held back until it is clear that it
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import GenerationError
from humanlike_tui.events import SIDES, AnswerDone, AnswerStarted, AnswerText
from humanlike_tui.errors import InputError, ModelError, StoreError
from humanlike_tui.events import Emit, ignore
from humanlike_tui.records import Answer, Exchange, GenSettings, Turn
from humanlike_tui.engine.inference.streaming import (markers_for, TextStream, is_oom, stopping_criteria,
                                                      format_conversation)


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


def base_config(model_name: str) -> Config:
    """How a base model alone is loaded and prompted: the shipped preset made for it (smol-cpu for
    builtin:smollm2-135m, demo for builtin:tiny-phi), else the default preset with model.name = it."""
    from humanlike_tui.config import DEFAULT_PRESET, load_preset, preset_names

    name = (model_name or "").strip()
    if not name:
        raise InputError("--model: give a model (a hub id, a local folder or builtin:smollm2-135m)")
    for preset in preset_names():
        cfg = load_preset(preset)
        if cfg.model.name == name:
            return cfg
    return load_preset(DEFAULT_PRESET).replace(**{"model.name": name})


class Generator:
    """One base model with one adapter; answers as the base (adapter disabled) and as the adapter.

    Thread-safe: every generation holds `self.lock` (disable_adapter flips state shared by all callers)."""

    def __init__(self, model, tokenizer, config: Config, *, name: str = "adapter", adapter_dir: str | Path = "",
                 device: str = "cpu"):
        self.model, self.tok, self.config = model, tokenizer, config
        self.name, self.adapter_dir, self.device = name, str(adapter_dir), device
        self.lock = threading.RLock()
        self.default_settings = GenSettings.from_config(config)
        self.template = D.resolve_template(config.data.template, tokenizer)  # auto -> chat or instruct
        self.system_prompt = config.data.system_prompt  # the persona (data.system_prompt); Chat may change it
        self.markers = markers_for(self.template)

    @classmethod
    def open(cls, adapter: str, *, device: str | None = None, log: Callable[[str], None] = lambda m: None
             ) -> "Generator":
        """Load the run's base model, quantized as trained, and put the run's adapter on it."""
        from humanlike_tui.engine import models as M

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

    @classmethod
    def open_base(cls, model_name: str, *, device: str | None = None, log: Callable[[str], None] = lambda m: None
                  ) -> "Generator":
        """A base model alone (no adapter), loaded as its shipped preset loads it (base_config): a new
        user can talk to the real model before training anything. It answers as the base side only."""
        from humanlike_tui.engine import models as M

        config = base_config(model_name)
        precision = M.resolve_precision(config, device)
        base, tok = M.load_base_model(config, precision, log=log)
        base.eval()
        return cls(base, tok, config, name=config.model.name, adapter_dir="", device=precision.device)

    @property
    def has_adapter(self) -> bool:
        # A LoRA-wrapped model (peft's disable_adapter) has an adapter side even when no folder is named.
        return bool(self.adapter_dir) or hasattr(self.model, "disable_adapter")

    # ---- generation ----

    def settings(self, **overrides: Any) -> GenSettings:
        return GenSettings.from_config(self.config, **overrides)

    def answer_both(self, prompt: str, history: Iterable[Turn] = (), settings: GenSettings | None = None,
                    emit: Emit = ignore, stop: threading.Event | None = None,
                    sides: Sequence[str] = SIDES, system: str | None = None) -> Exchange:
        """Both answers, base first: one exchange holds the lock throughout, so no other caller can slip in."""
        settings = settings or self.default_settings
        stop = stop or threading.Event()
        history = list(history)
        with self.lock:
            answers = {side: self.answer(side, prompt, history, settings, emit, stop, system=system) for side in sides}
        return Exchange(prompt, answers, settings)

    def answer(self, side: str, prompt: str, history: Sequence[Turn] = (), settings: GenSettings | None = None,
               emit: Emit = ignore, stop: threading.Event | None = None, system: str | None = None) -> Answer:
        """One side's answer. `system`: the persona for this answer (None: self.system_prompt, the run's
        data.system_prompt unless changed; '' for none)."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if side == "adapter" and not self.has_adapter:
            raise InputError(f"{self.name} is a base model alone, with no adapter: it answers as the base only")
        if not prompt.strip():
            raise InputError("the prompt is empty; type a message first")
        settings = settings or self.default_settings
        stop = stop or threading.Event()
        with self.lock:
            if self.model is None:
                raise GenerationError("the model was unloaded; open the adapter again")
            ids, kept, max_new = self._encode(side, prompt, history, settings,
                                              self.system_prompt if system is None else system)
            emit(AnswerStarted(side, len(ids), kept, max_new))
            if stop.is_set():  # stopped before this side began
                answer = Answer(side, "", 0, "stopped", 0.0)
            else:
                off = side == "base" and self.has_adapter
                with (self.model.disable_adapter() if off else contextlib.nullcontext()):
                    answer = self._generate(side, ids, max_new, settings, emit, stop)
            emit(AnswerDone(side, answer.text, answer.tokens, answer.finish, answer.seconds))
            return answer

    def _encode(self, side: str, prompt: str, history: Sequence[Turn], settings: GenSettings, system: str = ""
                ) -> tuple[list[int], int, int]:
        """Token ids of the conversation: the newest turns that leave max_new_tokens of room in the context.

        The count kept is searched (1, 2, 4, ... turns, then halving the gap), so a long history costs a
        handful of tokenizations of the turns that fit, not one tokenization of everything per dropped turn
        (that was quadratic: 2,000 turns took over 100 s)."""
        context = self.context_length()
        turns = [(t.prompt, t.answer(side)) for t in history if t.answer(side).strip()]

        def encode(kept: int) -> list[int]:  # the prompt after the newest `kept` turns
            text = format_conversation(prompt, turns[len(turns) - kept:] if kept else [], self.template, self.tok,
                                       system=system)
            return list(self.tok(text, add_special_tokens=False)["input_ids"])  # as in training: no extra BOS

        def fits(ids: list[int]) -> bool:
            return context - len(ids) >= settings.max_new_tokens

        kept, ids = 0, encode(0)
        if turns and fits(ids):
            kept, ids = _most_that_fit(len(turns), encode, fits, ids)
        room = context - len(ids)
        if room < 1:
            raise InputError(f"the prompt is {len(ids)} tokens but the model reads at most {context}; shorten it")
        return ids, kept, min(settings.max_new_tokens, room)

    def _generate(self, side: str, ids: list[int], max_new: int, settings: GenSettings, emit: Emit,
                  stop: threading.Event) -> Answer:
        import torch

        stream = TextStream(self.tok, self.markers, lambda piece: emit(AnswerText(side, piece)))
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new, do_sample=not _greedy(settings),
            repetition_penalty=settings.repetition_penalty,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id, use_cache=True,
            streamer=stream, stopping_criteria=stopping_criteria(stop.is_set, stream, prompt_len=len(ids)))
        if not _greedy(settings):
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
        if is_oom(exc):
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
                "quant": c.quant.mode, "template": self.template, "device": self.device,
                "context_length": self.context_length() if self.model is not None else None}

    def memory(self) -> dict[str, Any]:
        """This generator's model: parameter count and bytes, base and LoRA apart."""
        return model_memory(self.model) if self.model is not None else {"parameters": 0, "bytes": 0}

    def close(self) -> None:
        """Let go of the model (waits for a running answer: set its stop event first)."""
        with self.lock:
            self.model = None
            self._free_cache()


# Below this, sampling is greedy: logits divided by 1e-300 overflow to inf and sampling fails on NaN
# probabilities, while any temperature this small already picks the likeliest token (its limit as T -> 0).
MIN_SAMPLING_TEMPERATURE = 1e-4


def _greedy(settings: GenSettings) -> bool:
    return settings.greedy or settings.temperature < MIN_SAMPLING_TEMPERATURE


def _most_that_fit(total: int, encode: Callable[[int], list[int]], fits: Callable[[list[int]], bool],
                   ids: list[int]) -> tuple[int, list[int]]:
    """The largest k <= total whose encode(k) fits, given that encode(0) (= ids) fits; token counts grow
    with k. Doubling then bisection: about 2 log2(k) encodings of at most 2k turns."""
    good, good_ids, bad = 0, ids, total + 1
    k = 1
    while k < bad:
        candidate = encode(k)
        if not fits(candidate):
            bad = k
            break
        good, good_ids = k, candidate
        if k == total:
            return good, good_ids
        k = min(k * 2, total)
    while bad - good > 1:
        mid = (good + bad) // 2
        candidate = encode(mid)
        if fits(candidate):
            good, good_ids = mid, candidate
        else:
            bad = mid
    return good, good_ids


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
