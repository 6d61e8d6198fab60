"""Offline, a hub model or data set that was never downloaded fails at once with the fix, instead of
after the libraries' ~30-50 s of retries; anything cached, or a proxy, is left to the libraries."""

from __future__ import annotations

import socket
import time

import pytest

from humanlike_tui.config import load_preset
from humanlike_tui.engine import hub as hub
from humanlike_tui.errors import DataError, ModelError


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for var in hub.OFFLINE_VARIABLES + hub.PROXY_VARIABLES + ("HF_ENDPOINT",):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(address, timeout=None):
        attempts.append((address, timeout))
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_unreachable_and_not_cached_fails_at_once_naming_host_and_repo(empty_cache, no_network):
    with pytest.raises(ValueError) as err:
        hub.fail_fast_if_unreachable("microsoft/phi-2", "model", ValueError)
    assert "huggingface.co is not reachable" in str(err.value) and "'microsoft/phi-2'" in str(err.value)
    assert no_network == [(("huggingface.co", 443), hub.PROBE_TIMEOUT_S)]


def test_a_cached_repo_is_left_to_the_library_without_a_probe(empty_cache, no_network):
    (empty_cache / "models--microsoft--phi-2" / "snapshots").mkdir(parents=True)
    hub.fail_fast_if_unreachable("microsoft/phi-2", "model", ValueError)
    assert no_network == []


def test_offline_mode_and_proxies_are_respected(empty_cache, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_reachable() and no_network == []  # offline mode: no connect at all
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert hub.hub_reachable() and no_network == []  # a direct connect says nothing behind a proxy


def test_a_mirror_is_probed_where_it_lives(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-mirror.lan:8080")
    assert hub.hub_address() == ("hf-mirror.lan", 8080)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    assert hub.hub_address() == ("hf-mirror.com", 443)


def test_engine_loaders_fail_fast_with_their_own_messages(empty_cache, no_network):
    from humanlike_tui.engine import data as D
    from humanlike_tui.engine import models as M

    cfg = load_preset("gaming-8gb")
    start = time.monotonic()
    with pytest.raises(ModelError, match="model.name: could not load 'microsoft/phi-2'.*builtin:tiny-phi"):
        M.resolve_model_path(cfg)
    with pytest.raises(DataError, match="data.source: could not load 'HumanLLMs/Human-Like-DPO-Dataset'"
                                        ".*builtin:sample"):
        D.load_rows(cfg.data, need_rejected=True)
    assert time.monotonic() - start < 5
    assert len(no_network) == 2
