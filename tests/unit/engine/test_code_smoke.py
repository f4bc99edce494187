"""The smoke trial before a code module's first real trial: a module that crashes or hangs
there is rejected with the reason, its trials never start, and the outcome is kept on the
module in the knowledge base (smoked once); quarantined modules never run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from medloop.core.records import Campaign, JobResult, JobSpec, JobStatus, Provenance, Quarantine
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import open_store
from medloop.engine.base import TrialRequest, trial_id_for
from medloop.engine.code import register
from medloop.engine.smoke import SMOKE_ITERATIONS, quarantine_target
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom

MODULE = """
import numpy as np

EXTENSION_POINT = "postprocess"


def postprocess(label_map, spacing, labels):
    return np.asarray(label_map)
"""


class ScriptedExecutor:
    """Answers smoke jobs with `smoke_status` and real jobs with `failed` (none runs)."""

    def __init__(self, smoke_status: JobStatus) -> None:
        self.smoke_status = smoke_status
        self.jobs: list[JobSpec] = []

    def run(self, jobs: Sequence[JobSpec], *, on_event: object = None) -> list[JobResult]:
        self.jobs += list(jobs)
        return [
            JobResult(
                key=j.key,
                status=self.smoke_status if j.key.endswith(".smoke") else "failed",
                exit_code=1,
                wall_s=0.0,
                out_dir=Path("/nonexistent"),
                log_tail="Traceback ...\nZeroDivisionError: division by zero\n",
                reason=None if self.smoke_status != "failed" else "exit code 1",
                provenance=Provenance(code_version="t", runtime="fake", host="t", started_at="", ended_at=""),
            )
            for j in jobs
        ]

    def cancel(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


def _service(ws: Path, status: JobStatus) -> tuple[SandboxTrials, ScriptedExecutor]:
    ds = synth_phantom(ws / "data" / "Dataset991_Smoke", cases=6, seed=1, test_cases=2, size=32)
    spec = CampaignSpec.model_validate(
        {
            "name": "smoke",
            "goal": "smoke",
            "dataset": {"path": ds},
            "search_space": {"lr": [1e-3, 1e-2]},
            "sandbox": {"runtime": "local", "allow_untrusted_code": True},
            "code": {"points": ["postprocess"], "smoke_timeout": 30},
        }
    )
    store = open_store(ws / "medloop.db")
    store.campaigns.add(Campaign(id="cmp_smoke", name="smoke", owner="t", spec=spec))
    executor = ScriptedExecutor(status)
    trials = SandboxTrials(store, spec, executor=executor, workspace=ws, staging_dir=ws / "staging")
    return trials, executor


def _run(trials: SandboxTrials, sha: str, seed: int = 0) -> tuple[str, str]:
    spec = trials.spec_for(SegConfig(iterations=50, code_postprocess=sha), seed=seed)
    [trial] = trials.run("cmp_smoke", [TrialRequest(trial_id_for("cmp_smoke", spec), None, "control", spec)])
    return trial.status, trial.result.error if trial.result and trial.result.error else ""


@pytest.mark.parametrize(
    ("status", "reason"),
    [("failed", "ZeroDivisionError"), ("timed_out", "ran past the smoke limit of 30 s")],
)
def test_a_module_that_crashes_or_hangs_in_its_smoke_trial_is_rejected(
    workspace: Path, status: JobStatus, reason: str
) -> None:
    trials, executor = _service(workspace, status)
    module = register(trials.store, MODULE, name="crashy", author="alice", author_kind="human")
    outcome, error = _run(trials, module.sha256)
    assert outcome == "failed" and "failed its smoke trial" in error and reason in error
    # one job ran: the smoke trial, short and under the smoke limit; the real trial never started
    [job] = executor.jobs
    assert job.key.endswith(".smoke") and job.limits.timeout_s == 30.0  # the host kills it at the smoke limit
    smoke_spec = (job.inputs["spec.json"]).read_text()
    assert f'"iterations": {SMOKE_ITERATIONS}' in smoke_spec and '"max_seconds": 30.0' in smoke_spec
    state = trials.store.code.state(module.sha256)
    assert state.smoke == "failed" and reason in state.smoke_reason
    # a later trial naming the module is refused at once, without another smoke job
    assert _run(trials, module.sha256, seed=1)[0] == "failed"
    assert len(executor.jobs) == 1


def test_a_module_that_passes_is_smoked_once(workspace: Path) -> None:
    trials, executor = _service(workspace, "succeeded")
    module = register(trials.store, MODULE, name="ok", author="alice")
    _run(trials, module.sha256)
    _run(trials, module.sha256, seed=1)
    assert [j.key.endswith(".smoke") for j in executor.jobs] == [True, False, False]
    assert trials.store.code.state(module.sha256).smoke == "passed"


def test_a_quarantined_module_never_runs(workspace: Path) -> None:
    trials, executor = _service(workspace, "succeeded")
    module = register(trials.store, MODULE, name="q", author="alice")
    trials.store.quarantines.put(
        Quarantine(
            id="qtn_1", target_type="code", target_id=quarantine_target(module.sha256), why="x", actor="bob"
        )
    )
    outcome, error = _run(trials, module.sha256)
    assert outcome == "failed" and "is quarantined" in error
    assert executor.jobs == []


HANGS = """
EXTENSION_POINT = "lr_schedule"


def lr_factor(step, total_steps):
    while True:
        step += 1
"""
CRASHES = """
EXTENSION_POINT = "lr_schedule"


def lr_factor(step, total_steps):
    return 1 / 0
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "reason"), [(HANGS, "ran past the smoke limit"), (CRASHES, "ZeroDivisionError")]
)
def test_real_smoke_trials_reject_a_hang_and_a_crash(workspace: Path, source: str, reason: str) -> None:
    """Real sandboxed jobs (local runtime): the hang is killed at the smoke limit, the
    crash ends with its traceback in the reason; the real trial never starts."""
    from medloop.core.settings import Settings
    from medloop.sandbox.factory import make_executor

    trials, _ = _service(workspace, "failed")
    trials.gate.code = trials.gate.code.model_copy(update={"smoke_timeout": 20.0})
    trials.executor = make_executor(Settings(), trials.sandbox, CampaignSpec.model_fields["executor"].default)
    module = register(trials.store, source, name="bad", author="llm:test", author_kind="llm")
    spec = trials.spec_for(SegConfig(iterations=50, code_lr_schedule=module.sha256), seed=0)
    [trial] = trials.run("cmp_smoke", [TrialRequest(trial_id_for("cmp_smoke", spec), None, "control", spec)])
    assert trial.status == "failed" and trial.result is not None and trial.result.error
    assert "failed its smoke trial" in trial.result.error and reason in trial.result.error
    assert trial.result.job is None  # no job of its own ran
    assert trials.store.code.state(module.sha256).smoke == "failed"
