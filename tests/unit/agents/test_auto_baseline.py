"""`baseline: auto` starts a campaign from the dataset's nnU-Net-style plans."""

from __future__ import annotations

from pathlib import Path

from medloop import bootstrap
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from medloop.experiments.dataset import synth_phantom
from tests.fakes import FakeKnowledge


def test_auto_baseline_uses_plans_with_overrides(tmp_path: Path) -> None:
    data = synth_phantom(tmp_path / "Dataset001_P", cases=8, seed=1, test_cases=2)
    spec = parse_campaign_spec(
        {
            "name": "auto",
            "goal": "g",
            "dataset": str(data),
            "baseline": {"auto": True, "iterations": 60},
            "search_space": {"loss": ["dice", "dicece"]},
        },
        source="t",
    )
    assert spec.baseline_auto and spec.baseline_overrides == {"iterations": 60}
    short = parse_campaign_spec(
        {
            "name": "a",
            "goal": "g",
            "dataset": str(data),
            "baseline": "auto",
            "search_space": {"loss": ["dice", "dicece"]},
        },
        source="t",
    )
    assert short.baseline_auto
    store = open_store(tmp_path / "m.db")
    services = CampaignServices(
        store=store,
        knowledge=FakeKnowledge(store),
        make_trials=lambda s, _cid: None,  # type: ignore[arg-type,return-value]
        make_planner=lambda s: OfflinePlanner(),
        checkpoints=local_checkpoints(tmp_path / "ck"),
        plan_baseline=bootstrap.plan_baseline,
    )
    campaign = CampaignRunner(services).create(spec, owner="a")
    assert campaign.baseline["model"] == "dynunet" and campaign.baseline["optimizer"] == "sgd"
    assert campaign.baseline["iterations"] == 60  # the override wins
    assert (data / "medloop_plans.json").exists() or any(data.glob("*plans*.json"))
