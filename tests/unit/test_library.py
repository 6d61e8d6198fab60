"""The adapter library on real files: summaries of finished and incomplete runs, rename, delete and a
merged export (checked against the adapter's own output); `humanlike-tui adapters ...` on the same."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from humanlike_tui import cli
from humanlike_tui.engine.storage import library as L
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import InputError, StoreError
from tiny_run import RUN_NAME, install_run
from humanlike_tui.engine.storage import export as export_mod


def make_interrupted(home, name="half-done"):
    """A run that crashed at step 3 of 8: status still 'running' with a dead pid, one checkpoint, no adapter."""
    run_dir = install_run(home, name)
    shutil.rmtree(run_dir / "adapter")
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints" / "step-000003").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-000003" / "COMPLETE").write_text("{}")
    run = S.Run(run_dir)
    run.update_meta(status="running", steps=3, max_steps=8, final_eval_loss=None, created=1.0, finished=None)
    S.write_json(run_dir / "run.lock", {"pid": 999_999_999, "host": os.uname().nodename, "since": 1.0})
    return run


def test_finished_run_summary(home):
    install_run(home)
    [info] = L.list_adapters()
    assert (info.name, info.status, info.complete, info.state) == (RUN_NAME, "finished", True, "finished")
    assert (info.base_model, info.data_source, info.method) == ("builtin:tiny-phi", "builtin:sample", "sft")
    assert (info.steps, info.max_steps, info.last_checkpoint) == (4, 4, 4)
    assert info.final_eval_loss is not None and info.final_eval_loss > 0
    assert info.size_bytes > info.adapter_bytes > 100_000 and info.created
    assert info.can_chat and not info.can_resume
    data = info.to_dict()
    assert data["created_iso"].startswith("20") and data["state"] == "finished"


def test_incomplete_runs_are_listed_with_what_to_do(home):
    install_run(home)
    make_interrupted(home)
    infos = {a.name: a for a in L.list_adapters()}
    half = infos["half-done"]
    assert (half.status, half.complete, half.can_chat, half.can_resume) == ("interrupted", False, False, True)
    assert half.state == "interrupted at 3/8 (incomplete: resume or delete)"
    assert [a.name for a in L.list_adapters()] == [RUN_NAME, "half-done"]  # newest first


def test_run_without_meta_falls_back_to_its_config(home):
    run_dir = install_run(home, "no-meta")
    (run_dir / "meta.json").unlink()
    info = L.get_adapter("no-meta")
    assert (info.base_model, info.method, info.max_steps) == ("builtin:tiny-phi", "sft", 4)
    assert info.status == "interrupted" and info.steps is None


def test_rename_and_delete_on_real_files(home):
    install_run(home)
    S.rename_run(RUN_NAME, "warm-v1")
    assert [a.name for a in L.list_adapters()] == ["warm-v1"]
    assert L.get_adapter("warm-v1").complete and not (home / "data" / "runs" / RUN_NAME).exists()
    with pytest.raises(StoreError, match="no run named"):
        L.get_adapter(RUN_NAME)
    S.delete_run("warm-v1")
    assert L.list_adapters() == [] and not any((home / "data" / "runs").iterdir())


def test_details(home):
    install_run(home)
    details = L.run_details(RUN_NAME)
    assert details["checkpoints"] == [4] and details["config"]["model"]["name"] == "builtin:tiny-phi"
    assert details["data"]["rows_read"] == 120 and details["info"]["name"] == RUN_NAME


def test_export_merged_equals_base_plus_adapter(home, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from humanlike_tui.engine import models as M

    install_run(home)
    out = export_mod.export_merged(RUN_NAME, tmp_path / "merged", merge_into="original")
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", export_mod.EXPORT_MARKER} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    marker = json.loads((out / export_mod.EXPORT_MARKER).read_text())
    assert marker["run"] == RUN_NAME and marker["dtype"] == "float32"
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.config.use_cache is True
    # merge_into="original": the same numbers as the unquantized base with the adapter on top (the default,
    # "trained", equals the chat path instead: tests/engine/test_export_merge.py).
    cfg = S.get_run(RUN_NAME).config().replace(**{"quant.mode": "none", "quant.double_quant": False,
                                                   "quant.compute_dtype": "fp32"})
    base, _ = M.load_base_model(cfg, M.Precision("cpu", "fp32", False))
    peft_model = M.load_adapter(base, S.get_run(RUN_NAME).adapter_dir, cfg.model.name)
    ids = torch.tensor([[5, 17, 99, 230, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-4)


def test_export_never_overwrites_a_foreign_folder(home, tmp_path):
    install_run(home)
    mine = tmp_path / "my-stuff"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    with pytest.raises(InputError, match="exists and is not empty"):
        export_mod.export_merged(RUN_NAME, mine)
    assert (mine / "thesis.txt").read_text() == "precious"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / export_mod.EXPORT_MARKER).write_text("{}")
    with pytest.raises(InputError, match="--force"):
        export_mod.export_merged(RUN_NAME, earlier)
    with pytest.raises(InputError, match="dtype"):
        export_mod.export_merged(RUN_NAME, tmp_path / "x", dtype="int4")


def test_export_refuses_an_unfinished_run(home, tmp_path):
    make_interrupted(home)
    with pytest.raises(StoreError, match="no finished adapter to export.*resume"):
        export_mod.export_merged("half-done", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- the command ----------------------------------------------------------------------------------------

def test_adapters_list_json_and_table(home, capsys):
    assert cli.main(["adapters", "list"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    install_run(home)
    make_interrupted(home)
    assert cli.main(["adapters", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == [RUN_NAME, "half-done"]
    assert {"name", "status", "complete", "state", "base_model", "data_source", "method", "steps", "max_steps",
            "final_eval_loss", "created", "created_iso", "size_bytes", "can_chat", "can_resume"} <= set(data[0])
    assert data[1]["state"] == "interrupted at 3/8 (incomplete: resume or delete)"
    assert cli.main(["adapters", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATE", "BASE"] and table[1].startswith(RUN_NAME)


def test_adapters_rename_delete_and_errors(home, capsys):
    install_run(home)
    assert cli.main(["adapters", "rename", RUN_NAME, "warm"]) == 0
    assert "renamed tiny-chat -> warm" in capsys.readouterr().out
    assert cli.main(["adapters", "rename", "warm", "../evil"]) == 2
    assert "not a valid run name" in capsys.readouterr().err
    assert cli.main(["adapters", "delete", "nope", "--yes"]) == 2
    assert "no run named 'nope'" in capsys.readouterr().err
    assert cli.main(["adapters", "delete", "warm"]) == 2  # not a terminal: never deletes without --yes
    assert "pass --yes" in capsys.readouterr().err and L.get_adapter("warm")
    assert cli.main(["adapters", "delete", "warm", "--yes"]) == 0
    assert L.list_adapters() == []


def test_adapters_export_command(home, tmp_path, capsys):
    install_run(home)
    assert cli.main(["adapters", "export", RUN_NAME, str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0
    assert "exported tiny-chat" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / export_mod.EXPORT_MARKER).read_text())["dtype"] == "bfloat16"
    assert cli.main(["adapters", "export", RUN_NAME, str(tmp_path / "out")]) == 2
    assert cli.main(["adapters", "export", RUN_NAME, str(tmp_path / "out"), "--force"]) == 0


def test_library_and_generate_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, humanlike_tui.engine.storage.library, humanlike_tui.engine.inference.generator;"
            "assert 'torch' not in sys.modules and 'textual' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
