"""Reliability round 3, model folders: a config.json with absurd, negative or non-numeric shapes, weights
that do not match their config, and unreadable tokenizer files end in exit 2 naming the problem, before
anything is allocated, with no run folder left (never an out-of-memory kill, "training failed" or a hub
error for a folder that is right here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from reliability_helpers import FAST

from humanlike_tui import cli
from humanlike_tui.engine.models.builtins import ensure_builtin


def model_folder(tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(ensure_builtin("builtin:tiny-phi"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def train(folder: Path, capsys) -> tuple[int, str]:
    code = cli.main(["train", *FAST, "--set", f"model.name={folder}", "--set", "train.max_steps=1"])
    return code, capsys.readouterr().err


def no_runs(home: Path) -> bool:
    runs = home / "runs"
    return not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


def test_a_model_bigger_than_the_machine_is_refused_before_loading(home, tmp_path, capsys, monkeypatch):
    folder = model_folder(tmp_path)
    from humanlike_tui.engine.models import config_check

    monkeypatch.setattr(config_check, "machine_ram", lambda: 2 * 2**20)  # ... on a machine with 2 MB of RAM
    code, err = train(folder, capsys)
    assert code == 2, err
    assert "its weights alone need" in err and "more than this machine's memory (2.0 MB)" in err, err
    assert "nothing was loaded" in err and no_runs(home)


@pytest.mark.parametrize("changes, words", [
    ({"hidden_size": 1_000_000}, "trillion parameters"),
    ({"vocab_size": 10**12}, "more than this machine's memory"),
    ({"num_hidden_layers": 100_000_000}, "num_hidden_layers is 100,000,000, past the limit of 10,000"),
    ({"hidden_size": -128}, "hidden_size must be a positive whole number, got -128"),
    ({"num_hidden_layers": "two"}, "num_hidden_layers must be a positive whole number, got 'two'"),
    ({"num_attention_heads": 2.5}, "num_attention_heads must be a positive whole number, got 2.5"),
], ids=["hidden", "vocab", "layers", "negative", "text", "fraction"])
def test_absurd_or_bad_shapes_are_exit_2_naming_the_key(home, tmp_path, capsys, changes, words):
    code, err = train(model_folder(tmp_path, **changes), capsys)
    assert code == 2, err
    assert words in err and "Traceback" not in err and "training failed" not in err, err
    assert no_runs(home)


@pytest.mark.parametrize("changes", [{"num_hidden_layers": 100_000_000}, {"hidden_size": "big"}])
def test_hw_says_the_same(home, tmp_path, capsys, changes):
    code = cli.main(["hw", "--preset", "demo", "--set", f"model.name={model_folder(tmp_path, **changes)}"])
    err = capsys.readouterr().err
    assert code == 2 and ("past the limit" in err or "positive whole number" in err), err


def test_hw_plan_of_a_huge_config_says_it_does_not_fit(home, tmp_path, capsys):
    code = cli.main(["hw", "--json", "--preset", "demo", "--set",
                     f"model.name={model_folder(tmp_path, hidden_size=1_000_000)}"])
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert code == 0 and plan["verdict"] == "does not fit" and plan["total_params"] > 10**12


def test_weights_that_do_not_match_the_config_are_exit_2_not_training_failed(home, tmp_path, capsys):
    code, err = train(model_folder(tmp_path, intermediate_size=256), capsys)
    assert code == 2, err
    assert "do not match its config.json" in err and "training failed" not in err, err
    assert no_runs(home)


@pytest.mark.parametrize("damaged", ["tokenizer.json", "config.json"])
def test_a_local_folder_with_a_non_utf8_file_is_not_called_a_hub_failure(home, tmp_path, capsys, damaged):
    folder = model_folder(tmp_path)
    (folder / damaged).write_bytes(b"\xff\xfe\x00not utf-8 \x80\x81")
    code, err = train(folder, capsys)
    assert code == 2, err
    assert str(folder) in err and "Hugging Face Hub" not in err and "internet" not in err, err
    assert no_runs(home)


PICKLE_MARKER = "PICKLE_RAN"


class _Marker:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {PICKLE_MARKER}",))


@pytest.mark.parametrize("target", ["pytorch_model.bin", "../outside.safetensors", "missing.safetensors"])
def test_a_safetensors_index_naming_other_files_is_refused(home, tmp_path, capsys, monkeypatch, target):
    import pickle

    monkeypatch.chdir(tmp_path)
    folder = model_folder(tmp_path)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Marker()}))
    weight_map = {"model.embed_tokens.weight": target, "lm_head.weight": "model-00001-of-00001.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    code, err = train(folder, capsys)
    assert code == 2, err
    assert target in err and "nothing was loaded" in err or "not in" in err, err
    assert not (tmp_path / PICKLE_MARKER).exists() and no_runs(home)


def _other_host() -> str:
    import socket

    return socket.gethostname() + "-elsewhere"


@pytest.mark.parametrize("content", [
    "1",  # an older version's lock naming pid 1 (written by hand, or a reused pid)
    json.dumps({"pid": 1, "host": "HOST", "started": 12345.0}),  # pid 1 did not start then
    json.dumps({"pid": 1, "host": "HOST"}),  # no start time: pid 1 is no builder
    json.dumps({"pid": "PPID", "host": "OTHER", "started": "PPID_STARTED"}),  # another machine's
], ids=["legacy-pid-1", "wrong-start", "no-start", "other-host"])
def test_the_real_models_build_lock_checks_its_holder_like_run_lock(tmp_path, content):
    import os
    import socket
    import time

    from humanlike_tui.engine.models import gguf_import as G
    from humanlike_tui.engine.storage.locks import process_started

    ppid = os.getppid()
    content = (content.replace('"HOST"', json.dumps(socket.gethostname())).replace('"OTHER"', json.dumps(_other_host()))
               .replace('"PPID_STARTED"', str(process_started(ppid))).replace('"PPID"', str(ppid)))
    lock = tmp_path / ".smollm2.lock"
    lock.write_text(content)
    t0 = time.monotonic()
    with G._build_lock(lock, lambda *a: None, timeout_s=30):  # broken at once, never waited on
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert time.monotonic() - t0 < 5 and not lock.exists()
