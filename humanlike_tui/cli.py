"""Command line: the TUI by default, headless subcommands for scripts and bigger machines.

Each subcommand lives in `humanlike_tui/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; they are imported only when chosen, so `humanlike-tui --help` and the TUI's
first frame never wait for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterable

from humanlike_tui import __version__
from humanlike_tui.config import DEFAULT_PRESET  # noqa: F401 - train's and hw's default (commands import it here)
from humanlike_tui.errors import HumanlikeError, InputError, crash_context, crash_line, write_crash_report

COMMANDS = {
    "train": "fine-tune a model (SFT, DPO or both) with 4-bit QLoRA",
    "hw": "hardware report and VRAM plan for a config",
    "chat": "answer a prompt with the base model and an adapter, side by side",
    "eval": "human-likeness scorecard of an adapter against its base model",
    "adapters": "list, rename, delete and export trained adapters",
    "picks": "list, show, export and delete the answers you picked on the Chat screen",
    "bench": "benchmark the original recipe against this engine",
    "serve": "a local OpenAI-compatible server (chat completions, streaming) for an adapter",
    "download": "fetch a hub model into the cache with progress (resumes an interrupted download)",
    "data": "what training makes of a data file: rows per shape, dropped rows, turns that carry loss",
}


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--config / --preset / --set, shared by every command that takes a config."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--config", metavar="FILE", help="config TOML file")
    group.add_argument("--preset", metavar="NAME", help=f"a shipped preset ({', '.join(_preset_names())})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.max_steps=100 (repeatable)")
    add_trust_argument(parser)


def _preset_names() -> list[str]:
    from humanlike_tui.config import preset_names

    return preset_names()


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model whose config sets model.trust_remote_code to run the Python code "
                             "shipped with it (only for models you trust; a config alone never allows it)")


def consent_to_remote_code(args: argparse.Namespace, cfg) -> None:
    """Before any model loads: a config asking for remote code needs --trust-remote-code on this command
    (ModelError, exit 2, otherwise); with it, say so on stderr first."""
    from humanlike_tui import config as cfgmod

    crash_context["config"] = cfg  # every command that loads a model passes here: a crash report shows it
    if cfg is None or not cfg.model.trust_remote_code:
        return
    if getattr(args, "trust_remote_code", False):
        cfgmod.allow_remote_code(cfg.model.name)
        print(cfgmod.remote_code_warning(cfg), file=sys.stderr, flush=True)
    cfgmod.remote_code_consent(cfg)


def config_from_args(args: argparse.Namespace, default_preset: str | None = "gaming-8gb"):
    """The config the user asked for, with --set applied; raises ConfigError with every problem."""
    from humanlike_tui import config as cfgmod

    if getattr(args, "config", None):
        cfg = cfgmod.load_config(args.config)
    elif getattr(args, "preset", None) or default_preset:
        cfg = cfgmod.load_preset(args.preset or default_preset)
    else:
        return None
    cfg = cfgmod.apply_overrides(cfg, getattr(args, "overrides", []) or [])
    crash_context["config"] = cfg
    return cfg


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `commands`, only those subcommands get their arguments (the others
    keep their name and help line): importing every command module costs ~0.13 s, which the workbench's
    first frame and every command would otherwise wait for."""
    chosen = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="humanlike-tui",
        description="Fine-tune a small open LLM into a warm, human-sounding conversational partner. "
                    "With no command, opens the terminal workbench.")
    parser.add_argument("--version", action="version", version=f"humanlike-tui {__version__}")
    add_config_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in chosen:
            _command_module(name).add_arguments(p)
    return parser


def _command_module(name: str):
    return importlib.import_module(f"humanlike_tui.commands.{name}")


def never_fail_on_output(streams=None) -> None:
    """Answers and data are full of emoji. On Windows, output piped to a file or another program uses
    the locale's code page (cp1252, ...), where print() would raise UnicodeEncodeError mid-run; write
    a replacement character instead. UTF-8 streams (Linux, Windows consoles) are left alone."""
    for stream in streams if streams is not None else (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding not in ("utf8", "utf8sig") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _during_interrupt(exc: BaseException) -> bool:
    """Whether `exc` was raised while a KeyboardInterrupt (Ctrl+C, or a stop signal before the first step)
    was being handled: the person asked to stop, and that is what happened."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt):
            return True
        e = e.__cause__ or e.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    never_fail_on_output()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(commands=[word for word in argv if word in COMMANDS])
    args = parser.parse_args(argv)
    crash_context.clear()
    from humanlike_tui.paths import home_problem

    if home_problem():  # every command reads or writes there: one message instead of an OS error later
        print(f"error: {home_problem()}", file=sys.stderr)
        return 2
    try:
        if args.command is None:
            from humanlike_tui.commands import tui

            return tui.run(args)
        return _command_module(args.command).run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except HumanlikeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in a crash report
        if _during_interrupt(exc):  # e.g. Ctrl+C cut torch's import short and the cleanup tripped on it
            print("interrupted", file=sys.stderr)
            return 130
        report = write_crash_report(exc)
        print(f"error: {crash_line(exc, report)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
