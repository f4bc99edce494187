"""`task: pretrain` campaigns end to end on the CPU: the example spec, and a CI-sized
low-label study (pre-train on the 3D phantom, fine-tune at 10% labels with and without the
pre-trained init) whose checkpoint a segmentation trial then starts from through `init:`,
with provenance checked and a tampered checkpoint refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop.core.errors import DatasetError, SpecError
from medloop.core.settings import Settings
from medloop.core.specs import PretrainConfig, SegConfig, load_campaign_spec, parse_campaign_spec
from medloop.experiments.dataset.phantom3d import synth_phantom3d

EXAMPLE = Path(__file__).parents[3] / "examples" / "pretrain_lowlabel.yaml"


def _spec(dataset: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "pretrain-test",
        "goal": "Raise Dice at 10% labels",
        "task": "pretrain",
        "dataset": {"path": str(dataset), "eval_fraction": 0.3, "split_seed": 3},
        "objective": {"metric": "dice"},
        "baseline": {
            "method": "none",
            "spatial_dims": 3,
            "base_features": 4,
            "depth": 2,
            "patch_size": "16x16x8",
            "batch_size": 2,
            "iterations": 6,
            "embed_dim": 8,
            "prototypes": 8,
            "mask_stride": 2,
            "label_fraction": 0.1,
            "finetune_iterations": 4,
        },
        "search_space": {"method": ["none", "s2uniseg"]},
        "validation": {"seeds_per_arm": 2, "reproduction_seeds": 0, "bootstrap_resamples": 200},
        "budget": {"max_cycles": 1, "max_trials": 12},
        "executor": {"kind": "local", "slots": 2},
        "sandbox": {"timeout": "5m"},
        "planner": {"hypotheses_per_cycle": 1},
    }
    data.update(changes)
    return data


def test_example_and_spec_rules(tmp_path: Path) -> None:
    spec = load_campaign_spec(EXAMPLE, check_dataset=False)
    assert spec.task == "pretrain" and isinstance(spec.baseline_config(), PretrainConfig)
    assert set(spec.search_space) == {"method", "label_fraction"}
    with pytest.raises(SpecError, match=r"search_space\.method: value 'simclr'"):
        parse_campaign_spec(
            _spec(tmp_path, search_space={"method": ["mim", "simclr"]}), source="t", check_dataset=False
        )
    with pytest.raises(SpecError, match=r"merge_thresholds"):
        parse_campaign_spec(
            _spec(tmp_path, search_space={"merge_thresholds": ["0.9,0.8", "0.7,0.8"]}),
            source="t",
            check_dataset=False,
        )
    with pytest.raises(SpecError, match=r"has no dataset\.json"):
        parse_campaign_spec(_spec(tmp_path), source="t")


@pytest.mark.slow
def test_lowlabel_campaign_and_init_from_the_pretrained_checkpoint(
    tmp_path: Path, settings: Settings
) -> None:
    from medloop import bootstrap
    from medloop.engine.tasks.pretrain import SETTINGS_KEY
    from medloop.engine.trials import SandboxTrials

    dataset = synth_phantom3d(tmp_path / "Dataset903_Abd3D", cases=10, seed=2, test_cases=0, n_sites=2)
    spec = parse_campaign_spec(_spec(dataset), source="test")
    runner = bootstrap.campaign_runner(settings)
    campaign = runner.run(runner.create(spec, owner="test").id)
    store = runner.s.store
    assert campaign.status == "completed", campaign.summary
    every = store.trials.list(campaign_id=campaign.id).items
    assert all(t.status == "succeeded" for t in every), [t.result.error for t in every if t.result]
    pretrained = [
        t for t in every if isinstance(t.spec.config, PretrainConfig) and t.spec.config.method != "none"
    ]
    scratch = [
        t for t in every if isinstance(t.spec.config, PretrainConfig) and t.spec.config.method == "none"
    ]
    assert pretrained and scratch, [(t.arm, getattr(t.spec.config, "method", "")) for t in every]
    trial = pretrained[0]
    assert trial.result is not None
    # the fine-tune used 10% of the 7 training cases: one labelled case
    record = trial.result.evaluations["eval"].settings[SETTINGS_KEY]
    assert record["method"] == "s2uniseg" and record["seed"] == trial.spec.seed
    assert record["data_checksum"] == trial.spec.dataset.checksum
    assert record["pseudo_mask"]["pseudo_mask_ms_per_volume"] > 0  # measured, host-visible
    assert trial.result.efficiency["pseudo_mask_ms_per_volume"] > 0
    assert trial.result.evaluations["eval"].summary["dice"] is not None

    # A segmentation trial starts from that checkpoint through `init:`
    seg_spec = parse_campaign_spec(
        _spec(dataset, task="segmentation", baseline={"spatial_dims": 3}, search_space={"lr": [0.001, 0.01]}),
        source="seg",
    )
    trials = SandboxTrials(
        store,
        seg_spec,
        executor=None,
        workspace=settings.workspace,
        staging_dir=settings.workspace / "staging2",  # type: ignore[arg-type]
    )
    wrong = SegConfig(spatial_dims=3, base_features=8, depth=2, label_fraction=0.1, init=f"trial:{trial.id}")
    with pytest.raises(DatasetError, match=r"pre-trained with base_features=4"):
        trials.spec_for(wrong, seed=1)
    good = wrong.model_copy(update={"base_features": 4})
    staged = trials.spec_for(good, seed=1)
    assert staged.init_checkpoint and staged.provenance["init_parent"] == f"trial:{trial.id}"
    assert staged.provenance["init_sha256"] == record["sha256"]

    # The pre-trained checkpoint changed after the host registered it: refused
    assert trial.result.job is not None
    path = trial.result.job.out_dir / "checkpoints" / "pretrained.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"tampered|changed after the host registered"):
        trials.spec_for(good, seed=2)
