"""`task: audio` campaigns: the example spec, spec rules, and a CI-sized campaign over
features x neuron x augmentation that writes subject-level claims with CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.core.errors import SpecError
from medloop.core.settings import Settings
from medloop.core.specs import AudioConfig, load_campaign_spec, parse_campaign_spec
from medloop.experiments.dataset.audio_synth import synth_speech

EXAMPLE = Path(__file__).parents[3] / "examples" / "audio_quickstart.yaml"


def _spec(dataset: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "audio-test",
        "goal": "Keep F1 at 5 dB",
        "task": "audio",
        "dataset": {"path": str(dataset), "eval_fraction": 0.4, "split_seed": 2},
        "objective": {"metric": "f1@5db"},
        "baseline": {"features": "mfcc", "model": "cnn", "hidden": 8, "epochs": 3},
        "search_space": {
            "neuron": ["none", "arslif"],
            "features": ["mfcc", "logmel"],
            "augmentation": ["none", "noise"],
        },
        "validation": {
            "seeds_per_arm": 2,
            "reproduction_seeds": 0,
            "test": "permutation",
            "bootstrap_resamples": 500,
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
    assert spec.task == "audio" and isinstance(spec.baseline_config(), AudioConfig)
    assert spec.objective.metric == "f1@5db"
    with pytest.raises(SpecError, match=r"objective\.metric: 'f1@3db' is not computed for audio"):
        parse_campaign_spec(_spec(tmp_path, objective={"metric": "f1@3db"}), source="t", check_dataset=False)
    with pytest.raises(SpecError, match=r"search_space\.neuron: value 'izhikevich'"):
        parse_campaign_spec(
            _spec(tmp_path, search_space={"neuron": ["lif", "izhikevich"]}), source="t", check_dataset=False
        )
    with pytest.raises(SpecError, match=r"has no manifest\.csv"):
        parse_campaign_spec(_spec(tmp_path), source="t")
    ok = parse_campaign_spec(_spec(tmp_path, objective={"metric": "f1_auc"}), source="t", check_dataset=False)
    assert ok.objective.metric == "f1_auc"


@pytest.mark.slow
def test_campaign_writes_subject_level_claims_with_cis(tmp_path: Path, settings: Settings) -> None:
    from medloop import bootstrap

    dataset = synth_speech(tmp_path / "speech", subjects=16, sessions=2, seconds=2.0, test_subjects=4, seed=5)
    spec = parse_campaign_spec(_spec(dataset), source="test")
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.run(runner.create(spec, owner="test").id)
    store = runner.s.store
    assert campaign.status == "completed", campaign.summary
    every = store.trials.list(campaign_id=campaign.id).items
    assert all(t.status == "succeeded" for t in every), [t.result.error for t in every if t.result]
    trials = [t for t in every if t.arm in ("control", "treatment")]
    assert len(trials) == 4
    evaluation = trials[0].result.evaluations["eval"]  # type: ignore[union-attr]
    subjects = set(trials[0].spec.dataset.eval_cases)
    assert {c.case for c in evaluation.cases} == subjects  # one case per subject
    assert set(evaluation.settings["curve"]["f1"]) == {"clean", "20db", "10db", "5db", "0db"}
    lo, hi = evaluation.settings["ci95"]["f1@5db"]
    assert lo <= evaluation.summary["f1@5db"] <= hi  # type: ignore[operator]

    [hypothesis] = store.cycles.hypotheses(campaign.id)
    assert hypothesis.verdict in ("supported", "refuted", "inconclusive")
    claim = store.claims.get(hypothesis.claim_id or "")
    assert claim.context.task == "audio" and claim.effect is not None
    assert claim.effect.metric == "f1@5db" and claim.effect.n_cases == len(subjects)
    assert claim.effect.ci_low <= claim.effect.estimate <= claim.effect.ci_high
    final = [t for t in every if t.arm == "final"]
    assert final and all("test" in (t.result.evaluations if t.result else {}) for t in final)
