"""A host crash: the orchestrator AND the job's processes die (SIGKILL, as power loss, the
OOM killer or a reboot would). The job vanished without an outcome, so a restarted
scheduler runs it again under the next attempt key instead of recording a failure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.sandbox.base import attempt_key, job_key
from medloop.sandbox.jobdir import JobDir
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler

# Counts its runs in a host file; the first run hangs (it is killed mid-run), later ones finish.
JOB = """
import pathlib, time
runs = pathlib.Path({runs!r})
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
if n == 1:
    time.sleep(600)
print("finished run", n)
"""

ORCHESTRATOR = """
import json, sys
from pathlib import Path
from medloop.core.records import JobSpec
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler
jobs_dir, spec = Path(sys.argv[1]), JobSpec.model_validate_json(sys.argv[2])
Scheduler(LocalRuntime(jobs_dir), slots=1).run([spec])
"""


def _spec(key: str, runs: Path) -> JobSpec:
    return JobSpec(
        key=key,
        command=["python", "-c", JOB.format(runs=str(runs))],
        inputs={},
        limits=JobLimits(timeout_s=900),
    )


def _wait_for(predicate: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def crash_host(jobs_dir: Path, key: str, orchestrator: subprocess.Popen[bytes]) -> None:
    """SIGKILL the orchestrator and the job's whole process group (launcher + job)."""
    os.kill(orchestrator.pid, signal.SIGKILL)
    orchestrator.wait(timeout=60)
    info = JobDir(jobs_dir, key).run_info()
    assert info is not None
    os.killpg(int(info.ref), signal.SIGKILL)


def test_a_job_lost_in_a_host_crash_is_run_again_as_a_new_attempt(settings: Settings, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    key = job_key("cmp_crash", "c" * 64)
    spec = _spec(key, runs)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    orchestrator = subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATOR, str(settings.jobs_dir), spec.model_dump_json()], env=env
    )
    _wait_for(lambda: runs.exists(), "the job to start")
    crash_host(settings.jobs_dir, key, orchestrator)

    result = Scheduler(LocalRuntime(settings.jobs_dir), slots=1).run([spec])[0]
    assert result.status == "succeeded", result.reason
    assert not result.lost
    assert result.log_tail == "finished run 2"
    assert runs.read_text() == "2"
    # The lost attempt keeps its record; the re-run used the next attempt key.
    lost = JobDir(settings.jobs_dir, key).result()
    assert lost is not None and lost.lost and lost.status == "failed"
    assert JobDir(settings.jobs_dir, attempt_key(key, 1)).result() is not None


def test_retries_of_lost_jobs_are_bounded(settings: Settings, tmp_path: Path) -> None:
    key = "always-lost"
    # The job kills its own launcher's process group: it vanishes every time.
    spec = JobSpec(
        key=key,
        command=["python", "-c", "import os, signal; os.killpg(os.getpgid(0), signal.SIGKILL)"],
        inputs={},
    )
    result = Scheduler(LocalRuntime(settings.jobs_dir), slots=1, max_retries=2, retry_backoff_s=0).run(
        [spec]
    )[0]
    assert result.status == "failed"
    assert result.lost and "lost 3 times" in (result.reason or "")
    assert [JobDir(settings.jobs_dir, attempt_key(key, n)).result() is not None for n in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    json.dumps(result.model_dump(mode="json"))  # a lost result is an ordinary record
