"""One folder per job on the host: what every runtime keeps there and how it is read back.

Layout of `<jobs_dir>/<safe key>/`:

    key.txt          the job key (safe names may be shortened with a hash)
    spec.json        the JobSpec as submitted
    in/              inputs staged read-only (local runtime; Docker bind-mounts instead)
    out/             the job's only writable folder (`/out` inside the job)
    tmp/ home/       scratch (local runtime; Docker uses a size-capped tmpfs)
    log.txt          stdout + stderr of the job, appended while it runs
    run.json         how to find the running job again: runtime, ref, start time
    kill.json        why the host stopped the job (written *before* it kills)
    exit.json        exit status, written by whatever saw the job end
    result.json      the final JobResult; once it exists the job is never run again

Files that record decisions are written to a temp name and renamed, so a crash never
leaves half a record behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from medloop.core.errors import SpecError
from medloop.core.records import JobLimits, JobResult, JobStatus

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_NAME = 96


def safe_key(key: str) -> str:
    """A file-system- and Docker-safe name for a job key, injective over all keys.

    Keys made only of `[A-Za-z0-9_.-]` (and short enough) are kept as they are; any other
    key is cleaned and suffixed with a hash of the original, so two keys never collide.
    """
    if not key:
        raise SpecError("job key is empty", hint="every JobSpec needs a deterministic key")
    cleaned = _UNSAFE.sub("_", key).lstrip(".-_") or "job"
    if cleaned == key and len(key) <= _MAX_NAME and key[0].isalnum():
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{cleaned[: _MAX_NAME - 13]}-{digest}"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def tree_usage(path: Path) -> tuple[int, int]:
    """(bytes on disk, entries) under `path`: files, folders and anything else the job made
    count as entries (inodes), folders with their own blocks; links are not followed."""
    total = entries = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            found = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in found:
            entries += 1
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
            except FileNotFoundError:
                continue
    return total, entries


def tree_size(path: Path) -> int:
    """Bytes used under `path`, folders included (symlinks are not followed)."""
    return tree_usage(path)[0]


def remove_tree(path: Path) -> None:
    """rmtree that also removes the read-only folders the local runtime stages."""

    def _chmod_and_retry(func: Any, target: str, _exc_info: Any) -> None:
        parent = Path(target).parent
        parent.chmod(parent.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if Path(target).is_dir() and not Path(target).is_symlink():
            Path(target).chmod(stat.S_IRWXU)
        func(target)

    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, onerror=_chmod_and_retry)


class KillReason(BaseModel):
    """Why the host stopped a job: written before the kill so a crash cannot lose it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: JobStatus
    reason: str


class RunInfo(BaseModel):
    """How to find a started job again after the orchestrator restarts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    runtime: str
    ref: str
    started_at: str
    started_unix: float
    token: str = ""
    proc_start: int | None = None


class JobDir:
    def __init__(self, jobs_dir: Path, key: str) -> None:
        self.key = key
        self.path = jobs_dir / safe_key(key)

    @property
    def in_dir(self) -> Path:
        return self.path / "in"

    @property
    def out_dir(self) -> Path:
        return self.path / "out"

    @property
    def tmp_dir(self) -> Path:
        return self.path / "tmp"

    @property
    def home_dir(self) -> Path:
        return self.path / "home"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "key.txt").write_text(self.key)
        self.out_dir.mkdir(exist_ok=True)
        self.log_path.touch()

    # ---------------------------------------------------------------- records

    def write_run(self, info: RunInfo) -> None:
        write_json_atomic(self.path / "run.json", info.model_dump(mode="json"))

    def run_info(self) -> RunInfo | None:
        data = read_json(self.path / "run.json")
        return RunInfo.model_validate(data) if data else None

    def write_kill(self, status: JobStatus, reason: str) -> None:
        """Record why the job is being stopped; the first reason wins."""
        if self.kill_reason() is None:
            write_json_atomic(self.path / "kill.json", {"status": status, "reason": reason})

    def kill_reason(self) -> KillReason | None:
        data = read_json(self.path / "kill.json")
        return KillReason.model_validate(data) if data else None

    def write_exit(self, exit_code: int | None, ended_at: str, detail: dict[str, Any] | None = None) -> None:
        write_json_atomic(
            self.path / "exit.json", {"exit_code": exit_code, "ended_at": ended_at, **(detail or {})}
        )

    def exit_info(self) -> dict[str, Any] | None:
        data = read_json(self.path / "exit.json")
        return data if isinstance(data, dict) else None

    def write_result(self, result: JobResult) -> None:
        write_json_atomic(self.path / "result.json", result.model_dump(mode="json"))

    def result(self) -> JobResult | None:
        data = read_json(self.path / "result.json")
        return JobResult.model_validate(data) if data else None

    def exists(self) -> bool:
        return (self.path / "key.txt").is_file()

    # ---------------------------------------------------------------- output

    def written_bytes(self) -> int:
        """Everything the job wrote that counts against its output quota (out, scratch, log)."""
        return self.written()[0]

    def written(self) -> tuple[int, int]:
        """(bytes, entries) the job wrote: out, scratch and log count against its quota."""
        total = entries = 0
        for folder in (self.out_dir, self.tmp_dir, self.home_dir):
            size, count = tree_usage(folder)
            total, entries = total + size, entries + count
        with contextlib.suppress(FileNotFoundError):
            total += self.log_path.stat().st_size
        return total, entries

    def quota_breach(self, limits: JobLimits) -> str | None:
        """Why the job's writes break its limits (bytes or entries), or None."""
        size, entries = self.written()
        if size > limits.output_mb * (1 << 20):
            return f"wrote more than the {limits.output_mb} MB output limit"
        if entries > limits.output_entries:
            return (
                f"created {entries} files and folders, more than the limit of "
                f"{limits.output_entries} output entries (sandbox.output_entries)"
            )
        return None

    def log_tail(self, lines: int = 200, max_bytes: int = 16_384) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                data = fh.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class LogFollower:
    """Reads new complete lines from a growing log file (stdout is streamed through it)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def poll(self, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                # Read at most 4 MiB per poll so a job spamming stdout cannot stall the host.
                data = fh.read(4 << 20)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete]
