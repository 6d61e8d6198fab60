"""Hub downloads (engine/models/download.py) report bytes, rate and time left, cancel from inside the
download, and resume: tested against a stand-in for huggingface_hub.snapshot_download that drives its
tqdm_class hook the way huggingface_hub 2.x does (a byte bar the per-file downloads add to, a network-byte
bar, a file-count bar). No network here: the live hub is not exercised."""

from __future__ import annotations

import threading

import huggingface_hub
import pytest

from humanlike_tui.cli import main
from humanlike_tui.engine.models import download as D

SIZES = (1_000_000, 3_000_000)
KEPT: dict[str, int] = {}  # bytes of each file already in the stand-in cache (what a cut leaves)


def fake_snapshot_download(repo_id, revision=None, ignore_patterns=None, tqdm_class=None, **kw):
    assert "*.bin" in ignore_patterns  # no pickled weights
    transfer = tqdm_class(desc="Downloading bytes", total=0, initial=0, unit="B", unit_scale=True, bar_format="")
    rebuilt = tqdm_class(desc="Reconstructing (incomplete total...)", total=0, initial=0, unit="B", unit_scale=True)
    files = tqdm_class(desc=f"Fetching {len(SIZES)} files", total=len(SIZES))
    for i, size in enumerate(SIZES):
        rebuilt.total = (rebuilt.total or 0) + size
        have = KEPT.get(f"{repo_id}/{i}", 0)
        if have:
            rebuilt.update(have)  # what an earlier try fetched: huggingface_hub resumes the .incomplete file
        while have < size:
            have += 250_000
            KEPT[f"{repo_id}/{i}"] = have
            rebuilt.update(250_000)
            transfer.update(200_000)
        files.update(1)
    return f"/cache/models--{repo_id.replace('/', '--')}/snapshots/abc"


@pytest.fixture
def hub(monkeypatch):
    KEPT.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    ticks = iter(range(10_000))
    return lambda: next(ticks) * 0.1  # a clock: 0.1 s per reading


def test_progress_has_bytes_rate_and_time_left(hub):
    seen: list[D.DownloadProgress] = []
    folder = D.download_model("org/model", progress=seen.append, clock=hub)
    assert str(folder).endswith("snapshots/abc")
    assert seen[-1].finished and seen[-1].done_bytes == seen[-1].total_bytes == sum(SIZES)
    middle = [p for p in seen if not p.finished and p.done_bytes > 0]
    assert middle and all(p.bytes_per_s > 0 for p in middle)
    assert any(p.eta_s and p.eta_s > 0 for p in middle)
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)


def test_cancel_keeps_what_was_fetched_and_the_next_try_resumes(hub):
    stop = threading.Event()

    def cancel_midway(p: D.DownloadProgress) -> None:
        if p.done_bytes >= 2_000_000:
            stop.set()

    with pytest.raises(D.DownloadCancelled):
        D.download_model("org/model", progress=cancel_midway, stop=stop, clock=hub)
    kept = sum(KEPT.values())
    assert 2_000_000 <= kept < sum(SIZES)
    seen: list[D.DownloadProgress] = []
    D.download_model("org/model", progress=seen.append, clock=hub)
    assert seen[-1].finished and sum(KEPT.values()) == sum(SIZES)
    first = next(p for p in seen if p.done_bytes)
    assert first.done_bytes >= 1_000_000  # started from the kept bytes, not from zero


def test_download_command_prints_progress_lines_when_piped(hub, capsys):
    assert main(["download", "org/model"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("snapshots/abc")
    assert "org/model: 3.8 MB of 3.8 MB" in captured.err and "/s" in captured.err


def test_training_fetches_a_hub_model_with_progress_lines(hub, monkeypatch):
    from humanlike_tui.config import load_preset
    from humanlike_tui.engine import hub as hub_mod
    from humanlike_tui.engine.models import loading

    monkeypatch.setattr(hub_mod, "offline_mode", lambda: False)
    monkeypatch.setattr(hub_mod, "fail_fast_if_unreachable", lambda *a: None)
    lines: list[str] = []
    cfg = load_preset("demo").replace(**{"model.name": "org/model"})
    assert loading.resolve_model_path(cfg, lines.append) == "org/model"
    assert any(line.startswith("downloading org/model: ") and " of " in line and "/s" in line for line in lines), lines


def unreachable_hub(repo_id, **kw):
    """What huggingface_hub raises when the hub cannot be reached and nothing is cached."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        raise OSError("[Errno -2] Name or service not known")
    except OSError as cause:
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub") from cause


@pytest.mark.parametrize("offline", [False, True])
def test_no_connection_says_so_and_what_works_offline(monkeypatch, capsys, offline):
    """It said 'unexpected error: LocalEntryNotFoundError: ... Name or service not known' (the model picker)."""
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    with pytest.raises(D.ModelError) as caught:
        D.download_model("org/model")
    text = str(caught.value)
    assert ("offline mode is on" if offline else "no connection: huggingface.co cannot be reached") in text
    assert "org/model is not in the Hugging Face cache" in text
    assert "builtin:smollm2-135m" in text and "builtin:tiny-phi" in text and "local model folder" in text
    assert main(["download", "org/model"]) == 2  # the user's situation, not a bug
    assert "LocalEntryNotFoundError" not in capsys.readouterr().err
