"""`humanlike-tui adapters`: not built yet (see the issues)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("humanlike-tui adapters is not available yet", file=sys.stderr)
    return 1
