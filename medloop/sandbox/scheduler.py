"""The scheduler: runs many jobs on one `SandboxRuntime` within slots, GPUs and a budget.

- Slots: at most `slots` jobs run at once (threads; the work happens in the runtime).
- GPUs: a job that wants GPUs is given explicit device ids from the pool; each GPU runs
  at most `jobs_per_gpu` jobs at once. A job started without GPUs sees none.
- Budget: trials started, wall time and GPU-hours, all charged from the host's clock.
  A job that the budget does not allow is not started (result `cancelled`, reason says
  which budget); running jobs are stopped when the wall-time or GPU-hour budget is spent.
- Retries happen only for infrastructure faults (`SandboxUnavailable` other than
  `ImageNotFound`) and for jobs that vanished without an outcome (`JobResult.lost`: the
  host crashed, or the launcher died with its job), as a new attempt key, at most
  `max_retries` times; a job that failed, timed out or ran out of memory is a result,
  never retried.
- Crash recovery: before starting anything, `run` asks the runtime to `reconcile` every
  attempt key of every job: finished jobs are collected, running ones re-attached, lost
  ones started again as the next attempt, older attempts still running are stopped, so
  each job yields exactly one result.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from medloop.core.errors import ImageNotFound, MedloopError, SandboxUnavailable, SpecError
from medloop.core.records import GpuId, JobResult, JobSpec, JobStatus, utcnow
from medloop.core.specs import Budget
from medloop.sandbox.base import NOT_STARTED, EventSink, JobEvent, JobHandle, SandboxRuntime, attempt_key
from medloop.sandbox.provenance import make_provenance


class BudgetUsage(BaseModel):
    """What a scheduler has charged so far (host clock)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: int = 0
    wall_s: float = 0.0
    gpu_hours: float = 0.0


@dataclass
class _Run:
    index: int
    job: JobSpec  # as the caller gave it
    gpus: list[GpuId]
    attempt: int = 0
    handle: JobHandle | None = None
    started: float = field(default_factory=time.monotonic)
    stop_reason: str | None = None


class Scheduler:
    """`Executor` over one runtime. Thread-safe: `cancel` may be called from any thread."""

    def __init__(
        self,
        runtime: SandboxRuntime,
        *,
        slots: int = 1,
        gpu_ids: Sequence[GpuId] = (),
        gpus_per_job: int = 0,
        jobs_per_gpu: int = 1,
        budget: Budget | None = None,
        spent: BudgetUsage | None = None,
        max_retries: int = 2,
        retry_backoff_s: float = 1.0,
        external_gpus: int = 0,
    ) -> None:
        if slots < 1 or jobs_per_gpu < 1:
            raise SpecError("executor slots and jobs per GPU must be at least 1")
        if gpus_per_job > len(gpu_ids):
            raise SpecError(
                f"sandbox.gpus={gpus_per_job} but only {len(gpu_ids)} GPU(s) are available",
                hint="set MEDLOOP_GPU_IDS, or lower sandbox.gpus",
            )
        self.runtime = runtime
        self.slots = slots
        self.gpus_per_job = gpus_per_job
        self.jobs_per_gpu = jobs_per_gpu
        self.budget = budget
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        # GPUs per job that the runtime places itself (Ray): charged, not assigned here.
        self.external_gpus = external_gpus
        self._pool: list[GpuId] = list(dict.fromkeys(gpu_ids))
        self._gpu_load: dict[GpuId, int] = dict.fromkeys(self._pool, 0)
        self._spent = spent or BudgetUsage()
        self._t0 = time.monotonic()
        self._trials = 0
        self._gpu_s_done = 0.0
        self._lock = threading.RLock()
        self._running: dict[str, _Run] = {}
        self._cancel_requests: set[str] = set()
        self._closed = False

    # ---------------------------------------------------------------- protocol

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        if self._closed:
            raise SandboxUnavailable("this executor was closed")
        keys = [job.key for job in jobs]
        if len(set(keys)) != len(keys):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            raise SpecError(f"job keys must be unique in one run; repeated: {', '.join(dupes)}")
        emit = _serialized(on_event)
        results: list[JobResult | None] = [None] * len(jobs)
        done: queue.Queue[tuple[int, JobResult | Exception]] = queue.Queue()
        pending: deque[int] = deque()
        next_attempt: dict[int, int] = {}
        recovered = self._recover(jobs)
        for i, job in enumerate(jobs):
            found = recovered.get(i)
            if isinstance(found, int):  # lost in a crash: run again as this attempt
                next_attempt[i] = found
                pending.append(i)
                emit(JobEvent(key=job.key, kind="queued"))
            elif isinstance(found, JobResult):
                results[i] = found
                emit(JobEvent(key=job.key, kind="finished", result=found))
            elif found is not None:
                handle, attempt = found
                self._start(i, job, list(handle.gpu_ids), done, emit, attempt=attempt, handle=handle)
            else:
                pending.append(i)
                emit(JobEvent(key=job.key, kind="queued"))
        fault: Exception | None = None
        while pending or self._active(jobs):
            self._enforce_budget()
            while pending and fault is None and len(self._running) < self.slots:
                job = jobs[pending[0]]
                foreign = self._foreign_gpus(job)
                if foreign is not None:
                    i = pending.popleft()
                    results[i] = self._not_run(job, foreign, status="failed")
                    emit(JobEvent(key=job.key, kind="finished", result=results[i]))
                    continue
                why = self._blocked(job)
                if why is not None:
                    i = pending.popleft()
                    results[i] = self._not_run(job, why)
                    emit(JobEvent(key=job.key, kind="finished", result=results[i]))
                    continue
                gpus = self._take_gpus(job)
                if gpus is None:
                    break
                i = pending.popleft()
                with self._lock:
                    self._trials += 1
                self._start(i, job, gpus, done, emit, attempt=next_attempt.get(i, 0))
            try:
                i, outcome = done.get(timeout=0.1)
            except queue.Empty:
                continue
            run = self._release(jobs[i].key)
            if isinstance(outcome, Exception):
                if fault is None:
                    fault = outcome
                    pending.clear()
                    for other in list(self._running.values()):
                        self._stop(other, "stopped: another job hit an infrastructure fault")
                continue
            if run is not None and run.stop_reason and outcome.status == "cancelled":
                outcome = outcome.model_copy(update={"reason": run.stop_reason})
            results[i] = outcome
            emit(JobEvent(key=jobs[i].key, kind="finished", result=outcome))
        if fault is not None:
            raise fault
        return [r for r in results if r is not None]

    def cancel(self, key: str) -> None:
        with self._lock:
            self._cancel_requests.add(key)
            run = self._running.get(key)
        if run is not None:
            self._stop(run, "cancelled by the host")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            self._stop(run, "the executor was closed")

    # ---------------------------------------------------------------- budget

    def usage(self) -> BudgetUsage:
        """Charges so far, including the running jobs' GPU time up to now."""
        now = time.monotonic()
        with self._lock:
            live = sum(self._charged(r) * (now - r.started) for r in self._running.values())
            return BudgetUsage(
                trials=self._spent.trials + self._trials,
                wall_s=self._spent.wall_s + (now - self._t0),
                gpu_hours=self._spent.gpu_hours + (self._gpu_s_done + live) / 3600.0,
            )

    def _exhausted(self) -> str | None:
        """Which time budget is spent, if any (these stop running jobs too)."""
        if self.budget is None:
            return None
        used = self.usage()
        if self.budget.max_wall is not None and used.wall_s >= self.budget.max_wall:
            return f"campaign budget: wall time of {self.budget.max_wall:g} s is spent"
        if self.budget.max_gpu_hours is not None and used.gpu_hours >= self.budget.max_gpu_hours:
            return f"campaign budget: {self.budget.max_gpu_hours:g} GPU-hours are spent"
        return None

    def _charged(self, run: _Run) -> int:
        return max(len(run.gpus), self.external_gpus)

    def _blocked(self, job: JobSpec) -> str | None:
        with self._lock:
            if job.key in self._cancel_requests:
                return "cancelled by the host before it started"
        spent = self._exhausted()
        if spent is not None:
            return spent
        max_trials = self.budget.max_trials if self.budget is not None else None
        if max_trials is not None and self.usage().trials >= max_trials:
            return f"campaign budget: {max_trials} trials are spent"
        return None

    def _enforce_budget(self) -> None:
        spent = self._exhausted()
        if spent is None:
            return
        with self._lock:
            runs = [r for r in self._running.values() if r.stop_reason is None]
        for run in runs:
            self._stop(run, spent)

    # ---------------------------------------------------------------- GPUs

    def _wants(self, job: JobSpec) -> int:
        return len(job.limits.gpu_ids) or self.gpus_per_job

    def _foreign_gpus(self, job: JobSpec) -> str | None:
        """Why a job that names its own GPUs may not run here (ids outside the pool)."""
        foreign = [g for g in job.limits.gpu_ids if g not in self._pool]
        if not foreign:
            return None
        pool = ",".join(str(g) for g in self._pool) or "none"
        return (
            f"the job asks for GPU(s) {', '.join(str(g) for g in foreign)} outside this host's pool "
            f"(MEDLOOP_GPU_IDS: {pool})"
        )

    def _take_gpus(self, job: JobSpec) -> list[GpuId] | None:
        """Reserve GPU ids for the job, or None if not enough are free now. Only ids of
        the pool are ever handed out or counted (a job naming another id never starts)."""
        with self._lock:
            chosen: list[GpuId]
            if job.limits.gpu_ids:
                chosen = list(job.limits.gpu_ids)
                if any(self._gpu_load[g] >= self.jobs_per_gpu for g in chosen):
                    return None
            else:
                free = sorted(
                    (g for g, load in self._gpu_load.items() if load < self.jobs_per_gpu),
                    key=lambda g: (self._gpu_load[g], self._pool.index(g)),
                )
                if len(free) < self.gpus_per_job:
                    return None
                chosen = free[: self.gpus_per_job]
            for gpu in chosen:
                self._gpu_load[gpu] += 1
            return chosen

    # ---------------------------------------------------------------- running

    def _active(self, jobs: Sequence[JobSpec]) -> bool:
        with self._lock:
            return any(job.key in self._running for job in jobs)

    def _start(
        self,
        index: int,
        job: JobSpec,
        gpus: list[GpuId],
        done: queue.Queue[tuple[int, JobResult | Exception]],
        emit: EventSink,
        *,
        attempt: int = 0,
        handle: JobHandle | None = None,
    ) -> None:
        run = _Run(index=index, job=job, gpus=gpus, attempt=attempt, handle=handle)
        with self._lock:
            self._running[job.key] = run
            if handle is not None:
                run.started = handle.started_monotonic
        thread = threading.Thread(
            target=self._work, args=(run, done, emit), name=f"medloop-job-{job.key}", daemon=True
        )
        thread.start()

    def _work(self, run: _Run, done: queue.Queue[tuple[int, JobResult | Exception]], emit: EventSink) -> None:
        job = run.job

        def on_log(line: str) -> None:
            emit(JobEvent(key=job.key, kind="log", line=line))

        try:
            while True:
                spec = job.model_copy(
                    update={
                        "key": attempt_key(job.key, run.attempt),
                        "limits": job.limits.model_copy(update={"gpu_ids": run.gpus}),
                    }
                )
                try:
                    if run.handle is None:
                        handle = self.runtime.submit(spec)
                        with self._lock:
                            run.handle = handle
                            run.started = handle.started_monotonic
                        emit(JobEvent(key=job.key, kind="started"))
                    if run.stop_reason is not None:
                        self.runtime.cancel(run.handle)
                    result = self.runtime.wait(run.handle, on_log=on_log)
                    if result.lost and run.attempt < self.max_retries and run.stop_reason is None:
                        on_log(
                            f"medloop: the job vanished ({result.reason}); retrying as attempt {run.attempt + 1}"
                        )
                        with self._lock:
                            run.attempt += 1
                            run.handle = None
                        continue
                    if result.lost:
                        result = result.model_copy(
                            update={
                                "reason": f"{result.reason} (lost {run.attempt + 1} times; not run again)"
                            }
                        )
                    break
                except ImageNotFound:
                    raise
                except SandboxUnavailable as exc:
                    if run.handle is not None:
                        with contextlib.suppress(MedloopError):
                            self.runtime.cancel(run.handle)
                    if run.attempt >= self.max_retries or run.stop_reason is not None:
                        raise
                    on_log(
                        f"medloop: infrastructure fault ({exc.message}); retrying as attempt {run.attempt + 1}"
                    )
                    time.sleep(self.retry_backoff_s * 2**run.attempt)
                    with self._lock:
                        run.attempt += 1
                        run.handle = None
                except MedloopError as exc:
                    result = self._not_run(spec, exc.message, status="failed")
                    break
            done.put((run.index, result.model_copy(update={"key": job.key})))
        except Exception as exc:  # noqa: BLE001 - handed to run(), which re-raises it in the caller's thread
            done.put((run.index, exc))

    def _stop(self, run: _Run, reason: str) -> None:
        with self._lock:
            if run.stop_reason is None:
                run.stop_reason = reason
            handle = run.handle
        if handle is not None:
            with contextlib.suppress(MedloopError):
                self.runtime.cancel(handle)

    def _release(self, key: str) -> _Run | None:
        with self._lock:
            run = self._running.pop(key, None)
            if run is not None:
                self._gpu_s_done += self._charged(run) * (time.monotonic() - run.started)
                for gpu in run.gpus:
                    if gpu in self._gpu_load:
                        self._gpu_load[gpu] = max(0, self._gpu_load[gpu] - 1)
            return run

    # ---------------------------------------------------------------- recovery

    def _recover(self, jobs: Sequence[JobSpec]) -> dict[int, JobResult | tuple[JobHandle, int] | int]:
        """Collect or re-attach earlier attempts of these jobs (after a crash). A job whose
        latest attempt was lost is given the next attempt number to start (an int)."""
        attempts = {
            attempt_key(job.key, n): (i, n) for i, job in enumerate(jobs) for n in range(self.max_retries + 1)
        }
        by_job: dict[int, list[tuple[int, JobResult | JobHandle]]] = {}
        for key, item in self.runtime.reconcile(list(attempts)).items():
            i, n = attempts[key]
            by_job.setdefault(i, []).append((n, item))
        recovered: dict[int, JobResult | tuple[JobHandle, int] | int] = {}
        for i, found in by_job.items():
            found.sort(key=lambda pair: pair[0])
            for _, older in found[:-1]:
                if isinstance(older, JobHandle):
                    # A superseded attempt still running: stop it, its result is not used.
                    with contextlib.suppress(MedloopError):
                        self.runtime.cancel(older)
            n, item = found[-1]
            if isinstance(item, JobResult) and item.lost and n < self.max_retries:
                recovered[i] = n + 1
            elif isinstance(item, JobResult):
                if item.lost:
                    item = item.model_copy(
                        update={"reason": f"{item.reason} (lost {n + 1} times; not run again)"}
                    )
                recovered[i] = item.model_copy(update={"key": jobs[i].key})
            else:
                recovered[i] = (item, n)
                with self._lock:
                    for gpu in item.gpu_ids:
                        if gpu in self._gpu_load:  # never let a re-attached job grow the pool
                            self._gpu_load[gpu] += 1
        return recovered

    def _not_run(self, job: JobSpec, reason: str, *, status: JobStatus = "cancelled") -> JobResult:
        """The result of a job that never ran (budget, cancel before start, bad spec)."""
        now = utcnow()
        return JobResult(
            key=job.key,
            status=status,
            exit_code=None,
            wall_s=0.0,
            out_dir=NOT_STARTED,
            reason=reason,
            provenance=make_provenance(
                job, runtime=self.runtime.name, image=None, started_at=now, ended_at=now, exit_code=None
            ),
        )


def _serialized(sink: EventSink | None) -> EventSink:
    """Calls the caller's sink from one thread at a time, so sinks need no locking."""
    lock = threading.Lock()

    def emit(event: JobEvent) -> None:
        if sink is not None:
            with lock:
                sink(event)

    return emit
