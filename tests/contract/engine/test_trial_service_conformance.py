"""Conformance suite of `TrialService` (engine/base.py): the sandbox-backed service and
the replay service run the same tests.

- sandbox: `SandboxTrials` over the real scheduler and local runtime, on a small phantom
  dataset; each job is a short script (not the trainer) that reads its `/in/spec.json`,
  fails for the learning rate `BAD_LR`, and otherwise writes an honest, empty prediction
  folder that the host scores.
- replay: `ReplayTrials` over a recorded table whose grid lacks `BAD_LR`.

The promise checked: trials come back in request order with final statuses, one
`on_trial` per trial; a trial that cannot produce an outcome is a failed trial with a
reason, never an exception; running the same requests again runs nothing; the same
spec in another campaign gets the same outcome; specs are deterministic per (config,
seed) and carry the service's dataset; the test split is scored only for a finished run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from medloop.core.records import Campaign, JobResult, JobSpec, Trial, TrialSpec
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import SqlStore, open_store
from medloop.engine.base import FINAL_STATUSES, TrialRequest, TrialService, trial_id_for
from medloop.engine.replay import ReplayOutcome, ReplayTrials, save_table, synthetic_table
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.sandbox.base import EventSink
from medloop.sandbox.local import LocalRuntime
from medloop.sandbox.scheduler import Scheduler

GOOD_LRS = [0.001, 0.002]
BAD_LR = 0.009

JOB = f"""
import json, os, sys
spec = json.load(open(os.environ["MEDLOOP_IN"] + "/spec.json"))
if abs(spec["config"]["lr"] - {BAD_LR}) < 1e-12:
    print("diverged", flush=True)
    sys.exit(2)
out = os.environ["MEDLOOP_OUT"]
os.makedirs(out + "/predictions/eval", exist_ok=True)
json.dump({{"status": "completed", "predictions": {{"eval": "predictions/eval"}}}},
          open(out + "/result.json", "w"))
"""


class CountingExecutor:
    """The real scheduler and local runtime, running `JOB` instead of the trainer and
    counting the jobs it was asked to run."""

    def __init__(self, jobs_dir: Path) -> None:
        self.inner = Scheduler(LocalRuntime(jobs_dir), slots=2)
        self.jobs = 0

    def run(self, jobs: Sequence[JobSpec], *, on_event: EventSink | None = None) -> list[JobResult]:
        self.jobs += len(jobs)
        return self.inner.run(
            [j.model_copy(update={"command": ["python", "-c", JOB]}) for j in jobs], on_event=on_event
        )

    def cancel(self, key: str) -> None:
        self.inner.cancel(key)

    def close(self) -> None:
        self.inner.close()


class CountingReplay(ReplayTrials):
    """The replay service, counting the outcomes it looked up (a replay's "run")."""

    draws = 0

    def draw(self, spec: TrialSpec) -> ReplayOutcome | str:
        self.draws += 1
        return super().draw(spec)


@dataclass
class ServiceCase:
    name: str
    store: SqlStore
    make: Callable[[], TrialService]  # one service per campaign, as the runner builds them
    runs: Callable[[], int]  # how many trials were actually executed so far


def _campaign_spec(dataset: Path, **extra: object) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "contract",
            "goal": "trial service contract",
            "dataset": {"path": dataset},
            "baseline": {"lr": GOOD_LRS[0]},
            "search_space": {"lr": GOOD_LRS},
            "sandbox": {"runtime": "local", "timeout": 60},
            **extra,
        }
    )


def _sandbox(ws: Path) -> ServiceCase:
    ds = synth_phantom(ws / "data" / "Dataset990_Contract", cases=6, seed=1, test_cases=2, size=24)
    spec = _campaign_spec(ds)
    store = open_store(ws / "medloop.db")
    executors: list[CountingExecutor] = []

    def make() -> TrialService:
        executors.append(CountingExecutor(ws / "jobs"))
        return SandboxTrials(store, spec, executor=executors[-1], workspace=ws, staging_dir=ws / "staging")

    return ServiceCase("sandbox", store, make, lambda: sum(e.jobs for e in executors))


def _replay(ws: Path) -> ServiceCase:
    table = ws / "table.json"
    save_table(
        synthetic_table(space={"lr": GOOD_LRS}, effect=lambda cfg: 10 * cfg["lr"], n_cases=8, rng_seed=4),
        table,
    )
    spec = _campaign_spec(table.parent, executor={"kind": "table", "table": str(table)})
    store = open_store(ws / "medloop.db")
    services: list[CountingReplay] = []

    def make() -> TrialService:
        services.append(CountingReplay(store, spec, table=table))
        return services[-1]

    return ServiceCase("replay", store, make, lambda: sum(s.draws for s in services))


@pytest.fixture(params=["sandbox", "replay"])
def case(request: pytest.FixtureRequest, workspace: Path) -> Iterator[ServiceCase]:
    built = {"sandbox": _sandbox, "replay": _replay}[request.param](workspace)
    for cid in ("cmp_a", "cmp_b"):
        built.store.campaigns.add(Campaign(id=cid, name=cid, owner="t", spec=_campaign_spec(workspace)))
    yield built


def requests(
    service: TrialService, campaign_id: str, lrs: Sequence[float], seed: int = 0
) -> list[TrialRequest]:
    out = []
    for i, lr in enumerate(lrs):
        spec = service.spec_for(SegConfig(lr=lr, iterations=1), seed)
        out.append(
            TrialRequest(trial_id_for(campaign_id, spec), None, "control" if i == 0 else "treatment", spec)
        )
    return out


def test_trials_come_back_in_request_order_with_one_callback_each(case: ServiceCase) -> None:
    service = case.make()
    reqs = requests(service, "cmp_a", [GOOD_LRS[1], GOOD_LRS[0]])
    seen: list[Trial] = []
    trials = service.run("cmp_a", reqs, on_trial=seen.append)
    assert [t.id for t in trials] == [r.trial_id for r in reqs]
    assert sorted(t.id for t in seen) == sorted(r.trial_id for r in reqs)
    for trial, req in zip(trials, reqs, strict=True):
        assert trial.status == "succeeded", trial.result.error if trial.result else ""
        assert trial.campaign_id == "cmp_a" and trial.arm == req.arm
        assert trial.spec_hash == req.spec.spec_hash()
        assert trial.result is not None and isinstance(trial.result.objective, float)
        assert "eval" in trial.result.evaluations
    service.close()


def test_a_trial_without_an_outcome_is_a_failed_trial_not_an_exception(case: ServiceCase) -> None:
    service = case.make()
    bad, good = service.run("cmp_a", requests(service, "cmp_a", [BAD_LR, GOOD_LRS[0]]))
    assert bad.status == "failed"
    assert bad.result is not None and bad.result.error
    assert good.status == "succeeded"
    assert service.evaluate_test(bad) is None  # nothing finished, nothing to score
    evaluation = service.evaluate_test(good)
    assert evaluation is None or evaluation.split == "test"


def test_running_the_same_requests_again_runs_nothing(case: ServiceCase) -> None:
    service = case.make()
    reqs = requests(service, "cmp_a", [GOOD_LRS[0], BAD_LR])
    first = service.run("cmp_a", reqs)
    runs = case.runs()
    again_seen: list[Trial] = []
    again = case.make().run("cmp_a", reqs, on_trial=again_seen.append)  # a resumed campaign
    assert case.runs() == runs
    assert again_seen == []
    assert [(t.id, t.status, t.result) for t in again] == [(t.id, t.status, t.result) for t in first]
    assert all(t.status in FINAL_STATUSES for t in again)


def test_the_same_spec_in_another_campaign_gets_the_same_outcome(case: ServiceCase) -> None:
    service = case.make()
    [a] = service.run("cmp_a", requests(service, "cmp_a", [GOOD_LRS[1]], seed=3))
    other = case.make()
    [b] = other.run("cmp_b", requests(other, "cmp_b", [GOOD_LRS[1]], seed=3))
    assert a.id != b.id and b.campaign_id == "cmp_b"
    assert a.result is not None and b.result is not None
    assert b.result.objective == a.result.objective


def test_specs_are_deterministic_per_config_and_seed(case: ServiceCase) -> None:
    service = case.make()
    config = SegConfig(lr=GOOD_LRS[1], iterations=1)
    one, two = service.spec_for(config, 5), service.spec_for(config, 5)
    assert one.spec_hash() == two.spec_hash()
    assert service.spec_for(config, 6).spec_hash() != one.spec_hash()
    assert service.spec_for(SegConfig(lr=GOOD_LRS[0], iterations=1), 5).spec_hash() != one.spec_hash()
    assert one.dataset == service.dataset.manifest
    assert trial_id_for("cmp_a", one) == trial_id_for("cmp_a", two) != trial_id_for("cmp_b", one)
    service.close()
    service.close()  # idempotent
