"""Shared fixtures: every test gets its own HUMANLIKE_TUI_HOME; the builtin tiny model is made once
per session in a shared cache (it is deterministic) and copied in by reference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_CACHE = Path(os.environ.get("HLT_TEST_CACHE", "/tmp/humanlike-tui-test-cache"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per worker (and per command a test starts): pytest-xdist already runs a worker per core,
    # and two threads per worker on the same cores only wait on each other. Set before anything imports torch.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_xdist_auto_num_workers(config):
    """`-m slow` runs in one process: its tests start processes of their own (training launchers, a server)
    and time them, and two at once on two cores starved a server's Ctrl+C past 30 s. The default run takes
    pytest-xdist's count (pyproject: -n logical)."""
    marks = config.option.markexpr or ""
    if "slow" in marks and "not slow" not in marks:
        config.option.dist = "no"
        return 0
    return None


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A private home for runs and configs; the builtin-model cache is shared across tests."""
    root = tmp_path / "home"
    (root / "data").mkdir(parents=True)
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    (root / "cache").symlink_to(SHARED_CACHE, target_is_directory=True)
    monkeypatch.setenv("HUMANLIKE_TUI_HOME", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return root


@pytest.fixture
def demo_cfg():
    """The demo preset, shortened for tests."""
    from humanlike_tui.config import load_preset

    return load_preset("demo").replace(**{"train.max_steps": 8, "train.eval_every": 4, "train.save_every": 0,
                                          "train.warmup_steps": 1, "train.sample_prompts": 1,
                                          "generate.max_new_tokens": 8})


# --- Where the suite's CPU time goes: HLT_CPU_REPORT=N prints the N tests that used the most CPU (this process
# and the commands it waited for), which a loaded machine does not distort the way --durations' wall time is.

def _cpu_now() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.stash[_CPU_START] = _cpu_now()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "teardown" and _CPU_START in item.stash:
        item.user_properties.append(("cpu_s", _cpu_now() - item.stash[_CPU_START]))
    yield


def pytest_terminal_summary(terminalreporter):
    count = int(os.environ.get("HLT_CPU_REPORT", "0") or 0)
    if not count:
        return
    used = [(dict(r.user_properties).get("cpu_s", 0.0), r.nodeid) for reports in terminalreporter.stats.values()
            for r in reports if getattr(r, "when", None) == "teardown"]
    terminalreporter.section(f"CPU seconds: {sum(c for c, _ in used):.0f} in all; the {count} costliest tests")
    for cpu, nodeid in sorted(used, reverse=True)[:count]:
        terminalreporter.write_line(f"{cpu:8.1f}  {nodeid}")
    files: dict[str, list[float]] = {}
    for cpu, nodeid in used:
        files.setdefault(nodeid.split("::")[0], []).append(cpu)
    terminalreporter.section(f"CPU seconds by file: the {count} costliest files")
    for name, cpus in sorted(files.items(), key=lambda kv: -sum(kv[1]))[:count]:
        terminalreporter.write_line(f"{sum(cpus):8.1f}  {len(cpus):4d} tests  {name}")


_CPU_START = pytest.StashKey[float]()
