"""The program's own error types. Everything a user can cause ends in one of these, with a message
that names the problem and the fix; the CLI turns them into exit code 2 (input) or 1 (training)."""

from __future__ import annotations


class HumanlikeError(Exception):
    """Base of every error we raise on purpose."""

    exit_code = 1


class InputError(HumanlikeError):
    """Something the user gave us is wrong (config, data, a name, a file). Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """One or more config problems, each as 'key.path: message'."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        head = "invalid config" if len(self.problems) == 1 else f"invalid config ({len(self.problems)} problems)"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


class DataError(InputError):
    """The data set cannot be used (missing file, no usable rows, missing columns ...)."""


class ModelError(InputError):
    """The model or adapter cannot be loaded (unknown name, hub unreachable, wrong base ...)."""


class RemoteCodeRefused(ModelError):
    """A config asks to run the model's own code (model.trust_remote_code) and nobody agreed yet. The
    workbench asks the person and tries again; the commands say to pass --trust-remote-code."""

    def __init__(self, message: str, model_name: str) -> None:
        super().__init__(message)
        self.model_name = model_name


class StoreError(InputError):
    """A run or adapter name that does not exist, or is not a safe name."""


class TrainingError(HumanlikeError):
    """Training itself failed (out of memory beyond recovery, NaN loss, disk full ...). Exit code 1."""

    exit_code = 1


class GenerationError(HumanlikeError):
    """Generation itself failed (out of memory, a broken model). Exit code 1."""

    exit_code = 1


# --- unexpected errors: one line for the person, the details in a crash report ----------------------------

CRASH_PACKAGES = ("humanlike-tui", "torch", "transformers", "peft", "bitsandbytes", "accelerate", "trl",
                  "safetensors", "textual", "rich", "psutil")
crash_context: dict = {}  # what the command works on (its config), noted as soon as it is known


def write_crash_report(exc: BaseException, command: str | None = None, config=None):
    """Write the traceback, the versions, the command line and the config of an unexpected error to a
    new file in the user log folder (paths.log_dir). Returns its path, or None if it could not be
    written (a full disk may be what went wrong); never raises."""
    import datetime
    import os
    import platform
    import sys
    import traceback
    from importlib import metadata

    from humanlike_tui.paths import log_dir

    config = config if config is not None else crash_context.get("config")
    lines = [f"humanlike-tui crash report, {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"command: {command if command is not None else ' '.join(sys.argv)}",
             f"python: {sys.version.split()[0]} on {platform.platform()}"]
    for name in CRASH_PACKAGES:
        try:
            lines.append(f"{name}: {metadata.version(name)}")
        except Exception:  # noqa: BLE001 - not installed, or a broken install
            lines.append(f"{name}: not installed")
    lines += ["", "traceback:", "".join(traceback.format_exception(exc)).rstrip(), "", "config:"]
    try:
        import json

        data = config.to_dict() if hasattr(config, "to_dict") else config
        lines.append(json.dumps(data, indent=2, sort_keys=True, default=repr))
    except Exception as inner:  # noqa: BLE001 - the report must not fail on the config
        lines.append(f"(not readable: {type(inner).__name__})")
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="replace")
        return path
    except Exception:  # noqa: BLE001
        return None


def crash_line(exc: BaseException, report) -> str:
    """The one line a person sees for an unexpected error."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    where = (f"the details are in {report}" if report is not None
             else "no crash report could be written (is the disk full?)")
    return f"unexpected error ({what}); this is a bug in humanlike-tui, {where}"
