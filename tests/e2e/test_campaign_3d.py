"""Issue 3 acceptance: a campaign on the 3D multi-site phantom with `model` and `loss` as
factors runs on the CPU with the offline planner and reports DSC/NSD/HD95 per class and
per site (the test split has a site no training case came from)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.core.specs import parse_campaign_spec
from medloop.experiments.dataset.phantom3d import synth_phantom3d


@pytest.mark.slow
def test_3d_campaign_model_and_loss_reports_surface_metrics_per_class_and_site(
    tmp_path: Path, settings: Settings
) -> None:
    data = synth_phantom3d(tmp_path / "Dataset905_Abd3D", cases=8, seed=3, test_cases=3)
    spec = parse_campaign_spec(
        {
            "name": "abd3d",
            "goal": "Raise mean Dice on the 3D phantom",
            "dataset": {"path": str(data), "eval_fraction": 0.3},
            "baseline": {
                "model": "unet",
                "spatial_dims": 3,
                "base_features": 8,
                "depth": 3,
                "patch_size": "32x32x16",
                "batch_size": 2,
                "iterations": 6,
                "epoch_iterations": 3,
                "loss": "dice",
                "lr": 0.01,
            },
            "search_space": {"model": ["unet", "segresnet"], "loss": ["dice", "dicece"]},
            "validation": {"seeds_per_arm": 2, "reproduction_seeds": 0, "bootstrap_resamples": 500},
            "budget": {"max_cycles": 1},
            "executor": {"kind": "local", "slots": 2},
            "sandbox": {"timeout": "10m"},
            "planner": {"kind": "offline", "hypotheses_per_cycle": 2},
        },
        source="abd3d",
    )
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.run(runner.create(spec, owner="t").id)
    assert campaign.status == "completed", campaign.summary
    hyps = runner.s.store.cycles.hypotheses(campaign.id)
    assert {h.changes[0].factor for h in hyps} == {"model", "loss"}
    trial = runner.s.store.trials.get(hyps[0].treatment_trials[0])
    evaluation = trial.result.evaluations["eval"]  # type: ignore[union-attr]
    assert {"dice", "nsd", "hd95"} <= set(evaluation.summary)
    assert "monai" in evaluation.implementation.lower()
    report = campaign.summary["test_report"]["baseline"]
    for metric in ("dice", "nsd", "hd95"):
        assert (
            set(report[metric]["per_class"]) == {"liver", "spleen", "kidney_left", "kidney_right"}
            or len(report[metric]["per_class"]) >= 3
        )
        assert {"site_a", "site_b", "site_c"} <= set(report[metric]["per_site"])  # site_c: unseen
    assert all(v >= 0 for v in report["hd95"]["per_class"].values())
