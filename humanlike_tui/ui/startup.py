"""The config the workbench opens with: --config or --preset when given, else the one saved from the
Config screen, else the default preset (a broken saved config opens the preset and says why)."""

from __future__ import annotations

import argparse
from pathlib import Path

from humanlike_tui import config as cfgmod, paths
from humanlike_tui.config import DEFAULT_PRESET, Config
from humanlike_tui.errors import ConfigError


def initial_config(args: argparse.Namespace) -> tuple[Config, Path, str]:
    """--config/--preset if given; else the config saved from the Config screen; else the default preset.
    A broken saved config does not stop the app: it opens with the preset and says why."""
    default_path = paths.config_dir() / "config.toml"
    overrides = getattr(args, "overrides", None) or []
    if getattr(args, "config", None):
        return cfgmod.apply_overrides(cfgmod.load_config(args.config), overrides), Path(args.config), ""
    if getattr(args, "preset", None):
        return cfgmod.apply_overrides(cfgmod.load_preset(args.preset), overrides), default_path, ""
    note = ""
    cfg = None
    if default_path.exists():
        try:
            cfg = cfgmod.load_config(default_path)
        except ConfigError as exc:
            note = f"{default_path} has problems, opened the {DEFAULT_PRESET} preset instead:\n{exc}"
    if cfg is None:
        cfg = cfgmod.load_preset(DEFAULT_PRESET)
    return cfgmod.apply_overrides(cfg, overrides), default_path, note
