"""`task: vqa` campaigns: specs, and a whole campaign on CPU with the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.core.errors import SpecError
from medloop.core.records import TrialSpec
from medloop.core.settings import Settings
from medloop.core.specs import SegConfig, VqaConfig, load_campaign_spec, parse_campaign_spec
from medloop.experiments.dataset import synth_phantom

EXAMPLE = Path(__file__).parents[3] / "examples" / "vqa_quickstart.yaml"


def _spec(dataset: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "vqa-test",
        "goal": "Raise VQA accuracy",
        "task": "vqa",
        "dataset": {"path": str(dataset), "eval_fraction": 0.3, "split_seed": 3},
        "objective": {"metric": "accuracy"},
        "baseline": {"method": "lora", "lr": 0.01, "epochs": 1, "max_new_tokens": 3, "eval_batch_size": 32},
        "search_space": {"method": ["lora", "full"]},
        "validation": {
            "seeds_per_arm": 2,
            "reproduction_seeds": 0,
            "test": "mcnemar",
            "bootstrap_resamples": 2000,
        },
        "budget": {"max_cycles": 1, "max_trials": 8},
        "executor": {"kind": "local", "slots": 2},
        "sandbox": {"timeout": "5m"},
        "planner": {"hypotheses_per_cycle": 1},
    }
    data.update(changes)
    return data


def test_example_and_spec_rules(tmp_path: Path) -> None:
    spec = load_campaign_spec(EXAMPLE, check_dataset=False)
    assert spec.task == "vqa" and isinstance(spec.baseline_config(), VqaConfig)
    with pytest.raises(SpecError, match=r"objective\.metric 'dice' is not a VQA metric"):
        parse_campaign_spec(_spec(tmp_path, objective={"metric": "dice"}), source="t", check_dataset=False)
    with pytest.raises(SpecError, match="'loss' is not a trial config field"):
        parse_campaign_spec(_spec(tmp_path, search_space={"loss": ["dice"]}), source="t", check_dataset=False)
    with pytest.raises(SpecError, match=r"search_space\.train_categories"):
        parse_campaign_spec(
            _spec(tmp_path, search_space={"train_categories": ["all", "colour=red"]}),
            source="t",
            check_dataset=False,
        )
    ok = parse_campaign_spec(
        _spec(tmp_path, objective={"metric": "accuracy:task=laterality"}), source="t", check_dataset=False
    )
    assert ok.objective.metric == "accuracy:task=laterality"
    with pytest.raises(SpecError, match=r"has no dataset\.json"):
        parse_campaign_spec(_spec(tmp_path), source="t")
    (tmp_path / "vqa.json").write_text("{}")
    assert parse_campaign_spec(_spec(tmp_path), source="t").task == "vqa"


def test_trial_configs_are_a_union_on_task() -> None:
    base = {
        "dataset": {
            "name": "d",
            "checksum": "c",
            "channel_names": {},
            "labels": {},
            "train_cases": [],
            "eval_cases": [],
        },
        "seed": 0,
    }
    legacy = TrialSpec.model_validate({**base, "config": {"lr": 0.01}})  # stored before `task` mattered
    assert isinstance(legacy.config, SegConfig)
    vqa = TrialSpec.model_validate({**base, "task": "vqa", "config": {"task": "vqa", "lora_rank": 4}})
    assert vqa.config_as(VqaConfig).lora_rank == 4
    with pytest.raises(ValueError, match="a SegConfig trainer cannot run a VqaConfig"):
        vqa.config_as(SegConfig)
    with pytest.raises(ValueError, match=r"config\.task is 'vqa'"):
        TrialSpec.model_validate({**base, "task": "segmentation", "config": {"task": "vqa"}})


@pytest.mark.slow
def test_campaign_on_phantom_items_makes_claims_with_category_evidence(
    tmp_path: Path, settings: Settings
) -> None:
    from medloop import bootstrap

    dataset = synth_phantom(tmp_path / "Dataset953_Phantom", cases=16, seed=4, test_cases=4)
    spec = parse_campaign_spec(_spec(dataset), source="test")
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.run(runner.create(spec, owner="test").id)
    store = runner.s.store
    assert campaign.status == "completed", campaign.summary

    every = store.trials.list(campaign_id=campaign.id).items
    assert all(t.status == "succeeded" for t in every), [t.result for t in every]
    trials = [t for t in every if t.arm in ("control", "treatment")]
    assert len(trials) == 4  # 2 seeds x 2 arms; the rest are the final test-split runs
    evaluation = trials[0].result.evaluations["eval"]  # type: ignore[union-attr]
    n_items = len(evaluation.cases)
    assert n_items == trials[0].spec.dataset.split["n_eval_items"] > 10
    assert {"accuracy", "accuracy:task=organ_recognition", "accuracy:modality=CT"} <= set(evaluation.summary)
    assert evaluation.settings["random_baseline"]["accuracy"] < 0.6

    [hypothesis] = store.cycles.hypotheses(campaign.id)
    assert [(c.factor, c.to_value) for c in hypothesis.changes] == [("method", "full")]
    assert hypothesis.verdict in ("supported", "refuted", "inconclusive")
    claim = store.claims.get(hypothesis.claim_id or "")
    assert claim.context.task == "vqa" and claim.effect is not None
    assert claim.effect.n_cases == n_items and claim.effect.test.startswith("mcnemar")
    [statistic] = [e for e in store.evidence.list(claim.id) if e.kind == "statistic"]
    by_category = statistic.detail["by_category"]
    assert {"task=organ_recognition", "task=laterality", "modality=CT"} <= set(by_category)
    for effect in by_category.values():
        assert effect["ci_low"] <= effect["estimate"] <= effect["ci_high"]
        assert effect["p_holm_within_field"] >= effect["p_value"]
    tasks = [k for k in by_category if k.startswith("task=")]
    assert sum(by_category[k]["n_cases"] for k in tasks) == n_items  # each item has one task
    # the test split was touched once, at the end, by fresh-seed runs of baseline and incumbent
    final = [t for t in every if t.arm == "final"]
    assert final and all("test" in (t.result.evaluations if t.result else {}) for t in final)
    assert campaign.summary["test"]["baseline"]["objective"] is not None
