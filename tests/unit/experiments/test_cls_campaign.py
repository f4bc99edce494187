"""`task: classification` campaigns: the example spec, spec rules, and a CI-sized campaign
over adapters that records patient-level metrics with CIs and trainable-parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.core.errors import SpecError
from medloop.core.settings import Settings
from medloop.core.specs import ClassifyConfig, load_campaign_spec, parse_campaign_spec
from medloop.experiments.dataset.brain_cls import synth_brain_cls

EXAMPLE = Path(__file__).parents[3] / "examples" / "brain_adapters.yaml"


def _spec(dataset: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "cls-test",
        "goal": "Raise patient-level AUROC",
        "task": "classification",
        "dataset": {"path": str(dataset), "eval_fraction": 0.4, "split_seed": 3},
        "objective": {"metric": "auroc"},
        "baseline": {"adapter": "linear", "size": 12, "epochs": 2, "base_features": 4, "depth": 2},
        "search_space": {"adapter": ["linear", "hyda"]},
        "validation": {
            "seeds_per_arm": 2,
            "reproduction_seeds": 0,
            "test": "permutation",
            "bootstrap_resamples": 200,
        },
        "budget": {"max_cycles": 1, "max_trials": 10},
        "executor": {"kind": "local", "slots": 2},
        "sandbox": {"timeout": "5m"},
        "planner": {"hypotheses_per_cycle": 1},
    }
    data.update(changes)
    return data


def test_example_and_spec_rules(tmp_path: Path) -> None:
    spec = load_campaign_spec(EXAMPLE, check_dataset=False)
    assert spec.task == "classification" and isinstance(spec.baseline_config(), ClassifyConfig)
    assert set(spec.search_space["adapter"].choices) == {"linear", "full", "lora", "hyda"}  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"objective\.metric: 'dice' is not computed for classification"):
        parse_campaign_spec(_spec(tmp_path, objective={"metric": "dice"}), source="t", check_dataset=False)
    with pytest.raises(SpecError, match=r"search_space\.adapter: value 'prompt'"):
        parse_campaign_spec(
            _spec(tmp_path, search_space={"adapter": ["linear", "prompt"]}), source="t", check_dataset=False
        )


@pytest.mark.slow
def test_tiny_adapter_campaign_end_to_end(tmp_path: Path, settings: Settings) -> None:
    from monai.networks.nets.unet import UNet
    from safetensors.torch import save_file

    from medloop import bootstrap

    dataset = synth_brain_cls(tmp_path / "brain", patients=10, test_patients=4, size=12, seed=4)
    # a "pre-trained" 3-channel segmentation UNet: the encoder every arm starts from
    unet = UNet(3, 3, 2, channels=[4, 8], strides=[2], num_res_units=0, norm="instance")
    ckpt = tmp_path / "seg.safetensors"
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(ckpt))
    base = {
        "adapter": "linear",
        "size": 12,
        "epochs": 2,
        "base_features": 4,
        "depth": 2,
        "init": f"file:{ckpt}",
    }
    spec = parse_campaign_spec(_spec(dataset, baseline=base), source="test")
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.run(runner.create(spec, owner="test").id)
    store = runner.s.store
    assert campaign.status == "completed", campaign.summary
    every = store.trials.list(campaign_id=campaign.id).items
    assert all(t.status == "succeeded" for t in every), [t.result.error for t in every if t.result]
    arms = [t for t in every if t.arm in ("control", "treatment")]
    assert {t.spec.config.adapter for t in arms} == {"linear", "hyda"}  # type: ignore[union-attr]
    for trial in arms:
        assert trial.result is not None
        ev = trial.result.evaluations["eval"]
        assert ev.settings["unit"] == "patient"
        patients = set(ev.settings["patient_scores"])
        assert {c.case for c in ev.cases} == patients and len(patients) >= 2
        assert set(ev.settings["case_probs"]) == set(trial.spec.dataset.eval_cases)
        assert trial.spec.init_checkpoint is not None  # staged for the job, read-only
        assert trial.spec.provenance["init_parent"] == f"file:{ckpt.resolve()}"
        eff = trial.result.efficiency
        assert 0 < eff["trainable_parameters"] < eff["parameters"]  # both adapters freeze the encoder
        if ev.summary["auroc"] is not None and "auroc" in ev.settings["ci95"]:
            lo, hi = ev.settings["ci95"]["auroc"]
            assert lo <= ev.summary["auroc"] <= hi
    by_adapter = {t.spec.config.adapter: t.result.efficiency["trainable_parameters"] for t in arms}  # type: ignore[union-attr]
    assert by_adapter["hyda"] > by_adapter["linear"]
    [hypothesis] = store.cycles.hypotheses(campaign.id)
    assert hypothesis.verdict in ("supported", "refuted", "inconclusive")
