"""The real trial job (`python -m medloop.experiments run`) in the Docker runtime, scored
on the host; and a hostile job that inflates its own result.json is marked tampered."""

from __future__ import annotations

import json
import shlex

import pytest

from medloop.core.records import JobResult, JobSpec, TrialSpec
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, SegConfig
from medloop.core.store import open_store
from medloop.engine.trials import JOB_COMMAND, SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.sandbox.base import JobEvent, job_key, limits_for
from medloop.sandbox.factory import make_executor
from tests.conftest import require
from tests.contract.sandbox.conftest import docker_available

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TINY = SegConfig(
    iterations=20, epoch_iterations=10, batch_size=4, internal_val_fraction=0.34, base_features=8
)

# Runs after the real job inside the same sandbox: claims a perfect Dice everywhere.
INFLATE = (
    "import json; p = '/out/result.json'; r = json.load(open(p))\n"
    "for rep in r['reported']:\n"
    "    rep['per_case'] = {c: {k: 0.999 for k in v} for c, v in rep['per_case'].items()}\n"
    "json.dump(r, open(p, 'w'))\n"
)


@pytest.fixture(scope="module")
def ran(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SandboxTrials, TrialSpec, list[JobResult], list[JobEvent]]:
    ws = tmp_path_factory.mktemp("ws")
    settings = Settings(workspace=ws)
    ok, why = docker_available(settings.docker_image)
    require("docker", ok, why)
    ds = synth_phantom(ws / "data" / "Dataset900_Tiny", cases=8, seed=3, test_cases=3)
    spec = CampaignSpec.model_validate(
        {
            "name": "docker-trial",
            "goal": "run one real trial in Docker",
            "dataset": {"path": ds, "eval_fraction": 0.25},
            "search_space": {"lr": [1e-3, 1e-2]},
            "sandbox": {"runtime": "docker", "timeout": 600, "memory_mb": 3072, "cpus": 1},
            "executor": {"slots": 2},
        }
    )
    trials = SandboxTrials(
        open_store(settings.db_path),
        spec,
        executor=make_executor(settings, spec.sandbox, spec.executor),
        workspace=ws,
        staging_dir=settings.staging_dir,
    )
    trial = trials.spec_for(TINY, seed=11)
    spec_path = ws / "specs" / "trial.json"
    spec_path.parent.mkdir()
    spec_path.write_text(trial.model_dump_json())
    inputs = {"spec.json": spec_path, **trials.dataset.staged}
    honest = JobSpec(
        key=job_key("cmp_docker", trial.spec_hash()),
        command=list(JOB_COMMAND),
        inputs=inputs,
        limits=limits_for(spec.sandbox),
    )
    run_then_inflate = " ".join(JOB_COMMAND) + f" && python -c {shlex.quote(INFLATE)}"
    hostile = honest.model_copy(
        update={"key": job_key("cmp_hostile", trial.spec_hash()), "command": ["sh", "-c", run_then_inflate]}
    )
    events: list[JobEvent] = []
    results = trials.executor.run([honest, hostile], on_event=events.append)
    trials.close()
    return trials, trial, results, events


def test_the_real_trial_job_runs_in_docker_and_is_scored_on_the_host(ran) -> None:  # type: ignore[no-untyped-def]
    trials, trial, results, events = ran
    job = results[0]
    assert job.status == "succeeded", job.log_tail
    assert job.provenance.runtime == "docker"
    assert job.provenance.image is not None and "@sha256:" in job.provenance.image
    assert job.provenance.spec_hash == trial.spec_hash()
    assert job.provenance.dataset_checksum == trial.dataset.checksum
    assert job.provenance.seed == 11
    streamed = [
        json.loads(e.line)
        for e in events
        if e.kind == "log" and e.key == job.key and e.line and e.line.startswith("{")
    ]
    assert streamed[0]["event"] == "start" and streamed[-1]["event"] == "done"
    scored = trials.collect("trl_docker", trial, job)
    assert scored.status == "succeeded", scored.error
    assert scored.objective is not None and 0.0 <= scored.objective <= 1.0
    assert scored.tamper_gap is not None and scored.tamper_gap <= 1e-3
    assert scored.evaluations["eval"].cases


def test_a_job_that_inflates_its_result_is_marked_tampered(ran) -> None:  # type: ignore[no-untyped-def]
    trials, trial, results, _ = ran
    job = results[1]
    assert job.status == "succeeded", job.log_tail
    reported = json.loads((job.out_dir / "result.json").read_text())["reported"]
    assert reported and all(
        v == 0.999 for rep in reported for c in rep["per_case"].values() for v in c.values()
    )
    scored = trials.collect("trl_hostile", trial, job)
    assert scored.status == "tampered"
    assert scored.tamper_gap is not None and scored.tamper_gap > 1e-3
