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


def test_reused_and_never_started_trials_cost_a_resumed_campaign_nothing(tmp_path: Path) -> None:
    # Issue 14 item 8: resume charged a campaign for trials reused from another campaign
    # (their jobs ran there) and for jobs the budget cancelled before they started.
    from medloop.sandbox.base import NOT_STARTED

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
    rows = [  # (job key, out_dir, wall_s, status, reused_from)
        (f"{campaign.id}.own", tmp_path, 1800.0, "succeeded", None),
        ("cmp_other.abc", tmp_path, 3600.0, "succeeded", "t_elsewhere"),
        ("cmp_older.def", tmp_path, 3600.0, "succeeded", None),  # a row written before reused_from
        (f"{campaign.id}.late", NOT_STARTED, 0.0, "cancelled", None),
    ]
    for i, (key, out, wall, status, reused) in enumerate(rows):
        ts = TrialSpec(dataset=manifest, config=SegConfig(), seed=i)
        prov = Provenance(
            code_version="0", runtime="local", host="h", gpu_ids=[0], started_at="a", ended_at="b"
        )
        job = JobResult(key=key, status=status, exit_code=0, wall_s=wall, out_dir=out, provenance=prov)  # type: ignore[arg-type]
        result = TrialResult(trial_id=f"t{i}", spec_hash="h", status=status, job=job, reused_from=reused)  # type: ignore[arg-type]
        store.trials.put(
            Trial(
                id=f"t{i}",
                campaign_id=campaign.id,
                hypothesis_id=None,
                arm="control",
                spec=ts,
                spec_hash=ts.spec_hash(),
                result=result,
            )
        )
    spent = bootstrap.spent_budget(store, campaign.id)
    assert spent["trials"] == 1 and spent["gpu_hours"] == 0.5
