"""`humanlike-tui chat`: the base model and an adapter answer one prompt, one after the other.

    humanlike-tui chat --adapter RUN --prompt "How was your weekend?"
    humanlike-tui chat --model builtin:smollm2-135m --prompt "..."   a base model alone, no adapter
    humanlike-tui chat --adapter RUN --prompt "..." --json --temperature 0

Without --json both answers stream to the terminal as they are written (loading messages go to
stderr). With --json nothing streams; stdout gets one JSON object:

    {"adapter": "RUN",                 the run name (or adapter folder) as given
     "base_model": "builtin:tiny-phi", the base both answers come from (one copy in memory)
     "prompt": "...",                  the prompt as typed
     "formatted_prompt": "...",        what the model read: the persona and prompt in the run's training template
     "settings": {"max_new_tokens": 200, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1,
                  "seed": 0},
     "answers": {"base":    {"text": "...", "tokens": 37, "finish": "end", "stopped": false, "seconds": 1.2},
                 "adapter": {...same keys...}}}

finish: "end" (the model ended its answer), "length" (max_new_tokens reached) or "stopped" (Ctrl+C).
Settings default to the run's [generate] config; the flags override them. Exit codes: 0 answered
(also when stopped with Ctrl+C), 2 unknown run, unusable adapter or bad setting, 1 generation failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from humanlike_tui.cli import add_trust_argument, consent_to_remote_code
from humanlike_tui.errors import InputError
from humanlike_tui.events import AnswerDone, AnswerStarted, AnswerText
from humanlike_tui.formatting import printable
from humanlike_tui.events import Event

SIDE_TITLES = {"base": "base model (adapter off)", "adapter": "adapter"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", metavar="NAME",
                       help="a run name (see: humanlike-tui adapters list) or a run's adapter folder")
    which.add_argument("--model", metavar="NAME",
                       help="talk to a base model alone, no adapter (e.g. builtin:smollm2-135m, a hub id or a "
                            "local folder), loaded as its preset loads it (the default preset's settings otherwise)")
    parser.add_argument("--prompt", required=True, metavar="TEXT", help="the message both models answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object with both answers, no streaming")
    parser.add_argument("--max-new-tokens", type=int, metavar="N", help="longest answer in tokens")
    parser.add_argument("--temperature", type=float, metavar="T", help="sampling temperature; 0 = greedy")
    parser.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling, in (0, 1]")
    parser.add_argument("--repetition-penalty", type=float, metavar="R", help="1 = off")
    parser.add_argument("--seed", type=int, metavar="S", help="sampling seed (same seed, same answer)")
    parser.add_argument("--only", choices=("base", "adapter"), help="answer with one side only")
    parser.add_argument("--system", metavar="TEXT",
                        help="the persona (system message); default: the run's data.system_prompt, '' for none")
    add_trust_argument(parser)


class StreamPrinter:
    """Prints the answers as they stream: a heading per side, then its text, token by token."""

    def __init__(self, adapter: str, out=None, base_only: bool = False):
        self.adapter = adapter
        self.base_only = base_only
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        if isinstance(event, AnswerStarted):
            title = SIDE_TITLES[event.side] + (f" {self.adapter}" if event.side == "adapter" else "")
            if self.base_only:
                title = f"base model {self.adapter}"
            self.out.write(f"── {title} ──\n")
        elif isinstance(event, AnswerText):
            self.out.write(printable(event.text))  # no terminal escapes from a model's output
        elif isinstance(event, AnswerDone):
            note = {"end": "", "length": " (max new tokens reached)", "stopped": " (stopped)"}[event.finish]
            self.out.write(f"\n[{event.tokens} tokens, {event.seconds:.1f}s{note}]\n\n")
        self.out.flush()


def install_interrupt(stop: threading.Event):
    """First Ctrl+C stops the answer being written (and skips the rest); a second one aborts."""
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (tests)
        return None


def settings_overrides(args: argparse.Namespace) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
            "repetition_penalty": args.repetition_penalty, "seed": args.seed}


def result_json(gen, exchange, formatted_prompt: str) -> dict:
    return {"adapter": gen.name if gen.has_adapter else None, "base_model": gen.config.model.name,
            "prompt": exchange.prompt,
            "formatted_prompt": formatted_prompt, "settings": exchange.settings.to_dict(),
            "answers": {side: answer.to_dict() for side, answer in exchange.answers.items()}}


def open_generator(args: argparse.Namespace, log):
    """(generator, settings, sides): a run's adapter on its base, or with --model a base model alone.
    The names and settings are checked before the slow model load, so a typo fails at once."""
    from humanlike_tui.engine.inference.generator import Generator, base_config, resolve_adapter
    from humanlike_tui.records import GenSettings

    if args.model:
        if args.only == "adapter":
            raise InputError("--only adapter: --model talks to a base model alone; give --adapter RUN instead")
        config = base_config(args.model)
        settings = GenSettings.from_config(config, **settings_overrides(args))
        consent_to_remote_code(args, config)
        return Generator.open_base(args.model, log=log), settings, ("base",)
    source = resolve_adapter(args.adapter)
    settings = GenSettings.from_config(source.config, **settings_overrides(args))
    consent_to_remote_code(args, source.config)  # a run's stored config alone never runs a model's code
    sides = (args.only,) if args.only else ("base", "adapter")
    return Generator.open(args.adapter, log=log), settings, sides


def run(args: argparse.Namespace) -> int:
    from humanlike_tui.engine.inference.streaming import format_conversation

    log = (lambda message: print(message, file=sys.stderr)) if not args.json else (lambda message: None)
    gen, settings, sides = open_generator(args, log)
    if args.system is not None:
        gen.system_prompt = args.system
    stop = threading.Event()
    previous = install_interrupt(stop)
    try:
        emit = (lambda event: None) if args.json else StreamPrinter(gen.name, base_only=not gen.has_adapter)
        exchange = gen.answer_both(args.prompt, settings=settings, emit=emit, stop=stop, sides=sides)
        if args.json:
            formatted = format_conversation(args.prompt, (), gen.config.data.template, gen.tok, gen.system_prompt)
            print(json.dumps(result_json(gen, exchange, formatted), ensure_ascii=False))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        gen.close()
    return 0
