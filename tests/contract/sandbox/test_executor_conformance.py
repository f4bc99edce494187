"""Conformance suite of `Executor` (sandbox/base.py): the scheduler on the local runtime,
and the Ray executor on a real local Ray head (marker `ray`; MEDLOOP_REQUIRE=ray makes a
missing Ray a failure). Both are built through `make_executor`, as bootstrap builds them.

The promise checked: results in the order of the jobs whatever order they finish in; a
failed or timed-out job is a result, never an exception; cancel by key stops a running
job and is harmless for a key that is not running; a budget refuses jobs without running
them; the same keys run again are collected, not started twice; a closed executor refuses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from medloop.core.errors import SandboxUnavailable, SpecError
from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import Budget, ExecutorSpec, SandboxSpec
from medloop.sandbox.base import Executor, JobEvent, never_started
from medloop.sandbox.factory import make_executor
from tests.ray_head import ray_head

MakeExecutor = Callable[..., Executor]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with ray_head(tmp_path_factory.mktemp("ray"), cpus=3, gpus=0):
        yield


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def make(request: pytest.FixtureRequest, settings: Settings) -> Iterator[MakeExecutor]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    made: list[Executor] = []

    def build(budget: Budget | None = None) -> Executor:
        executor = make_executor(settings, SandboxSpec(), ExecutorSpec(kind=request.param, slots=3), budget)
        made.append(executor)
        return executor

    yield build
    for executor in made:
        executor.close()


def pyjob(key: str, code: str, **limits: float) -> JobSpec:
    return JobSpec(
        key=key,
        command=["python", "-c", code],
        inputs={},
        limits=JobLimits(**{"timeout_s": 60.0, "memory_mb": 512, "cpus": 1.0, **limits}),
    )


def test_results_come_in_the_order_of_the_jobs_not_of_finishing(make: MakeExecutor) -> None:
    jobs = [
        pyjob("slow", "import time; time.sleep(2); print('slow')"),
        pyjob("fast", "print('fast')"),
        pyjob("mid", "import time; time.sleep(0.5); print('mid')"),
    ]
    finished: list[str] = []

    def on_event(event: JobEvent) -> None:
        if event.kind == "finished":
            finished.append(event.key)

    results = make().run(jobs, on_event=on_event)
    assert [r.key for r in results] == ["slow", "fast", "mid"]
    assert [r.log_tail.strip() for r in results] == ["slow", "fast", "mid"]
    assert all(r.status == "succeeded" for r in results)
    assert sorted(finished) == ["fast", "mid", "slow"]  # one finished event per job


def test_a_failing_or_timed_out_job_is_a_result_and_the_others_still_run(make: MakeExecutor) -> None:
    results = make().run(
        [
            pyjob("exits", "import sys; sys.exit(3)"),
            pyjob("hangs", "import time; time.sleep(120)", timeout_s=1.5),
            pyjob("fine", "print('ok')"),
        ]
    )
    assert (results[0].status, results[0].exit_code) == ("failed", 3)
    assert results[1].status == "timed_out"
    assert results[2].status == "succeeded"


def test_cancel_by_key_stops_a_running_job_and_is_harmless_otherwise(make: MakeExecutor) -> None:
    executor = make()
    executor.cancel("never-submitted")  # nothing runs under this key: no error
    timer = threading.Timer(2.0, executor.cancel, args=("cancelme",))
    timer.start()
    try:
        cancelled, other = executor.run(
            [
                pyjob("cancelme", "import time; print('up', flush=True); time.sleep(120)"),
                pyjob("other", "import time; time.sleep(3); print('done')"),
            ]
        )
    finally:
        timer.cancel()
    assert cancelled.status == "cancelled"
    assert cancelled.wall_s < 60
    assert other.status == "succeeded"
    executor.cancel("cancelme")  # again, after it ended: still no error


def test_a_budget_refuses_jobs_without_running_them(make: MakeExecutor) -> None:
    results = make(Budget(max_trials=1)).run([pyjob("first", "print(1)"), pyjob("second", "print(2)")])
    assert results[0].status == "succeeded"
    assert results[1].status == "cancelled"
    assert never_started(results[1])
    assert "budget" in (results[1].reason or "")


def test_the_same_keys_again_are_collected_not_run_twice(make: MakeExecutor, tmp_path: Path) -> None:
    code = "import os; print(os.urandom(8).hex())"  # a second run would print another value
    first = make().run([pyjob("once", code)])
    events: list[JobEvent] = []
    again = make().run([pyjob("once", code)], on_event=events.append)  # a restarted orchestrator
    assert again[0].status == "succeeded"
    assert again[0].log_tail == first[0].log_tail
    assert again[0].provenance.started_at == first[0].provenance.started_at
    assert not [e for e in events if e.kind == "started"]


def test_repeated_keys_in_one_run_and_a_closed_executor_are_refused(make: MakeExecutor) -> None:
    executor = make()
    with pytest.raises(SpecError, match="unique"):
        executor.run([pyjob("dup", "print(1)"), pyjob("dup", "print(2)")])
    executor.close()
    executor.close()  # idempotent
    with pytest.raises(SandboxUnavailable):
        executor.run([pyjob("late", "print(1)")])
