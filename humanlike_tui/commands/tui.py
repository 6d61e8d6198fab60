"""No subcommand: the Textual workbench."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    try:
        from humanlike_tui.ui.app import run_app
        from humanlike_tui.ui.exit_guard import finish_and_exit
    except ImportError as exc:  # a broken install: say what is missing, keep the headless commands usable
        print(f"error: the workbench cannot start ({exc}); reinstall humanlike-tui with its dependencies, "
              "or use the headless commands (humanlike-tui --help)", file=sys.stderr)
        return 1
    return finish_and_exit(run_app(args))
