"""Reliability round 2, safety and crashes: a model's own Python code runs only when the person says so for
this command (--trust-remote-code, or a confirm in the workbench), never because a config (a run's own)
says so; and an unexpected error ends with one line and a crash report, in the CLI and in the TUI, never
with a traceback."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from humanlike_tui import cli
from humanlike_tui import config as C
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.engine.storage import files

MARKER_CODE = '''
import os, sys
from pathlib import Path
Path(os.environ["HLT_MARKER"]).write_text("the model's own code ran")
print("MARKER: the model's own code ran", file=sys.stderr, flush=True)
from transformers import PhiConfig, PhiForCausalLM


class MarkerConfig(PhiConfig):
    model_type = "phi"


class MarkerForCausalLM(PhiForCausalLM):
    config_class = MarkerConfig
'''


@pytest.fixture(autouse=True)
def no_consent_left(monkeypatch):
    monkeypatch.setattr(C, "_REMOTE_CODE_CONSENT", set())  # consent given in one test stays there


@pytest.fixture
def code_model(tmp_path, monkeypatch) -> Path:
    """The builtin tiny model with an auto_map pointing at a module that leaves a marker file when imported."""
    from humanlike_tui.engine.models.builtins import ensure_builtin

    folder = tmp_path / "model-with-code"
    shutil.copytree(ensure_builtin("builtin:tiny-phi"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "marker_code.MarkerConfig",
                          "AutoModelForCausalLM": "marker_code.MarkerForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "marker_code.py").write_text(MARKER_CODE)
    monkeypatch.setenv("HLT_MARKER", str(tmp_path / "MARKER"))
    return folder


def code_run(model: Path, name: str = "coderun") -> S.Run:
    """A finished run whose stored config asks for the model's code (as a run folder from elsewhere might)."""
    cfg = C.load_preset("demo").replace(**{"model.name": str(model), "model.trust_remote_code": True,
                                           "quant.mode": "none", "quant.double_quant": False})
    run = S.create_run(cfg, name)
    with files.atomic_dir(run.adapter_dir, manifest=True) as tmp:
        (tmp / "adapter_config.json").write_text("{}")
        (tmp / "adapter_model.safetensors").write_bytes(b"not loaded: refused before")
    run.update_meta(status="finished")
    return run


def test_a_runs_config_alone_never_runs_the_models_code(code_model, tmp_path, capsys):
    run = code_run(code_model)
    before = {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()}
    for argv in (["chat", "--adapter", "coderun", "--prompt", "hi"], ["eval", "--adapter", "coderun", "--quiet"],
                 ["hw", "--no-bnb-check", "--config", str(run.run_dir / "config.toml")],
                 ["train", "--resume", "coderun"], ["train", "--config", str(run.run_dir / "config.toml")],
                 ["adapters", "export", "coderun", str(tmp_path / "out")]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert "model.trust_remote_code is on" in err and "pass --trust-remote-code" in err, err
        assert not (tmp_path / "MARKER").exists(), argv  # was: chat, eval, hw and the TUI ran it silently
    assert [r.run_id for r in S.list_runs()] == ["coderun"]  # `train --config` left no run folder
    assert {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()} == before


def test_with_the_flag_the_warning_comes_before_the_code_runs(code_model, tmp_path, capsys, monkeypatch):
    from transformers import dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    run = code_run(code_model)
    assert cli.main(["hw", "--no-bnb-check", "--json", "--config", str(run.run_dir / "config.toml"),
                     "--trust-remote-code"]) == 0
    out, err = capsys.readouterr()
    assert (tmp_path / "MARKER").exists()  # the person said so: the code ran ...
    warning = err.index("warning: model.trust_remote_code is on and allowed")
    assert warning < err.index("MARKER: the model's own code ran")  # ... after the warning
    assert json.loads(out)["plan"]["model"]


async def test_the_workbench_asks_before_training_a_model_with_code():
    from support.fakes import FakeClock, FakeEngine, fake_services

    from humanlike_tui.ui.app import make_app
    from humanlike_tui.ui.screens.dialogs import ConfirmDialog

    engine = FakeEngine(total_steps=3)
    cfg = C.load_preset("demo").replace(**{"model.trust_remote_code": True})
    app = make_app(fake_services(engine, FakeClock()), cfg, Path("config.toml"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        for answer, calls in (("no", []), ("yes", [None])):
            app.action_start_training()
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog) and engine.calls == []  # asked before anything loads
            assert "Python code shipped with the model" in dialog_text(app)
            await pilot.click(f"#{answer}")
            await pilot.pause()
            assert engine.calls == calls, answer
            assert not isinstance(app.screen, ConfirmDialog)
        assert C.remote_code_allowed(cfg)
        while app.state.tracker.active:
            await pilot.pause(0.02)


def dialog_text(app) -> str:
    from textual.widgets import Static

    return " ".join(str(w.render()) for w in app.screen.query(Static))


# --- 10. unexpected errors: one line and a crash report -----------------------------------------------

def test_an_unexpected_error_is_one_line_and_a_crash_report(home, capsys, monkeypatch):
    from humanlike_tui.commands import adapters

    def broken(args):
        raise ZeroDivisionError("division by zero in a place nobody expected")

    monkeypatch.setitem(adapters.ACTIONS, "list", broken)
    assert cli.main(["adapters", "list"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err.count("\n") == 1, err
    assert err.startswith("error: unexpected error (ZeroDivisionError: division by zero in a place nobody "
                          "expected); this is a bug in humanlike-tui, the details are in ")
    [report] = list((home / "logs").glob("crash-*.txt"))
    assert str(report) in err
    text = report.read_text()
    for needle in ("Traceback (most recent call last)", "ZeroDivisionError", "torch: ", "transformers: ",
                   "command: ", "config:"):
        assert needle in text, needle


def test_a_crash_report_carries_the_commands_config(home, capsys, monkeypatch):
    from humanlike_tui.engine.hardware import probe

    monkeypatch.setattr(probe, "probe_hardware", lambda **kw: 1 / 0)
    assert cli.main(["hw", "--preset", "demo", "--set", "train.max_steps=77"]) == 1
    assert "unexpected error (ZeroDivisionError" in capsys.readouterr().err
    [report] = list((home / "logs").glob("crash-*.txt"))
    assert '"name": "builtin:tiny-phi"' in report.read_text() and '"max_steps": 77' in report.read_text()


def test_no_crash_report_possible_still_one_line(home, capsys, monkeypatch):
    from humanlike_tui.commands import adapters

    monkeypatch.setitem(adapters.ACTIONS, "list", lambda args: {}["missing"])
    (home / "logs").write_text("a file where the log folder should be")
    assert cli.main(["adapters", "list"]) == 1
    err = capsys.readouterr().err
    assert "unexpected error (KeyError: 'missing')" in err and "no crash report could be written" in err
    assert "Traceback" not in err


def test_a_damaged_adapter_or_base_model_file_is_a_message_in_chat(home, capsys):
    run = S.create_run(C.load_preset("demo"), "broken")
    with files.atomic_dir(run.adapter_dir, manifest=True) as tmp:
        (tmp / "adapter_config.json").write_text("{}")
        (tmp / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
        (tmp / "base_model.txt").write_text("builtin:tiny-phi\n")
    run.update_meta(status="finished")
    weights = run.adapter_dir / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated after it was written
    assert cli.main(["chat", "--adapter", "broken", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "the adapter is damaged (adapter_model.safetensors has 1000 bytes, 4096 were written)" in err, err
    (run.adapter_dir / "base_model.txt").write_bytes(b"builtin:tiny-phi \xff\xfe\n")
    assert cli.main(["chat", "--adapter", "broken", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "base_model.txt is unreadable (UnicodeDecodeError)" in err and "Traceback" not in err, err


async def test_the_workbench_ends_a_crash_with_a_report_and_a_dialog_not_a_traceback(home):
    from support.fakes import FakeClock, FakeEngine, fake_services

    from humanlike_tui.ui.app import CrashApp, make_app

    app = make_app(fake_services(FakeEngine(), FakeClock()), C.load_preset("demo"), Path("config.toml"))

    def broken(mode: str) -> None:
        raise RuntimeError("a handler that breaks")

    with pytest.raises(RuntimeError, match="a handler that breaks"):  # the test pilot re-raises it at the end
        async with app.run_test(size=(120, 40)) as pilot:
            app.action_show = broken
            await pilot.press("f2")
    assert app.return_code == 1 and not app._exit_renderables  # was: Textual's traceback on the terminal
    [report] = list((home / "logs").glob("crash-*.txt"))
    assert app.crash == f"unexpected error (RuntimeError: a handler that breaks); this is a bug in humanlike-tui, " \
                        f"the details are in {report}"
    assert "Traceback (most recent call last)" in report.read_text()
    # run_app then shows that line in a dialog of its own (the crashed app takes no more input).
    dialog = CrashApp(app.crash)
    async with dialog.run_test(size=(120, 30)) as pilot:
        assert str(report) in dialog_text(dialog) and "unexpected error" in dialog_text(dialog)
        await pilot.press("enter")
    assert dialog.return_code == 0
