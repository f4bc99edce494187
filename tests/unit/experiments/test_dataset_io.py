"""nnU-Net dataset reading, checksums, manifests, staging and held-out labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import DatasetError
from medloop.experiments.dataset import (
    build_manifest,
    dataset_checksum,
    fingerprint_summary,
    held_out_labels,
    read_dataset,
    read_volume,
    stage_inputs,
    synth_phantom,
)
from medloop.experiments.dataset.splits import stratified_holdout


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(tmp_path_factory.mktemp("data") / "Dataset900_Tiny", cases=8, seed=3, test_cases=3)


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / src.name
    shutil.copytree(src, dest)
    return dest


def test_phantom_is_a_real_nnunet_dataset(phantom: Path) -> None:
    ds = read_dataset(phantom)
    assert ds.channel_names == {"0": "CT"}
    assert ds.labels == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
    assert len(ds.training) == 8 and len(ds.test) == 3
    assert all(c.label is not None for c in ds.test), "labelsTs are written for the host"
    assert set(ds.sites.values()) == {"site_a", "site_b"}
    image = read_volume(ds.training[0].images[0])
    label = read_volume(ds.training[0].label)  # type: ignore[arg-type]
    assert image.shape == label.shape == (64, 64, 1)
    assert image.spacing[2] == 5.0 and image.spacing[0] in (1.0, pytest.approx(1.2))
    values = set(np.unique(np.concatenate([read_volume(c.label).array.ravel() for c in ds.training])))  # type: ignore[arg-type]
    assert values == {0, 1, 2, 3}, "every class appears"


def test_phantom_sites_differ_in_noise_and_spacing(phantom: Path) -> None:
    ds = read_dataset(phantom)
    spacing = {c.site: read_volume(c.images[0]).spacing[0] for c in ds.training}
    assert spacing["site_a"] != pytest.approx(spacing["site_b"])
    # noise: std of the background-tissue HU inside the body, per site
    noise: dict[str, list[float]] = {"site_a": [], "site_b": []}
    for case in ds.training:
        image, label = read_volume(case.images[0]).array, read_volume(case.label).array  # type: ignore[arg-type]
        body = (label == 0) & (image > -300) & (image < 150)
        noise[str(case.site)].append(float(image[body].std()))
    assert np.mean(noise["site_b"]) > np.mean(noise["site_a"])


def test_phantom_is_deterministic_by_seed(tmp_path: Path, phantom: Path) -> None:
    # dataset.json records the folder name, so compare under the same name
    again = synth_phantom(tmp_path / "again" / phantom.name, cases=8, seed=3, test_cases=3)
    other = synth_phantom(tmp_path / "other" / phantom.name, cases=8, seed=4, test_cases=3)
    assert dataset_checksum(again) == dataset_checksum(phantom)
    assert dataset_checksum(other) != dataset_checksum(phantom)


def test_phantom_reuses_identical_and_refuses_foreign_folders(tmp_path: Path) -> None:
    first = synth_phantom(tmp_path / "ds", cases=4, seed=1)
    stamp = (first / "dataset.json").stat().st_mtime_ns
    assert synth_phantom(tmp_path / "ds", cases=4, seed=1) == first
    assert (first / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="already exists"):
        synth_phantom(tmp_path / "ds", cases=5, seed=1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folder left behind"


def test_checksum_follows_content_and_ignores_medloop_files(tmp_path: Path, phantom: Path) -> None:
    ds = _copy(phantom, tmp_path)
    before = dataset_checksum(ds)
    (ds / "medloop_plans.json").write_text("{}")
    assert dataset_checksum(ds) == before
    label = next((ds / "labelsTr").iterdir())
    data = bytearray(label.read_bytes())
    data[-1] ^= 0xFF
    label.write_bytes(bytes(data))
    assert dataset_checksum(ds) != before


def test_read_dataset_names_the_problem(tmp_path: Path, phantom: Path) -> None:
    ds = _copy(phantom, tmp_path)
    (ds / "labelsTr" / "phantom_002.nii.gz").unlink()
    with pytest.raises(DatasetError, match="phantom_002 has no label"):
        read_dataset(ds)

    ds2 = _copy(phantom, tmp_path / "b")
    (ds2 / "imagesTr" / "phantom_001_0000.nii.gz").rename(ds2 / "imagesTr" / "phantom_001_0001.nii.gz")
    with pytest.raises(DatasetError, match=r"phantom_001 is missing channel file\(s\) phantom_001_0000"):
        read_dataset(ds2)

    meta = json.loads((ds2 / "dataset.json").read_text())
    (ds2 / "dataset.json").write_text(json.dumps({**meta, "numTraining": 9}))
    (ds2 / "imagesTr" / "phantom_001_0001.nii.gz").rename(ds2 / "imagesTr" / "phantom_001_0000.nii.gz")
    with pytest.raises(DatasetError, match="numTraining is 9, imagesTr has 8"):
        read_dataset(ds2)

    (ds2 / "dataset.json").write_text(json.dumps({"modality": {"0": "CT"}, "labels": {"0": "bg"}}))
    with pytest.raises(DatasetError, match="convert-msd"):
        read_dataset(ds2)
    (ds2 / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_dataset(ds2)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_stratified_holdout_is_seeded_and_covers_every_site() -> None:
    cases = [f"c{i:02d}" for i in range(20)]
    sites = {c: ("a" if i % 4 else "b") for i, c in enumerate(cases)}
    kept, held = stratified_holdout(cases, sites, fraction=0.3, seed=5)
    assert stratified_holdout(cases, sites, fraction=0.3, seed=5) == (kept, held)
    assert stratified_holdout(cases, sites, fraction=0.3, seed=6) != (kept, held)
    assert not set(kept) & set(held) and sorted(kept + held) == cases
    assert {sites[c] for c in held} == {"a", "b"} and {sites[c] for c in kept} == {"a", "b"}
    assert len(held) == round(0.3 * 15) + round(0.3 * 5)


def test_manifest_stage_and_held_out_labels(tmp_path: Path, phantom: Path) -> None:
    manifest = build_manifest(phantom, eval_fraction=0.25, split_seed=12345)
    assert manifest.checksum == dataset_checksum(phantom)
    assert len(manifest.eval_cases) == 2 and len(manifest.train_cases) == 6
    assert manifest.split["method"] == "holdout" and manifest.split["seed"] == 12345
    saved = json.loads((phantom / str(manifest.split["file"])).read_text())
    assert saved == [{"train": manifest.train_cases, "val": manifest.eval_cases}]
    assert {manifest.sites[c] for c in manifest.eval_cases} == {"site_a", "site_b"}

    parts = stage_inputs(phantom, manifest, tmp_path / "staging")
    assert set(parts) == {"train", "eval", "test"}
    train_imgs = sorted(p.name for p in (parts["train"] / "imagesTr").iterdir())
    assert train_imgs == sorted(f"{c}_0000.nii.gz" for c in manifest.train_cases)
    assert sorted(p.name for p in (parts["train"] / "labelsTr").iterdir()) == sorted(
        f"{c}.nii.gz" for c in manifest.train_cases
    )
    assert sorted(p.name for p in (parts["eval"] / "imagesTs").iterdir()) == sorted(
        f"{c}_0000.nii.gz" for c in manifest.eval_cases
    )
    assert len(list((parts["test"] / "imagesTs").iterdir())) == 3
    # held-out labels never appear anywhere in the staged tree
    staged = {p.name for p in (tmp_path / "staging").rglob("*.nii.gz")}
    assert not staged & {f"{c}.nii.gz" for c in manifest.eval_cases + manifest.test_cases}
    # hardlinked, and reused on the second call
    src = phantom / "imagesTr" / f"{manifest.train_cases[0]}_0000.nii.gz"
    assert (parts["train"] / "imagesTr" / src.name).stat().st_ino == src.stat().st_ino
    assert stage_inputs(phantom, manifest, tmp_path / "staging") == parts
    assert len([p for p in (tmp_path / "staging").iterdir()]) == 1

    eval_labels = held_out_labels(phantom, manifest, "eval")
    assert sorted(eval_labels) == manifest.eval_cases
    assert all(p.parent.name == "labelsTr" for p in eval_labels.values())
    test_labels = held_out_labels(phantom, manifest, "test")
    assert sorted(test_labels) == manifest.test_cases and all(
        p.parent.name == "labelsTs" for p in test_labels.values()
    )
    assert sorted(held_out_labels(phantom, manifest, "internal_val")) == manifest.train_cases
    with pytest.raises(DatasetError, match="unknown split"):
        held_out_labels(phantom, manifest, "bogus")


def test_stage_refuses_a_changed_dataset(tmp_path: Path, phantom: Path) -> None:
    ds = _copy(phantom, tmp_path)
    manifest = build_manifest(ds, eval_fraction=0.25, split_seed=1)
    (ds / "sites.json").write_text(json.dumps({"phantom_000": "x"}))
    with pytest.raises(DatasetError, match="checksum differs"):
        stage_inputs(ds, manifest, tmp_path / "staging")
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").iterdir())


def test_fingerprint_summary(phantom: Path) -> None:
    fp = fingerprint_summary(phantom)
    assert fp["n_cases"] == 8 and fp["n_test_cases"] == 3 and fp["n_classes"] == 3 and fp["n_sites"] == 2
    assert fp["shape_0"] == 64 and fp["shape_2"] == 1 and fp["is_3d"] == 0
    assert fp["spacing_2"] == 5.0
    assert 0 < fp["fg_fraction"] < 0.5
    assert fp["intensity_p005"] < fp["intensity_mean"] < fp["intensity_p995"]
    assert all(isinstance(v, float) for v in fp.values())
