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


class StoreError(InputError):
    """A run or adapter name that does not exist, or is not a safe name."""


class TrainingError(HumanlikeError):
    """Training itself failed (out of memory beyond recovery, NaN loss, disk full ...). Exit code 1."""

    exit_code = 1


class GenerationError(HumanlikeError):
    """Generation itself failed (out of memory, a broken model). Exit code 1."""

    exit_code = 1
