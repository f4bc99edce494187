"""A full disk (issue 14 item 10): a job that hits ENOSPC says so on its trial (not just
`exited with code 1`); the campaign stops cleanly, paused and resumable, with one line to
the user; resume runs again what the full disk broke."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from medloop.agents.runner import CampaignRunner
from medloop.core.errors import DiskFull
from medloop.core.records import Campaign, JobResult, JobSpec, Provenance
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import SqlStore, open_store
from medloop.engine import trials as trials_module
from medloop.engine.base import TrialCallback, TrialRequest, trial_id_for
from medloop.engine.causes import is_disk_full
from medloop.engine.replay import ReplayTrials
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.sandbox.base import EventSink
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler
from tests.conftest import require
from tests.unit.agents.test_replay_campaign import make_spec, services, table  # noqa: F401 - fixture

FILL = "import os\nwith open('/out/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 65536); f.flush(); os.fsync(f.fileno())\n"


@pytest.fixture
def small_disk(settings: Settings) -> Iterator[Path]:
    """The jobs folder on a 4 MB tmpfs: a real ENOSPC, not a simulated one."""
    jobs = settings.jobs_dir
    jobs.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(jobs)], capture_output=True, text=True
    )
    require("tmpfs_mount", mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield jobs
    finally:
        subprocess.run(["umount", "-l", str(jobs)], check=False)


def _service(ws: Path, executor: object) -> tuple[SandboxTrials, TrialRequest]:
    ds = synth_phantom(ws / "data" / "Dataset992_Full", cases=6, seed=1, test_cases=2, size=32)
    spec = CampaignSpec.model_validate(
        {"name": "full", "goal": "g", "dataset": {"path": ds}, "search_space": {"lr": [1e-3, 1e-2]}}
    )
    store = open_store(ws / "medloop.db")
    store.campaigns.add(Campaign(id="cmp_full", name="full", owner="t", spec=spec))
    trials = SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")  # type: ignore[arg-type]
    tspec = trials.spec_for(SegConfig(iterations=2), seed=0)
    return trials, TrialRequest(trial_id_for("cmp_full", tspec), None, "control", tspec)


def test_a_job_that_fills_the_disk_stops_the_engine_and_reruns_on_resume(
    workspace: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine, scheduler and runtime are real; only the job is one that writes until
    # the (real, 4 MB) disk is full. The host then cannot record the job's end either.
    monkeypatch.setattr(trials_module, "JOB_COMMAND", ["python", "-c", FILL])
    trials, req = _service(workspace, Scheduler(LocalRuntime(small_disk)))
    with pytest.raises(DiskFull, match="the disk filled up while 1 trial"):
        trials.run("cmp_full", [req])
    broken = trials.store.trials.get(req.trial_id)
    assert broken.status == "failed" and is_disk_full(broken.result.error if broken.result else None)
    for fill in small_disk.glob("*/out/fill"):  # the user frees space
        fill.unlink()
    monkeypatch.setattr(trials_module, "JOB_COMMAND", ["python", "-c", "print('ran again')"])
    trials.executor = Scheduler(LocalRuntime(small_disk))
    [again] = trials.run("cmp_full", [req])
    assert again.result is not None and again.result.job is not None
    assert again.result.job.key.endswith(".rerun1") and again.result.job.log_tail == "ran again"
    assert not is_disk_full(again.result.error)  # an ordinary outcome now (it wrote no result.json)


class ScriptedExecutor:
    """Returns the queued job results in turn and records the jobs (no job runs here)."""

    def __init__(self, results: list[tuple[str, str]]) -> None:
        self.results = results  # (reason, log tail) per call
        self.jobs: list[JobSpec] = []

    def run(self, jobs: Sequence[JobSpec], *, on_event: object = None) -> list[JobResult]:
        self.jobs += list(jobs)
        reason, log = self.results.pop(0)
        prov = Provenance(code_version="t", runtime="fake", host="h", started_at="a", ended_at="b")
        return [
            JobResult(
                key=j.key,
                status="failed",
                exit_code=1,
                wall_s=1.0,
                out_dir=Path("/x"),
                log_tail=log,
                reason=reason,
                provenance=prov,
            )
            for j in jobs
        ]

    def cancel(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


ENOSPC_LOG = (
    'Traceback (most recent call last):\n  File "x", line 1\nOSError: [Errno 28] No space left on device\n'
)


def test_the_engine_stops_on_a_full_disk_and_reruns_the_trial_on_resume(workspace: Path) -> None:
    executor = ScriptedExecutor(
        [("exited with code 1", ENOSPC_LOG), ("exited with code 1", "RuntimeError: boom\n")]
    )
    trials, req = _service(workspace, executor)
    store = trials.store

    with pytest.raises(DiskFull, match="disk filled up under 1 trial"):
        trials.run("cmp_full", [req])
    broken = store.trials.get(req.trial_id)
    assert broken.status == "failed" and "No space left on device" in (broken.result.error or "")  # type: ignore[union-attr]

    [again] = trials.run("cmp_full", [req])  # resume: the broken trial runs again, under its own key
    assert [j.key.endswith(".rerun1") for j in executor.jobs] == [False, True]
    assert (
        again.status == "failed"
        and again.result is not None
        and again.result.error == "exited with code 1: RuntimeError: boom"
    )
    trials.run("cmp_full", [req])  # an ordinary failure stands: nothing runs again
    assert len(executor.jobs) == 2


class FullDiskOnce(ReplayTrials):
    """A replay whose first execute hits ENOSPC writing on the host, as a full disk does."""

    hit = False

    def run(
        self,
        campaign_id: str,
        requests: Sequence[TrialRequest],
        *,
        on_event: EventSink | None = None,
        on_trial: TrialCallback | None = None,
    ) -> list:  # type: ignore[type-arg]
        if not FullDiskOnce.hit:
            FullDiskOnce.hit = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/ws/specs/abc.json")
        return super().run(campaign_id, requests, on_event=on_event, on_trial=on_trial)


def test_a_full_disk_pauses_the_campaign_and_resume_finishes_it(tmp_path: Path, table: Path) -> None:  # noqa: F811
    store: SqlStore = open_store(tmp_path / "m.db")
    svc = services(tmp_path, store)
    svc.make_trials = lambda spec, _cid: FullDiskOnce(store, spec, table=spec.executor.table)  # type: ignore[arg-type,assignment]
    runner = CampaignRunner(svc)
    campaign = runner.create(make_spec(table, max_cycles=1), owner="alice")
    with pytest.raises(DiskFull) as info:
        runner.run(campaign.id)
    assert str(info.value).startswith(
        f"campaign {campaign.id} paused: no space left on device (/ws/specs/abc.json)"
    )
    assert "\n" not in info.value.message and f"medloop campaign resume {campaign.id}" in (
        info.value.hint or ""
    )
    paused = store.campaigns.get(campaign.id)
    assert paused.status == "paused" and "disk" in paused.summary["waiting_for"]
    done = runner.resume(campaign.id)
    assert done.status == "completed" and "error" not in done.summary
    assert done.summary["test"]["incumbent"]["objective"] is not None
