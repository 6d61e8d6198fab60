"""The builtin models are made offline and deterministically: same tokenizer and weights in any process."""

from __future__ import annotations

import subprocess
import sys

from humanlike_tui.engine import models as M
from humanlike_tui.engine.models import builtins as builtins_mod


def _digest_in_subprocess() -> str:
    code = ("from humanlike_tui.engine.models.builtins import build_tokenizer, _sample_corpus; import hashlib;"
            "print(hashlib.sha256(build_tokenizer(_sample_corpus()).backend_tokenizer.to_str().encode()).hexdigest())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_tokenizer_is_the_same_in_another_process():
    import hashlib

    here = hashlib.sha256(M.build_tokenizer(builtins_mod._sample_corpus()).backend_tokenizer.to_str().encode()).hexdigest()
    assert _digest_in_subprocess() == here


def test_tiny_model_weights_are_deterministic(tmp_path, monkeypatch):
    digests = []
    for name in ("a", "b"):
        monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(tmp_path / name))
        path = M.ensure_builtin("builtin:tiny-phi")
        digests.append(M.file_digest(path / "model.safetensors"))
        assert (path / "COMPLETE").exists() and (path / "tokenizer.json").exists()
    assert digests[0] == digests[1]


def test_tiny_tokenizer_round_trips_emoji_and_has_distinct_pad():
    tok = M.build_tokenizer(builtins_mod._sample_corpus())
    text = "Haha, that's awesome! 😂🎉 What about you?"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.pad_token_id != tok.eos_token_id


def test_phi2_random_has_phi2_shapes():
    c = M.phi2_config()
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads) == \
        (51200, 2560, 10240, 32, 32)
    assert c.rope_parameters["partial_rotary_factor"] == 0.4


def test_pickle_only_model_folder_is_refused(tmp_path):
    import pytest

    from humanlike_tui.config import Config
    from humanlike_tui.errors import ModelError

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="pickle"):
        M.resolve_model_path(Config().replace(**{"model.name": str(tmp_path)}))


def test_a_second_build_never_deletes_a_complete_copy(tmp_path, monkeypatch):
    """The TUI and a CLI run may both make the builtin model on first use: the first one in wins."""
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(tmp_path))
    target = M.ensure_builtin("builtin:tiny-phi")
    before = M.file_digest(target / "model.safetensors")
    late = tmp_path / "late-build"
    late.mkdir()
    (late / "COMPLETE").write_text("x")
    builtins_mod._install_builtin(late, target)
    assert not late.exists() and M.file_digest(target / "model.safetensors") == before
