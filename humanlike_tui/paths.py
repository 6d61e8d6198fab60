"""Where things live on disk. platformdirs by default; `HUMANLIKE_TUI_HOME` moves everything under
one folder (tests, portable installs, several profiles)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "humanlike-tui"
HOME_ENV = "HUMANLIKE_TUI_HOME"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def home_problem() -> str | None:
    """What is wrong with HUMANLIKE_TUI_HOME, in words, or None: it must name a folder (made when missing)."""
    home = _home()
    if home is None or home.is_dir() or not os.path.lexists(home):
        return None
    what = "a broken link" if home.is_symlink() and not home.exists() else "a file"
    return (f"{HOME_ENV}={home} is {what}, not a folder; set it to a folder (it is created if missing), or unset it "
            "to use the usual places")


def data_dir() -> Path:
    """Runs and adapters."""
    home = _home()
    if home is not None:
        return home / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Builtin models and tokenizers, made on first use; safe to delete."""
    home = _home()
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    """Saved configs (the Config screen's default location)."""
    home = _home()
    if home is not None:
        return home / "config"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    """Crash reports (one file per crash)."""
    home = _home()
    if home is not None:
        return home / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def runs_dir() -> Path:
    return data_dir() / "runs"
