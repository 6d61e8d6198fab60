"""ensure_builtin makes only the two random phi models; builtin:smollm2-135m goes to its converter (it once
built a 5.6 GB random phi-2 under the real model's name, which the TUI's warm-up then loaded)."""

import pytest

from humanlike_tui.engine.models import builtins, gguf_import
from humanlike_tui.errors import ModelError


def test_the_real_model_goes_to_its_converter(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(gguf_import, "ensure_smollm2", lambda **kw: calls.append(kw) or tmp_path)
    assert builtins.ensure_builtin("builtin:smollm2-135m") == tmp_path
    assert len(calls) == 1 and callable(calls[0]["progress"])


def test_an_unknown_builtin_is_refused_by_name():
    with pytest.raises(ModelError, match="builtin:nope.*not a builtin model"):
        builtins.ensure_builtin("builtin:nope")
