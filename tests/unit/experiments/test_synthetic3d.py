"""The 3D phantom and the MNI152 dataset: structure, sites, determinism; and a 3D job on
differently shaped sites end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import SegConfig
from medloop.evaluation.metrics import evaluate_split
from medloop.evaluation.sites import domain_summary, training_sites
from medloop.experiments.dataset import (
    build_manifest,
    held_out_labels,
    read_dataset,
    read_volume,
    stage_inputs,
)
from medloop.experiments.dataset.checks import check_dataset
from medloop.experiments.dataset.phantom3d import LABELS_3D, synth_phantom3d


@pytest.fixture(scope="module")
def abd3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom3d(tmp_path_factory.mktemp("d3") / "Dataset903_Abd3D", cases=4, seed=2, test_cases=3)


def test_phantom3d_sites_shapes_and_unseen_test_site(abd3d: Path) -> None:
    ds = read_dataset(abd3d)
    assert ds.labels == LABELS_3D and check_dataset(abd3d).ok
    assert {c.site for c in ds.training} == {"site_a", "site_b"}
    assert {c.site for c in ds.test} == {"site_a", "site_b", "site_c"}  # site_c only in test
    assert json.loads((abd3d / "dataset.json").read_text())["test_only_sites"] == ["site_c"]
    geometry = {c.site: (read_volume(c.images[0]).shape, read_volume(c.images[0]).spacing) for c in ds.test}
    assert geometry["site_a"][0] == (48, 48, 24) and geometry["site_b"][0] == (40, 40, 20)
    assert geometry["site_c"][1][2] == 2.0
    counts = np.bincount(
        np.concatenate([read_volume(c.label).array.ravel().astype(int) for c in ds.training])
    )  # type: ignore[arg-type]
    assert len(counts) == 5 and (counts > 0).all(), "every organ appears"
    again = synth_phantom3d(abd3d.parent / "again", cases=4, seed=2, test_cases=3)
    np.testing.assert_array_equal(
        read_volume(again / "imagesTr" / "abd3d_001_0000.nii.gz").array,
        read_volume(abd3d / "imagesTr" / "abd3d_001_0000.nii.gz").array,
    )


@pytest.mark.slow
def test_mni_subjects_have_real_anatomy_and_differ(tmp_path: Path) -> None:
    from medloop.experiments.dataset.mni import LABELS_MNI, synth_mni

    path = synth_mni(tmp_path / "Dataset904_MNI", cases=2, seed=0, test_cases=2, n_sites=2, test_only_sites=1)
    ds = read_dataset(path)
    assert ds.labels == LABELS_MNI and ds.channel_names == {"0": "T1"} and check_dataset(path).ok
    labels = [read_volume(c.label).array for c in ds.training]  # type: ignore[arg-type]
    assert labels[0].shape == labels[1].shape and labels[0].ndim == 3
    fractions = np.bincount(labels[0].astype(int).ravel(), minlength=4) / labels[0].size
    assert 0.15 < fractions[1] < 0.45 and 0.05 < fractions[2] < 0.3, "grey > white matter, both present"
    assert (labels[0] != labels[1]).mean() > 0.05, "subjects are deformed differently"
    assert {c.site for c in ds.test} == {"site_a", "site_b"} and {c.site for c in ds.training} == {"site_a"}


@pytest.mark.slow
def test_3d_job_on_sites_of_different_geometry(tmp_path: Path, abd3d: Path) -> None:
    manifest = build_manifest(abd3d, eval_fraction=0.25, split_seed=0)
    parts = stage_inputs(abd3d, manifest, tmp_path / "staging")
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for name, path in parts.items():
        (in_dir / name).symlink_to(path)
    config = SegConfig(
        model="dynunet",
        spatial_dims=3,
        base_features=8,
        depth=3,
        patch_size="32x32x16",
        batch_size=2,
        iterations=4,
        epoch_iterations=2,
        target_spacing="auto",
        loss="dicefocal",
        optimizer="sgd",
        lr=0.01,
        augmentation="nnunet",
        internal_val_fraction=0.34,
    )
    (in_dir / "spec.json").write_text(TrialSpec(dataset=manifest, config=config, seed=1).model_dump_json())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medloop.experiments",
            "run",
            "--spec",
            str(in_dir / "spec.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = JobOutcome.model_validate_json((tmp_path / "out" / "result.json").read_text())
    assert result.setup["resampled"] is True and result.setup["spacing"][2] > 0
    for case in manifest.test_cases:
        pred = read_volume(tmp_path / "out" / "predictions" / "test" / f"{case}.nii.gz")
        image = read_volume(abd3d / "imagesTs" / f"{case}_0000.nii.gz")
        assert pred.shape == image.shape  # back on each site's own grid
    ev = evaluate_split(
        tmp_path / "out" / "predictions" / "test",
        held_out_labels(abd3d, manifest, "test"),
        labels=manifest.labels,
        sites=manifest.sites,
        split="test",
        metrics=("dice", "nsd", "hd95"),
    )
    assert set(ev.by_site) == {"site_a", "site_b", "site_c"}
    assert ev.settings["nsd_tolerance_mm"] == {"liver": 5.0, "spleen": 3.0, "kidney": 3.0, "aorta": 2.0}
    summary = domain_summary(ev, training_sites(manifest), resamples=200)
    assert summary["unseen_sites"] == ["site_c"] and summary["n_out_of_domain"] == 1
