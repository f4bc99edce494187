"""Data for the browser tests of issue 19: a 3D trial with a prediction (slice viewer), a
trial with a 10,000-point loss curve, and ten trials to compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medloop.core.records import JobResult, Provenance, TrialResult
from medloop.core.store import Store

PROV = Provenance(code_version="t", runtime="local", host="h", started_at="x", ended_at="y")


def curve_file(out: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    it = np.arange(1, n + 1)
    loss = 1.5 * np.exp(-it / (n / 4)) + 0.05 * rng.random(n) + 0.1
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps({"iteration": it.tolist(), "loss": loss.round(5).tolist()}))


def with_outputs(store: Store, campaign_id: str, root: Path, *, n_trials: int, points: int) -> list[str]:
    """Copies of the campaign's first succeeded trials whose output folders hold a loss
    curve of `points` iterations (ids trl_big_0..)."""
    bases = [
        t for t in store.trials.list(campaign_id=campaign_id, limit=1000).items if t.status == "succeeded"
    ]
    ids = []
    for i in range(n_trials):
        base = bases[i % len(bases)]
        assert base.result is not None
        out = root / f"big{i}" / "out"
        curve_file(out, points, seed=i)
        job = JobResult(
            key=f"k{i}", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=PROV
        )
        tid = f"trl_big_{i}"
        history = [
            {
                "epoch": float(e),
                "iteration": float(points * e / 4),
                "loss": 0.3 / e,
                "val_dice": 0.6 + 0.05 * e,
            }
            for e in (1, 2, 3, 4)
        ]
        result = base.result.model_copy(update={"trial_id": tid, "job": job, "history": history})
        store.trials.put(base.model_copy(update={"id": tid, "result": result}))
        ids.append(tid)
    return ids


def volume_trial(store: Store, campaign_id: str, root: Path) -> tuple[str, str]:
    """A trial on a 3D CT phantom whose prediction is the label: (trial id, case)."""
    from medloop.experiments.dataset.imageio import read_volume, save_nifti
    from medloop.experiments.dataset.phantom3d import synth_phantom3d

    ds = synth_phantom3d(root / "Dataset903_Vol", cases=2, seed=4, test_cases=0, n_sites=2)
    case = sorted(p.name[: -len("_0000.nii.gz")] for p in (ds / "imagesTr").glob("*_0000.nii.gz"))[0]
    vol = read_volume(ds / "labelsTr" / f"{case}.nii.gz")
    out = root / "vol" / "out"
    save_nifti(
        vol.array.astype(np.uint8),
        out / "predictions" / "eval" / f"{case}.nii.gz",
        spacing=vol.spacing,
        affine=vol.affine,
    )
    campaign = store.campaigns.get(campaign_id)
    spec_ds = campaign.spec.dataset.model_copy(update={"path": ds})
    other = campaign.model_copy(
        update={"id": "cmp_volume", "spec": campaign.spec.model_copy(update={"dataset": spec_ds})}
    )
    store.campaigns.add(other)
    base = store.trials.list(campaign_id=campaign_id, limit=1).items[0]
    assert base.result is not None
    manifest = base.spec.dataset.model_copy(update={"eval_cases": [case], "channel_names": {"0": "CT"}})
    job = JobResult(key="kv", status="succeeded", exit_code=0, wall_s=1.0, out_dir=out, provenance=PROV)
    result = TrialResult(trial_id="trl_volume", spec_hash="s", status="succeeded", objective=1.0, job=job)
    trial = base.model_copy(
        update={
            "id": "trl_volume",
            "campaign_id": "cmp_volume",
            "spec": base.spec.model_copy(update={"dataset": manifest}),
            "result": result,
        }
    )
    store.trials.put(trial)
    return "trl_volume", case
