"""A host crash in the final phase, through the real trial engine: a tiny training job on
the local sandbox is SIGKILLed together with the process that runs the engine. After a
restart the trial runs again (next attempt key), succeeds, and its test-split result is
there; a test split the host cannot score is recorded on the trial, never dropped."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from medloop.core.records import Campaign, Trial
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import open_store
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.sandbox.base import attempt_key, job_key
from medloop.sandbox.factory import make_executor
from medloop.sandbox.jobdir import JobDir

pytestmark = pytest.mark.slow

CAMPAIGN = "cmp_crash"
CONFIG = SegConfig(iterations=6, epoch_iterations=6, batch_size=2, base_features=4, depth=2)


def _service(ws: Path) -> SandboxTrials:
    spec = CampaignSpec.model_validate(
        {
            "name": "crash",
            "goal": "survive a host crash",
            "dataset": {"path": ws / "data" / "Dataset991_Crash"},
            "search_space": {"lr": [1e-3, 1e-2]},
            "sandbox": {"runtime": "local", "timeout": "10m"},
        }
    )
    store = open_store(ws / "medloop.db")
    if not store.campaigns.list().items:
        store.campaigns.add(Campaign(id=CAMPAIGN, name="crash", owner="t", spec=spec))
    executor = make_executor(Settings(), spec.sandbox, spec.executor)
    return SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")


def _request(trials: SandboxTrials) -> TrialRequest:
    spec = trials.spec_for(CONFIG, seed=7)
    return TrialRequest(trial_id_for(CAMPAIGN, spec), None, "final", spec)


def _engine_child(ws: str) -> None:
    trials = _service(Path(ws))
    trials.run(CAMPAIGN, [_request(trials)])
    os._exit(0)


def _wait_for(predicate: object, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_final_trial_lost_in_a_host_crash_reruns_and_keeps_its_test_result(
    workspace: Path, settings: Settings
) -> None:
    synth_phantom(workspace / "data" / "Dataset991_Crash", cases=6, seed=1, test_cases=2, size=32)
    trials = _service(workspace)
    req = _request(trials)
    key = job_key(CAMPAIGN, req.spec.spec_hash())
    jd = JobDir(settings.jobs_dir, key)

    child = mp.get_context("fork").Process(target=_engine_child, args=(str(workspace),))
    child.start()
    # Mid-trial: the job has started and printed its first progress line.
    _wait_for(
        lambda: jd.run_info() is not None and jd.log_path.is_file() and jd.log_path.stat().st_size > 0,
        "the job",
    )
    assert trials.store.trials.get(req.trial_id).status == "running"
    os.kill(child.pid or 0, signal.SIGKILL)  # the campaign process ...
    child.join(60)
    info = jd.run_info()
    assert info is not None
    os.killpg(int(info.ref), signal.SIGKILL)  # ... and the job's process group die together

    restarted = _service(workspace)
    [trial] = restarted.run(CAMPAIGN, [req])
    assert trial.status == "succeeded", trial.result.error if trial.result else None
    assert trial.result is not None and trial.result.job is not None
    assert trial.result.job.key == key  # the trial's key; the work ran as attempt 1
    assert JobDir(settings.jobs_dir, attempt_key(key, 1)).result() is not None
    lost = jd.result()
    assert lost is not None and lost.lost
    evaluation = restarted.evaluate_test(trial)
    assert evaluation is not None and len(evaluation.cases) == 2
    assert "test" in restarted.store.trials.get(trial.id).result.evaluations  # type: ignore[union-attr]

    # The same outputs without their test predictions: the host says why there is no test result.
    out = workspace / "copy-out"
    shutil.copytree(trial.result.job.out_dir, out)
    shutil.rmtree(out / "predictions" / "test")
    job = trial.result.job.model_copy(update={"out_dir": out})
    result = trial.result.model_copy(update={"trial_id": "trl_copy", "job": job, "evaluations": {}})
    restarted.store.trials.put(Trial(**{**trial.model_dump(), "id": "trl_copy", "result": None}))
    restarted.store.trials.set_result("trl_copy", result)
    assert restarted.evaluate_test(restarted.store.trials.get("trl_copy")) is None
    copy = restarted.store.trials.get("trl_copy")
    assert copy.result is not None
    assert copy.result.split_errors == {"test": "the job wrote no test-split predictions"}
    restarted.close()
