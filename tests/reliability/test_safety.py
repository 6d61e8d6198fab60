"""Safety: remote code off unless asked (and a warning when on), safetensors only, safe names, data that
is only ever text, and Hugging Face tokens that never reach a file or the output."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
from reliability_helpers import FAST, HOSTILE, PLANTED_TOKEN, all_files

import humanlike_tui
from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui import events as E
from humanlike_tui.engine import data as D
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import ModelError, StoreError
from humanlike_tui.engine.storage import files

PACKAGE = Path(humanlike_tui.__file__).parent


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- trust_remote_code --------------------------------------------------------------------------------

def test_trust_remote_code_is_off_unless_the_config_turns_it_on(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from humanlike_tui.engine import models as M

    assert C.Config().model.trust_remote_code is False
    assert all(C.load_preset(name).model.trust_remote_code is False for name in C.preset_names())
    seen: list = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        real = cls.from_pretrained

        def recording(*args, _real=real, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", recording)
    cfg = C.load_preset("demo").replace(**{"quant.mode": "none"})
    M.load_base_model(cfg, M.resolve_precision(cfg, "cpu"))
    assert seen == [False, False]
    on = cfg.replace(**{"model.trust_remote_code": True})
    with pytest.raises(ModelError, match="pass --trust-remote-code"):  # the config alone only asks
        M.load_base_model(on, M.resolve_precision(on, "cpu"))
    assert seen == [False, False]
    monkeypatch.setattr(C, "_REMOTE_CODE_CONSENT", set())
    C.allow_remote_code(on.model.name)  # what --trust-remote-code or the workbench's confirm does
    M.load_base_model(on, M.resolve_precision(on, "cpu"))
    assert seen[2:] == [True, True]


@pytest.mark.parametrize("on", [True, False])
def test_train_command_warns_when_remote_code_is_on(on, capsys):
    from humanlike_tui.commands.train import ProgressListener

    cfg = C.load_preset("demo").replace(**{"model.trust_remote_code": on})
    listener = ProgressListener()
    listener(E.RunStarted("r", "/tmp/r", "sft", cfg.to_dict(), 10, 100, 5, 0, "CPU (fp32)", {}))
    listener.close()
    err = capsys.readouterr().err
    assert ("warning: model.trust_remote_code is on: the model's own Python code runs" in err) is on


# --- safetensors only ---------------------------------------------------------------------------------

def test_pickle_only_model_folder_is_refused(tmp_path, capsys):
    model = tmp_path / "pickled-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "phi"}')
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}))
    code, _, err = run_cli(capsys, "train", *FAST, "--set", f'model.name="{model}"')
    assert code == 2
    assert "holds only pickle weights (pytorch_model.bin)" in err and "can run code when loaded" in err
    assert "Convert them to safetensors" in err
    assert not S.list_runs()


def test_pickle_adapter_is_refused(tmp_path, capsys):
    from humanlike_tui.engine import models as M

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    C.save_config(C.load_preset("demo"), run / "config.toml")
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ModelError, match=r"adapter_model\.bin.*refused.*safetensors"):
        M.check_adapter_dir(run / "adapter")
    code, _, err = run_cli(capsys, "chat", "--adapter", str(run / "adapter"), "--prompt", "hi")
    assert code == 2 and "pickle" in err and "Re-save the adapter with safetensors" in err


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_tampered_checkpoint_is_not_executed(trained, monkeypatch, tmp_path):
    """Checkpoints hold optimizer state in torch's format, read with weights_only=True: a pickle that
    would run code is refused, not run. Its sha256 no longer matches the COMPLETE marker either; here the
    marker is an old one without hashes, so the load itself must refuse it. The resume then goes on from
    the checkpoint before it."""
    import torch

    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(trained.home))
    monkeypatch.chdir(tmp_path)
    copy = S.runs_dir() / "tampered"
    shutil.copytree(trained.run_dir, copy)
    try:
        run = S.Run(copy)
        (older, _), (step, cp) = run.checkpoints()[-2:]
        torch.save({"optimizer": Boom()}, cp / "trainer_state.pt")
        (cp / files.COMPLETE).write_text('{"written": 1}')
        from humanlike_tui.engine.training.run import run_training

        events: list = []
        result = run_training(run.config(), events.append, resume="tampered")
        assert not (tmp_path / "PWNED").exists()
        warnings = [e.message for e in events if isinstance(e, E.Log) and e.level == "warning"]
        assert any(f"step-{step:06d} is damaged: it cannot be read (UnpicklingError" in w for w in warnings), warnings
        assert [e.start_step for e in events if isinstance(e, E.RunStarted)] == [older]
        assert result.status == "finished"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# --- names --------------------------------------------------------------------------------------------

BAD_NAMES = ["../x", "..", "/etc", "a/b", "a\\b", ".hidden", "", "   ", "x" * 101, "-rf", "run\nname", "ü"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(name):
    with pytest.raises(StoreError, match="not a valid run name"):
        S.check_name(name)


def test_safe_names_pass_and_commands_refuse_unsafe_ones(demo_cfg, capsys, home):
    for name in ("my-run", "run_2.v1", "A" * 100):
        assert S.check_name(name) == name
    code, _, err = run_cli(capsys, "train", *FAST, "--name", "../escape")
    assert code == 2 and "not a valid run name" in err
    assert not (home / "data" / "escape").exists() and not S.list_runs()
    run = S.create_run(demo_cfg, "good")
    for argv in (["adapters", "rename", "good", "/etc"], ["adapters", "rename", "good", "../../x"],
                 ["adapters", "delete", "../good", "--yes"], ["adapters", "show", "/etc"],
                 ["train", "--resume", "../good"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "not a valid run name" in err, (argv, err)
    assert run.run_dir.is_dir() and S.list_runs()[0].run_id == "good"


# --- a data set is only text --------------------------------------------------------------------------

def test_hostile_rows_are_just_text(trained):
    """Rows holding paths, shell and Python code and template syntax trained like any other text:
    nothing ran, nothing was opened, and the tokens are the text itself."""
    report = next(e for e in trained.events if isinstance(e, E.DataReport))
    assert report.rows_read == 24 + len(HOSTILE) and report.rows_kept == report.rows_read
    assert isinstance(trained.events[-1], E.Finished)
    assert not [p for p in all_files(trained.home) if "PWNED" in p.name]
    assert not Path("PWNED").exists()

    from humanlike_tui.engine import models as M

    cfg = C.load_preset("demo")
    tok = M.load_tokenizer(cfg, M.resolve_model_path(cfg))
    rows, counts = D.load_rows(C.load_preset("demo").replace(**{"data.source": str(trained.data_file)}).data)
    for template in ("instruct", "chat"):
        dcfg = cfg.replace(**{"data.template": template, "data.max_length": 1024}).data
        examples = D.tokenize_rows(rows, tok, dcfg, counts, False)
        for text in HOSTILE:
            ex = next(e for e in examples if e.prompt == f"What is {text}?")
            assert f"What is {text}?" in tok.decode(ex.prompt_ids)


def test_data_code_never_evaluates_or_opens_row_content():
    """A review guard: the data modules have no eval/exec/subprocess/os.system, and open only data.source."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in sorted((PACKAGE / "engine" / "data").glob("*.py")))
    for banned in ("eval(", "exec(", "subprocess", "os.system", "pickle", "importlib.import_module",
                   "trust_remote_code=True"):
        assert banned not in source, banned
    assert set(re.findall(r"\bopen\((\w+)", source)) <= {"path"}


# --- Hugging Face tokens ------------------------------------------------------------------------------

def test_hf_token_is_never_written_anywhere(trained, monkeypatch, capsys):
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(trained.home))
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", PLANTED_TOKEN)
    outputs = []
    for argv in (["chat", "--adapter", trained.run_id, "--prompt", "How was your day?", "--json",
                  "--max-new-tokens", "4"], ["adapters", "list", "--json"], ["adapters", "show", trained.run_id]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        outputs += [out, err]
    assert '"answers"' in outputs[0]
    files = all_files(trained.home)
    assert any(p.name == "config.toml" for p in files) and any(p.name == "meta.json" for p in files)
    assert any(p.name == "metrics.jsonl" for p in files) and any(p.suffix == ".safetensors" for p in files)
    leaked = [str(p) for p in files if PLANTED_TOKEN.encode() in p.read_bytes()]
    assert not leaked
    assert not [o for o in outputs if PLANTED_TOKEN in o]
    assert not [e for e in trained.events if PLANTED_TOKEN in repr(e)]


def test_no_code_reads_or_passes_hf_tokens_itself():
    """Tokens are left to huggingface_hub (HF_TOKEN or `huggingface-cli login`); our code never reads,
    passes or stores one. The chat transcript only reads them to blank them out."""
    allowed = {PACKAGE / "ui" / "chat_transcript.py"}
    pattern = re.compile(r"HF_TOKEN|HUGGING_FACE_HUB_TOKEN|use_auth_token|[^_\w]token\s*=\s*[^N]")
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p not in allowed and pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders
