"""A resumed campaign keeps what it already spent (jobs, GPU-hours, wall time)."""

from __future__ import annotations

from pathlib import Path

from medloop import bootstrap
from medloop.core.ids import new_id
from medloop.core.records import (
    Campaign,
    DatasetManifest,
    JobResult,
    Provenance,
    Trial,
    TrialResult,
    TrialSpec,
)
from medloop.core.specs import SegConfig, parse_campaign_spec
from medloop.core.store import open_store


def test_spent_budget_from_the_ledger(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.json").write_text("{}")
    spec = parse_campaign_spec(
        {
            "name": "b",
            "goal": "g",
            "dataset": str(tmp_path / "d"),
            "search_space": {"loss": ["dice", "dicece"]},
        },
        source="t",
    )
    campaign = Campaign(id=new_id("cmp"), name="b", spec=spec)
    store.campaigns.add(campaign)
    manifest = DatasetManifest(
        name="d",
        checksum="x",
        channel_names={"0": "CT"},
        labels={"background": 0},
        train_cases=[],
        eval_cases=[],
    )
    for i, gpus in enumerate(([0, 1], [], [2])):
        ts = TrialSpec(dataset=manifest, config=SegConfig(), seed=i)
        prov = Provenance(
            code_version="0", runtime="local", host="h", gpu_ids=gpus, started_at="a", ended_at="b"
        )
        job = JobResult(
            key=f"k{i}", status="succeeded", exit_code=0, wall_s=1800.0, out_dir=tmp_path, provenance=prov
        )
        store.trials.put(
            Trial(
                id=f"t{i}",
                campaign_id=campaign.id,
                hypothesis_id=None,
                arm="control",
                spec=ts,
                spec_hash=ts.spec_hash(),
                result=TrialResult(trial_id=f"t{i}", spec_hash="h", status="succeeded", job=job),
            )
        )
    store.cycles.record(campaign.id, 1, {"active_s": 900.0})
    spent = bootstrap.spent_budget(store, campaign.id)
    assert spent == {"trials": 3, "wall_s": 900.0, "gpu_hours": 1.5}  # 2 GPUs x 0.5 h + 1 GPU x 0.5 h
