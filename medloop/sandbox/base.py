"""The sandbox boundary: `SandboxRuntime` runs one job; `Executor` schedules many.

A job that fails, runs out of memory, times out or breaks its output quota returns a
`JobResult` with that status. Only infrastructure faults raise (`SandboxUnavailable`,
`ImageNotFound`). Timeouts and limits are enforced by the host, never by the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from medloop.core.records import GpuId, JobLimits, JobResult, JobSpec
from medloop.core.specs import SandboxSpec

# Where a job sees its inputs and writes its outputs. The local runtime substitutes
# real folders for these prefixes in the command and environment.
IN_DIR = "/in"
OUT_DIR = "/out"


# The out_dir of a JobResult for a job that never started (budget, cancel before start).
NOT_STARTED = Path(os.devnull)


def never_started(result: JobResult) -> bool:
    """Whether `result` records a job the scheduler refused before it ran (costs nothing)."""
    return result.out_dir == NOT_STARTED


def job_key(campaign_id: str, spec_hash: str, attempt: int = 0) -> str:
    """The deterministic key of a trial's job: campaign, trial spec hash, attempt.

    Runtimes refuse to run a key twice and find a job again by it after a crash.
    """
    return attempt_key(f"{campaign_id}.{spec_hash[:20]}", attempt)


def limits_for(sandbox: SandboxSpec) -> JobLimits:
    """The per-job limits a campaign's `sandbox:` section asks for (GPU ids are assigned
    by the scheduler from `sandbox.gpus`)."""
    return JobLimits(
        timeout_s=sandbox.timeout,
        memory_mb=sandbox.memory_mb,
        cpus=sandbox.cpus,
        output_mb=sandbox.output_limit_mb,
        output_entries=sandbox.output_entries,
    )


def attempt_key(key: str, attempt: int) -> str:
    """The key of retry `attempt` of a job (attempt 0 is the key itself)."""
    return key if attempt == 0 else f"{key}.retry{attempt}"


class JobHandle(BaseModel):
    """A submitted job. `ref` is the runtime's own id (pid, container id, Ray task id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    runtime: str
    ref: str
    out_dir: Path
    started_at: str
    started_monotonic: float
    gpu_ids: list[GpuId] = Field(default_factory=list, description="GPUs the job was given")


class JobEvent(BaseModel):
    """Streamed to callers while jobs run: a log line from stdout, or a state change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: Literal["queued", "started", "log", "finished"]
    line: str | None = None
    result: JobResult | None = None


LogSink = Callable[[str], None]
EventSink = Callable[[JobEvent], None]


class SandboxRuntime(Protocol):
    name: str

    def submit(self, job: JobSpec) -> JobHandle:
        """Start the job and return at once. Raises SandboxUnavailable if it cannot start."""
        ...

    def wait(self, handle: JobHandle, *, on_log: LogSink | None = None) -> JobResult:
        """Block until the job ends or hits its limit; stream stdout lines to `on_log`."""
        ...

    def cancel(self, handle: JobHandle) -> None:
        """Stop the job and everything it started. Idempotent."""
        ...

    def logs(self, handle: JobHandle, *, tail: int = 200) -> str: ...

    def reconcile(self, keys: Sequence[str]) -> dict[str, JobHandle | JobResult]:
        """After an orchestrator crash: re-attach to running jobs with these keys
        (handles) or collect finished ones (results). Orphans are removed."""
        ...


class Executor(Protocol):
    """Runs many jobs within slots and budgets, on one runtime or a cluster."""

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        """Run all jobs (concurrently within slots); results in the order of `jobs`."""
        ...

    def cancel(self, key: str) -> None: ...

    def close(self) -> None: ...
