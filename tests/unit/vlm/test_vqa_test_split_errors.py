"""Test-split answers the host cannot score (issue 14 item 24): the reason is recorded on
the trial (`split_errors["test"]`) and reaches the report, instead of the test result
silently missing."""

from __future__ import annotations

from pathlib import Path

from medloop.core.records import Campaign, JobResult, Provenance, Trial, TrialResult
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from medloop.engine.base import trial_id_for
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from tests.unit.vlm.test_vqa_campaign import _spec


def test_unusable_vqa_test_answers_are_recorded_on_the_trial(workspace: Path) -> None:
    dataset = synth_phantom(workspace / "Dataset954_Vqa", cases=8, seed=4, test_cases=3)
    spec = parse_campaign_spec(_spec(dataset), source="test")
    store = open_store(workspace / "medloop.db")
    store.campaigns.add(Campaign(id="cmp_vqa", name="vqa", owner="t", spec=spec))
    trials = SandboxTrials(store, spec, executor=None, workspace=workspace, staging_dir=workspace / "staging")  # type: ignore[arg-type]
    tspec = trials.spec_for(spec.baseline_config(), seed=0)
    assert tspec.dataset.test_cases

    out = workspace / "job-out"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "eval.jsonl").write_text("")  # the job never wrote test.jsonl
    prov = Provenance(code_version="t", runtime="local", host="h", started_at="a", ended_at="b")
    job = JobResult(key="k", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=prov)
    tid = trial_id_for("cmp_vqa", tspec)
    store.trials.put(
        Trial(
            id=tid,
            campaign_id="cmp_vqa",
            hypothesis_id=None,
            arm="final",
            spec=tspec,
            spec_hash=tspec.spec_hash(),
        )
    )
    store.trials.set_result(
        tid, TrialResult(trial_id=tid, spec_hash=tspec.spec_hash(), status="succeeded", job=job)
    )

    assert trials.evaluate_test(store.trials.get(tid)) is None
    result = store.trials.get(tid).result
    assert result is not None and result.split_errors["test"].startswith("VQA predictions unusable")
    assert "test.jsonl: predictions file not found" in result.split_errors["test"]
