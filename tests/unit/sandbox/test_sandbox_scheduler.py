"""The scheduler on the real local runtime: slots, GPUs, budgets, retries, cancel, recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from medloop.core.errors import ImageNotFound, SandboxUnavailable, SpecError
from medloop.core.records import JobLimits, JobResult, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import Budget, ExecutorSpec, SandboxSpec
from medloop.sandbox.base import JobEvent, JobHandle, LogSink, attempt_key, job_key, limits_for
from medloop.sandbox.factory import make_executor
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import BudgetUsage, Scheduler


def pyjob(key: str, code: str, **limits: float) -> JobSpec:
    return JobSpec(key=key, command=["python", "-c", code], inputs={}, limits=JobLimits(**limits))


SLEEP = "import time, os; print('gpu=' + os.environ.get('CUDA_VISIBLE_DEVICES', '?'), flush=True); time.sleep({s})"
# Records when the job ran (host clock), so concurrency is checked without timing bounds.
SPAN = "import time; a = time.time(); {body}; open('/out/span', 'w').write(f'{{a}} {{time.time()}}')"


def peak_overlap(results: Sequence[JobResult]) -> int:
    """Most jobs that ran at the same moment, from the spans the jobs recorded."""
    spans = [tuple(map(float, (r.out_dir / "span").read_text().split())) for r in results]
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_slots_run_jobs_concurrently_and_results_keep_order(settings: Settings) -> None:
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=2)
    jobs = [pyjob(f"j{i}", SPAN.format(body=f"time.sleep(1); print({i})")) for i in range(4)]
    results = sched.run(jobs)
    assert [r.key for r in results] == [j.key for j in jobs]
    assert all(r.status == "succeeded" for r in results)
    assert [r.log_tail for r in results] == ["0", "1", "2", "3"]
    assert peak_overlap(results) == 2  # never more than the slots, and really in parallel


def test_events_are_streamed_for_every_job(settings: Settings) -> None:
    events: list[JobEvent] = []
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=1)
    sched.run([pyjob("a", "print('hello')"), pyjob("b", "print('world')")], on_event=events.append)
    kinds = {(e.key, e.kind) for e in events}
    for key in ("a", "b"):
        assert {(key, "queued"), (key, "started"), (key, "log"), (key, "finished")} <= kinds
    assert [e.line for e in events if e.kind == "log" and e.key == "a"] == ["hello"]
    finished = [e for e in events if e.kind == "finished"]
    assert all(e.result is not None and e.result.status == "succeeded" for e in finished)


def test_gpu_slots_give_each_job_its_own_device(settings: Settings) -> None:
    # Device ids here are bookkeeping only (no GPU is touched): two GPUs, one job each.
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=4, gpu_ids=[0, 1], gpus_per_job=1)
    jobs = [pyjob(f"g{i}", SPAN.format(body=SLEEP.format(s=1))) for i in range(4)]
    results = sched.run(jobs)
    assert sorted(r.log_tail for r in results) == ["gpu=0", "gpu=0", "gpu=1", "gpu=1"]
    assert sorted(r.provenance.gpu_ids for r in results) == [[0], [0], [1], [1]]
    assert peak_overlap(results) == 2  # only 2 at a time although 4 CPU slots are free
    assert sched.usage().gpu_hours > 3.5 / 3600


def test_a_shared_gpu_runs_several_jobs(settings: Settings) -> None:
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=4, gpu_ids=[3], gpus_per_job=1, jobs_per_gpu=2)
    results = sched.run([pyjob(f"s{i}", SPAN.format(body=SLEEP.format(s=1.5))) for i in range(2)])
    assert [r.log_tail for r in results] == ["gpu=3", "gpu=3"]
    assert peak_overlap(results) == 2


def test_jobs_without_gpus_see_none(settings: Settings) -> None:
    result = Scheduler(LocalRuntime(settings.jobs_dir), gpu_ids=[0]).run([pyjob("nogpu", SLEEP.format(s=0))])[
        0
    ]
    assert result.log_tail == "gpu="


def test_asking_for_more_gpus_than_exist_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(SpecError, match=r"sandbox.gpus=2 but only 1"):
        Scheduler(LocalRuntime(settings.jobs_dir), gpu_ids=[0], gpus_per_job=2)


def test_trial_budget_stops_starting_jobs(settings: Settings) -> None:
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=1, budget=Budget(max_trials=2))
    results = sched.run([pyjob(f"t{i}", "print(1)") for i in range(3)])
    assert [r.status for r in results] == ["succeeded", "succeeded", "cancelled"]
    assert results[2].reason is not None and "2 trials" in results[2].reason
    assert sched.usage().trials == 2


def test_wall_budget_stops_a_running_job(settings: Settings) -> None:
    sched = Scheduler(LocalRuntime(settings.jobs_dir), budget=Budget(max_wall=1.5))
    start = time.monotonic()
    results = sched.run([pyjob("long", "import time; time.sleep(60)"), pyjob("next", "print(1)")])
    assert time.monotonic() - start < 10
    assert [r.status for r in results] == ["cancelled", "cancelled"]
    assert all(r.reason is not None and "wall time" in r.reason for r in results)


def test_gpu_hour_budget_is_charged_from_the_host_clock(settings: Settings) -> None:
    budget = Budget(max_gpu_hours=1.0 / 3600)  # one GPU-second
    sched = Scheduler(LocalRuntime(settings.jobs_dir), gpu_ids=[0], gpus_per_job=1, budget=budget)
    result = sched.run([pyjob("gpuhog", "import time; time.sleep(60)")])[0]
    assert result.status == "cancelled"
    assert result.reason is not None and "GPU-hours" in result.reason


def test_budget_continues_from_what_was_spent(settings: Settings) -> None:
    sched = Scheduler(
        LocalRuntime(settings.jobs_dir), budget=Budget(max_trials=5), spent=BudgetUsage(trials=5)
    )
    assert sched.run([pyjob("late", "print(1)")])[0].status == "cancelled"


def test_cancel_a_running_and_a_queued_job(settings: Settings) -> None:
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=1)
    jobs = [pyjob("first", "import time; time.sleep(60)"), pyjob("second", "print(2)")]

    def cancel_both() -> None:
        sched.cancel("second")
        sched.cancel("first")

    threading.Timer(1.0, cancel_both).start()
    start = time.monotonic()
    results = sched.run(jobs)
    assert time.monotonic() - start < 10
    assert [r.status for r in results] == ["cancelled", "cancelled"]
    assert results[1].reason is not None and "before it started" in results[1].reason


class FlakyRuntime:
    """A fake runtime that fails to start the first `faults` jobs (a daemon hiccup)."""

    name = "local"

    def __init__(
        self, inner: LocalRuntime, faults: int, fault: type[SandboxUnavailable] = SandboxUnavailable
    ):
        self.inner = inner
        self.faults = faults
        self.fault = fault
        self.submitted: list[str] = []

    def submit(self, job: JobSpec) -> JobHandle:
        self.submitted.append(job.key)
        if self.faults > 0:
            self.faults -= 1
            raise self.fault("daemon hiccup")
        return self.inner.submit(job)

    def wait(self, handle: JobHandle, *, on_log: LogSink | None = None) -> JobResult:
        return self.inner.wait(handle, on_log=on_log)

    def cancel(self, handle: JobHandle) -> None:
        self.inner.cancel(handle)

    def logs(self, handle: JobHandle, *, tail: int = 200) -> str:
        return self.inner.logs(handle, tail=tail)

    def reconcile(self, keys: Sequence[str]) -> dict[str, JobHandle | JobResult]:
        return self.inner.reconcile(keys)


def test_infrastructure_faults_are_retried_as_new_attempts(settings: Settings) -> None:
    flaky = FlakyRuntime(LocalRuntime(settings.jobs_dir), faults=1)
    result = Scheduler(flaky, retry_backoff_s=0.01).run([pyjob("flaky", "print('ok')")])[0]
    assert result.status == "succeeded"
    assert result.key == "flaky"
    assert flaky.submitted == ["flaky", attempt_key("flaky", 1)]


def test_failed_jobs_are_not_retried(settings: Settings) -> None:
    flaky = FlakyRuntime(LocalRuntime(settings.jobs_dir), faults=0)
    result = Scheduler(flaky, retry_backoff_s=0.01).run([pyjob("bad", "raise SystemExit(2)")])[0]
    assert result.status == "failed"
    assert flaky.submitted == ["bad"]


def test_persistent_faults_and_missing_images_raise(settings: Settings) -> None:
    flaky = FlakyRuntime(LocalRuntime(settings.jobs_dir), faults=10)
    with pytest.raises(SandboxUnavailable):
        Scheduler(flaky, max_retries=2, retry_backoff_s=0.01).run([pyjob("down", "print(1)")])
    assert len(flaky.submitted) == 3
    missing = FlakyRuntime(LocalRuntime(settings.jobs_dir), faults=1, fault=ImageNotFound)
    with pytest.raises(ImageNotFound):
        Scheduler(missing, retry_backoff_s=0.01).run([pyjob("noimage", "print(1)")])
    assert missing.submitted == ["noimage"]


def test_a_restarted_scheduler_reattaches_instead_of_rerunning(settings: Settings) -> None:
    code = "import os, time; open('/out/ran-' + os.urandom(4).hex(), 'w').close(); time.sleep(1.5); print('done')"
    key = job_key("cmp_1", "f" * 64)
    LocalRuntime(settings.jobs_dir).submit(pyjob(key, code))  # the scheduler that ran it "crashed"
    finished = pyjob("already", "print('before')")
    LocalRuntime(settings.jobs_dir).wait(LocalRuntime(settings.jobs_dir).submit(finished))
    events: list[JobEvent] = []
    results = Scheduler(LocalRuntime(settings.jobs_dir), slots=1).run(
        [pyjob(key, code), finished, pyjob("new", "print('new')")], on_event=events.append
    )
    assert [r.status for r in results] == ["succeeded"] * 3
    assert [r.log_tail for r in results] == ["done", "before", "new"]
    assert len(list(results[0].out_dir.glob("ran-*"))) == 1
    assert not any(e.kind == "queued" and e.key in (key, "already") for e in events)


def test_factory_builds_a_scheduler_from_the_campaign_specs(settings: Settings) -> None:
    sandbox = SandboxSpec(timeout=5, memory_mb=256, output_limit_mb=3)
    executor = make_executor(settings, sandbox, ExecutorSpec(slots=2), Budget(max_trials=10))
    limits = limits_for(sandbox)
    assert (limits.timeout_s, limits.memory_mb, limits.output_mb) == (5, 256, 3)
    spec = JobSpec(key="fac", command=["python", "-c", "print('hi')"], inputs={}, limits=limits)
    result = executor.run([spec])[0]
    executor.close()
    assert result.status == "succeeded"
    assert Path(result.out_dir).is_relative_to(settings.jobs_dir)


def test_repeated_keys_are_refused(settings: Settings) -> None:
    with pytest.raises(SpecError, match="repeated: same"):
        Scheduler(LocalRuntime(settings.jobs_dir)).run([pyjob("same", "1"), pyjob("same", "2")])


def test_a_job_naming_a_gpu_outside_the_pool_is_refused_and_the_pool_stays(settings: Settings) -> None:
    # Issue 14 item 8: GPU 7 was accepted and joined the pool for good.
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=2, gpu_ids=[0], gpus_per_job=0)
    rogue = pyjob("rogue", SLEEP.format(s=0)).model_copy(update={"limits": JobLimits(gpu_ids=[7])})
    own = pyjob("own", SLEEP.format(s=0)).model_copy(update={"limits": JobLimits(gpu_ids=[0])})
    bad, good = sched.run([rogue, own])
    assert (
        bad.status == "failed"
        and "GPU(s) 7 outside" in (bad.reason or "")
        and "MEDLOOP_GPU_IDS" in bad.reason
    )
    assert good.status == "succeeded" and good.log_tail == "gpu=0"
    again = sched.run([pyjob("rogue2", "print(1)").model_copy(update={"limits": JobLimits(gpu_ids=[7])})])[0]
    assert again.status == "failed"  # 7 never became part of the pool


def test_gpu_uuids_and_mig_ids_are_ids_and_jobs_see_pci_bus_order(settings: Settings) -> None:
    from medloop.sandbox.factory import gpu_pool

    ids = "GPU-5f3c2a1b-0000-1111-2222-333344445555,MIG-9a1b2c3d-4444-5555-6666-777788889999"
    pool = gpu_pool(settings.model_copy(update={"gpu_ids": f"{ids},2"}))
    assert pool == [*ids.split(","), 2]
    with pytest.raises(SpecError, match="neither an index"):
        gpu_pool(settings.model_copy(update={"gpu_ids": "0,gpu0"}))
    show = "import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['CUDA_DEVICE_ORDER'])"
    sched = Scheduler(LocalRuntime(settings.jobs_dir), slots=2, gpu_ids=pool[:2], gpus_per_job=1)
    results = sched.run([pyjob("u0", show), pyjob("u1", show)])
    seen = sorted(r.log_tail for r in results)
    assert seen == sorted(f"{g} PCI_BUS_ID" for g in pool[:2])
    assert sorted(str(r.provenance.gpu_ids[0]) for r in results) == sorted(pool[:2])
