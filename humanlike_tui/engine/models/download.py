"""Downloading a hub model with progress people can read (bytes, rate, ETA), a way to cancel, and resume
after a cut.

huggingface_hub's snapshot_download does the work and resumes by itself: a cut leaves `.incomplete`
files in the cache that the next call continues. Its `tqdm_class` hook sees the byte counts; ours draws
nothing and reports DownloadProgress to a callback instead, and raises DownloadCancelled from inside the
download when the stop event is set (the partial files stay for the next try). Only what loading needs is
fetched: safetensors weights, configs and tokenizer files (no pickles, no other frameworks' weights).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from humanlike_tui.errors import HumanlikeError, ModelError

# Weights in other formats than safetensors are never loaded here (a pickle can run code): skip them.
IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.gguf",
                   "*.tflite", "*.ot", "original/*", "onnx/*", "coreml/*"]
REPORT_EVERY_S = 0.25  # progress callbacks at most four times a second


class DownloadCancelled(HumanlikeError):
    """Raised inside the download when its stop event is set; what was fetched stays for the next try."""

    exit_code = 130


@dataclass(frozen=True)
class DownloadProgress:
    done_bytes: int
    total_bytes: int  # grows as the files' sizes become known
    bytes_per_s: float
    eta_s: float | None
    finished: bool = False


def download_model(name: str, revision: str | None = None, *,
                   progress: Callable[[DownloadProgress], None] = lambda p: None,
                   stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic) -> Path:
    """Fetch hub model `name` into the Hugging Face cache (resuming what an earlier try left) and return its
    snapshot folder. Raises DownloadCancelled when `stop` is set, ModelError (no connection, and what works
    offline) when the hub cannot be reached, the hub's own errors otherwise."""
    from huggingface_hub import snapshot_download

    from humanlike_tui.engine.hub import is_connection_failure, no_connection_text

    check_repo_id(name)
    meter = _Meter(progress, stop or threading.Event(), clock)
    try:
        folder = snapshot_download(name, revision=revision or None, ignore_patterns=IGNORE_PATTERNS,
                                   tqdm_class=meter.bar_class())
    except DownloadCancelled:
        raise
    except Exception as exc:
        if is_connection_failure(exc):  # not "unexpected error: LocalEntryNotFoundError: ..."
            raise ModelError(no_connection_text(name)) from None
        refused = hub_refusal(name, revision, exc)
        if refused is None:
            raise
        raise refused from None
    meter.finish()
    return Path(folder)


EXAMPLE_ID = "HuggingFaceTB/SmolLM2-360M-Instruct"


def check_repo_id(name: str) -> None:
    """ModelError for a name that cannot be a hub model id ('../../etc', 300 characters, spaces, empty),
    before anything asks the hub: the hub library's own ValueError would read as a bug of ours."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        shown = repr(name) if len(name) <= 60 else f"{name[:60]!r}... ({len(name)} characters)"
        raise ModelError(f"{shown} is not a Hugging Face Hub model id: an id is OWNER/NAME or NAME, made of letters, "
                         f"digits, '-', '_' and '.' (at most 96 characters, no spaces, no '..'), e.g. {EXAMPLE_ID}; "
                         "copy it from the model's page on huggingface.co") from None


def hub_refusal(name: str, revision: str | None, exc: BaseException) -> ModelError | None:
    """The hub's answer in words, as `train` gives it: no such model, gated, no such revision. None for
    an error that is not the hub's refusal (left to the caller)."""
    kind = type(exc).__name__
    if kind == "GatedRepoError":
        return ModelError(f"{name!r} is gated on the Hugging Face Hub: accept its licence on its page, then log in "
                          "here (hf auth login) and download again")
    if kind == "RevisionNotFoundError":
        return ModelError(f"{name!r} has no revision {revision!r} on the Hugging Face Hub; leave out --revision for "
                          "its main branch, or copy a branch, tag or commit from its page")
    if kind == "RepositoryNotFoundError":
        return ModelError(f"no model {name!r} on the Hugging Face Hub (or it is private: log in with hf auth login); "
                          f"check the id on huggingface.co, e.g. {EXAMPLE_ID}")
    if kind in ("HfHubHTTPError", "EntryNotFoundError", "HFValidationError"):
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else kind
        return ModelError(f"the Hugging Face Hub refused {name!r} ({first}); check the id and your login")
    return None


class _Meter:
    """Adds up the bytes every progress bar of one download reports and turns them into DownloadProgress."""

    def __init__(self, report: Callable[[DownloadProgress], None], stop: threading.Event,
                 clock: Callable[[], float]) -> None:
        self.report, self.stop, self.clock = report, stop, clock
        self.lock = threading.Lock()
        self.done = self.total = 0
        self.start = clock()
        self.resumed = 0  # bytes already on disk from an earlier try (not counted in the rate)
        self.last = 0.0

    def add(self, done: int = 0, total: int = 0, resumed: int = 0) -> None:
        if self.stop.is_set():
            raise DownloadCancelled("download cancelled; what was fetched is kept and the next try resumes it")
        with self.lock:
            self.done += done + resumed
            self.total += total
            self.resumed += resumed
            now = self.clock()
            if now - self.last < REPORT_EVERY_S and self.done < self.total:
                return
            self.last = now
            snapshot = self._progress(now)
        self.report(snapshot)

    def _progress(self, now: float, finished: bool = False) -> DownloadProgress:
        elapsed = max(now - self.start, 1e-6)
        rate = max(self.done - self.resumed, 0) / elapsed
        left = max(self.total - self.done, 0)
        eta = left / rate if rate > 0 else None
        return DownloadProgress(self.done, max(self.total, self.done), rate, 0.0 if finished else eta, finished)

    def finish(self) -> None:
        self.report(self._progress(self.clock(), finished=True))

    def bar_class(self):
        """A tqdm stand-in for snapshot_download: silent; byte bars feed this meter, the rest are ignored."""
        meter = self

        class Bar:
            def __init__(self, *args, **kwargs) -> None:
                self.n = kwargs.get("initial", 0) or 0
                self._total = kwargs.get("total") or 0
                desc = str(kwargs.get("desc") or "")
                # The per-file byte bars are folded by huggingface_hub into its 'Reconstructing' bar; the
                # 'Downloading bytes' bar counts network bytes (compressed) and the file-count bar files.
                self.counts = kwargs.get("unit") == "B" and not desc.startswith("Downloading")
                self.format_dict = {"rate": None}
                if self.counts and (self._total or self.n):
                    meter.add(total=self._total, resumed=self.n)

            @property
            def total(self) -> int:
                return self._total

            @total.setter
            def total(self, value: int | None) -> None:  # huggingface_hub grows it file by file
                value = int(value or 0)
                if self.counts and value > self._total:
                    meter.add(total=value - self._total)
                self._total = value

            def update(self, n: int | float | None = 1) -> None:
                n = int(n or 0)
                self.n += n
                if self.counts:
                    meter.add(done=n)
                elif meter.stop.is_set():
                    meter.add()  # raises: cancel between files too

            def refresh(self, *args, **kwargs) -> None:
                pass

            def close(self) -> None:
                pass

            def set_description(self, *args, **kwargs) -> None:
                pass

            set_description_str = set_postfix_str = set_postfix = set_description

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                pass

            def __iter__(self):
                return iter(())

        return Bar
