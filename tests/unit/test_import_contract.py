"""The import contract (tests/support/import_rules.py) holds for the real package, and it fails when a
forbidden import is added to a copy of it: the engine importing textual, a circle, a screen importing an
engine module, a private name taken from another module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.import_rules import violations

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_keeps_the_import_contract():
    assert violations(ROOT) == []


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(ROOT / "humanlike_tui", tmp_path / "humanlike_tui",
                    ignore=shutil.ignore_patterns("__pycache__", "*.jsonl"))
    return tmp_path


def add_line(root: Path, module: str, line: str, inside_function: bool = False) -> None:
    path = root / (module.replace(".", "/") + ".py")
    text = path.read_text(encoding="utf-8")
    text += (f"\n\ndef _added():\n    {line}\n" if inside_function else f"\n{line}\n")
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("module, line, lazy, expected", [
    ("humanlike_tui.engine.training.schedule", "import textual", False, "only the UI may import textual"),
    ("humanlike_tui.engine.data.formatting", "from humanlike_tui.ui import app", True, "engine may not import ui"),
    ("humanlike_tui.events", "from humanlike_tui.engine.storage import runs", True, "core may not import engine"),
    ("humanlike_tui.events", "import torch", True, "core modules stay stdlib-light"),
    ("humanlike_tui.engine.models.precision", "from humanlike_tui.engine.training import run", True,
     "import circle"),
    ("humanlike_tui.ui.screens.chat", "from humanlike_tui.engine.inference import generator", True,
     "through the service protocols"),
    ("humanlike_tui.ui.screens.chat", "from humanlike_tui.ui.screens import adapters", True,
     "a screen never imports another screen"),
    ("humanlike_tui.ui.services", "from humanlike_tui.engine.storage import runs", False,
     "only inside functions"),
    ("humanlike_tui.ui.app", "import torch", False, "first frame"),
    ("humanlike_tui.engine.bench.compare", "from humanlike_tui.engine.models.builtins import _sample_corpus", False,
     "private name"),
    ("humanlike_tui.engine.evaluation.scoring", "from humanlike_tui.engine.training import steps", True,
     "evaluation may not import training"),
    ("humanlike_tui.engine.data.preview", "from humanlike_tui.engine.models import loading", True,
     "data may not import models"),
])
def test_a_forbidden_import_breaks_the_contract(copy, module, line, lazy, expected):
    assert violations(copy) == []  # the copy is clean before the change
    add_line(copy, module, line, inside_function=lazy)
    found = violations(copy)
    assert any(expected in v for v in found), found


def test_a_private_attribute_of_another_module_breaks_the_contract(copy):
    add_line(copy, "humanlike_tui.engine.bench.compare",
             "from humanlike_tui.engine.models import builtins as B\nB._sample_corpus()")
    assert any("uses private humanlike_tui.engine.models.builtins._sample_corpus" in v for v in violations(copy))
