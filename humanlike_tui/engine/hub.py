"""Fail fast when the Hugging Face Hub cannot be reached and nothing of the repo is cached.

Offline, transformers and datasets retry each request with back-off before giving up: a new user
without internet waited ~27 s for the data error and ~50 s for the model error. One TCP connect (at
most PROBE_TIMEOUT_S) answers the same question at once. We only step in when nothing of the repo
was ever downloaded: a cached model or data set is left to the libraries, which fall back to it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_address() -> tuple[str, int]:
    """Host and port of the hub this process talks to (HF_ENDPOINT for a mirror)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or the transformers / datasets switch) is on: use the cache, never the network."""
    return any(_true(os.environ.get(v)) for v in OFFLINE_VARIABLES)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when offline mode is on or one TCP connect to the hub fails. Behind a proxy a direct
    connect says nothing, so we assume reachable there and let the libraries try."""
    if any(_true(os.environ.get(v)) for v in OFFLINE_VARIABLES):
        return False
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    try:
        socket.create_connection(hub_address(), timeout=timeout).close()
        return True
    except OSError:
        return False


def cached_anything(repo_id: str, repo_type: str) -> bool:
    """Whether the local Hugging Face cache holds any file of this repo (no network)."""
    try:
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
        return folder.is_dir() and any(folder.iterdir())
    except Exception:  # noqa: BLE001 - an odd id or cache: let the library answer
        return True


# What needs no network, said wherever a hub fetch fails for want of one (download, the model picker).
OFFLINE_CHOICES = ("Offline, these work: builtin:smollm2-135m (a real chat model, preset smol-cpu), builtin:tiny-phi "
                   "(preset demo), a local model folder, or a model already in the cache")


def no_connection_text(repo_id: str) -> str:
    """Why hub model `repo_id` cannot be fetched now (no connection, or offline mode on), and what works
    without the hub. One text for every place that downloads: `download`, the workbench's model picker."""
    if offline_mode():
        why = "offline mode is on (HF_HUB_OFFLINE=1)"
    else:
        why = f"no connection: {hub_address()[0]} cannot be reached"
    return (f"{why} and {repo_id} is not in the Hugging Face cache, so it cannot be downloaded now. "
            f"{OFFLINE_CHOICES}. A later download resumes what was fetched.")


def is_connection_failure(exc: BaseException) -> bool:
    """Whether a hub call failed for want of a connection (or because offline mode forbids one), not for a
    wrong name or a gated repo. huggingface_hub says LocalEntryNotFoundError when it could not connect and
    nothing is cached; underneath are httpx/requests connect errors and socket errors."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout",
                    "ConnectionError") or isinstance(e, (ConnectionError, socket.gaierror, socket.timeout)):
            return True
        e = e.__cause__ or e.__context__
    return False


def fail_fast_if_unreachable(repo_id: str, repo_type: str, error: Callable[[str], Exception]) -> None:
    """Raise `error(reason)` at once when the repo is not cached and the hub cannot be reached."""
    if cached_anything(repo_id, repo_type) or hub_reachable():
        return
    host, _ = hub_address()
    raise error(f"{host} is not reachable from this machine and {repo_id!r} is not in the local "
                "Hugging Face cache")
