"""Splits (hold-out, k-fold, leave-site-out) and nnU-Net-rule plans on hand-worked data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import DatasetError
from medloop.core.specs import SegConfig
from medloop.experiments.dataset import build_manifest, synth_phantom
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.plans import (
    choose_dims,
    compute_fingerprint,
    load_or_make_plans,
    plan_baseline,
    target_spacing,
)
from medloop.experiments.dataset.splits import kfold, leave_site_out


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(tmp_path_factory.mktemp("data") / "Dataset900_Tiny", cases=10, seed=5, test_cases=2)


def test_kfold_partitions_every_case_once_and_balances_sites() -> None:
    cases = [f"c{i:02d}" for i in range(23)]
    sites = {c: "ab"[i % 2] for i, c in enumerate(cases)}
    folds = kfold(cases, sites, k=5, seed=12345)
    vals = [c for f in folds for c in f["val"]]
    assert sorted(vals) == cases and len(set(vals)) == 23
    sizes = [len(f["val"]) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(cases) and not set(f["train"]) & set(f["val"])
        assert {sites[c] for c in f["val"]} == {"a", "b"}
    assert kfold(cases, sites, k=5, seed=12345) == folds
    assert kfold(cases, sites, k=5, seed=1) != folds
    with pytest.raises(DatasetError, match="k-fold needs"):
        kfold(cases[:3], sites, k=5, seed=0)


def test_leave_site_out() -> None:
    cases = ["a1", "a2", "b1", "c1", "c2"]
    sites = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C"}
    folds = leave_site_out(cases, sites)
    assert [f["site"] for f in folds] == ["A", "B", "C"]
    assert folds[1] == {"train": ["a1", "a2", "c1", "c2"], "val": ["b1"], "site": "B"}
    with pytest.raises(DatasetError, match="at least 2 sites"):
        leave_site_out(cases, {c: "A" for c in cases})
    with pytest.raises(DatasetError, match="without a site"):
        leave_site_out(cases, {"a1": "A", "b1": "B"})


def test_manifest_records_the_saved_splits(tmp_path: Path, phantom: Path) -> None:
    m = build_manifest(phantom, split_seed=7, method="kfold", k=5, fold=2)
    saved = json.loads((phantom / "medloop_splits_kfold5_s7.json").read_text())
    assert m.split["file"] == "medloop_splits_kfold5_s7.json" and m.split["fold"] == 2 and m.split["k"] == 5
    assert m.eval_cases == saved[2]["val"] and m.train_cases == saved[2]["train"]
    assert len(m.split["sha256"]) == 64

    loso = build_manifest(phantom, method="leave_site_out", site="site_b")
    assert loso.split["held_out_site"] == "site_b"
    assert {loso.sites[c] for c in loso.eval_cases} == {"site_b"}
    assert {loso.sites[c] for c in loso.train_cases} == {"site_a"}

    # an edited splits file is honoured (nnU-Net's behaviour), a broken one is named
    custom = [{"train": saved[0]["train"][1:], "val": saved[0]["val"] + saved[0]["train"][:1]}]
    (phantom / "medloop_splits_kfold3_s7.json").write_text(json.dumps(custom))
    edited = build_manifest(phantom, split_seed=7, method="kfold", k=3, fold=0)
    assert edited.eval_cases == sorted(custom[0]["val"]) and edited.split["n_folds"] == 1
    (phantom / "medloop_splits_kfold4_s7.json").write_text(json.dumps([{"train": ["nope"], "val": ["x"]}]))
    with pytest.raises(DatasetError, match=r"medloop_splits_kfold4_s7\.json: fold 0 names unknown cases"):
        build_manifest(phantom, split_seed=7, method="kfold", k=4)
    with pytest.raises(DatasetError, match="fold 9 does not exist"):
        build_manifest(phantom, method="kfold", fold=9)


def test_target_spacing_median_and_anisotropy_rule() -> None:
    # isotropic-ish: the median per axis
    sp = np.array([[1.0, 1.0, 1.0], [0.8, 0.8, 1.2], [1.2, 1.2, 0.8]])
    shapes = np.array([[100, 100, 100]] * 3)
    assert target_spacing(sp, shapes) == [1.0, 1.0, 1.0]
    # z is > 3x coarser and has < 1/3 of the voxels: its 10th percentile (of 5, 5, 5, 4, 3 mm)
    sp = np.array([[0.7, 0.7, 5.0], [0.8, 0.8, 5.0], [0.7, 0.7, 5.0], [0.75, 0.75, 4.0], [0.7, 0.7, 3.0]])
    shapes = np.array([[512, 512, 30]] * 5)
    z = target_spacing(sp, shapes)[2]
    assert z == pytest.approx(np.percentile([5.0, 5.0, 5.0, 4.0, 3.0], 10))
    # coarse but many slices: stays at the median
    assert target_spacing(sp, np.array([[100, 100, 200]] * 5))[2] == 5.0


def _tiny_3d(root: Path, n: int, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    for i in range(n):
        image = np.full(shape, 100.0 + i, np.float32)
        label = np.zeros(shape, np.uint8)
        label[2:6, 2:6, 1:3] = 1
        save_nifti(image, root / "imagesTr" / f"c{i}_0000.nii.gz", spacing=spacing)
        save_nifti(label, root / "labelsTr" / f"c{i}.nii.gz", spacing=spacing)
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "x": 1},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_fingerprint_of_a_hand_worked_dataset(tmp_path: Path) -> None:
    ds = _tiny_3d(tmp_path / "ds", 3, (16, 16, 8), (1.0, 1.0, 2.5))
    fp = compute_fingerprint(ds)
    assert fp["median_shape"] == [16.0, 16.0, 8.0] and fp["median_spacing"] == [1.0, 1.0, 2.5]
    # foreground voxels have intensity 100, 101, 102 (one value per case)
    assert fp["intensity"]["0"]["mean"] == pytest.approx(101.0)
    assert fp["intensity"]["0"]["min"] == 100.0 and fp["intensity"]["0"]["max"] == 102.0
    assert fp["class_fraction"]["x"] == pytest.approx(4 * 4 * 2 / (16 * 16 * 8))
    assert choose_dims(fp) == 3


def test_plans_are_cached_and_give_a_valid_baseline(tmp_path: Path, phantom: Path) -> None:
    plans = load_or_make_plans(phantom)
    assert plans["default"] == "2d" and (phantom / "medloop_plans.json").is_file()
    assert load_or_make_plans(phantom) == plans
    base = plan_baseline(phantom)
    cfg = SegConfig.model_validate(base)  # every planned value is a valid trial config
    assert cfg.model == "dynunet" and cfg.spatial_dims == 2 and cfg.patch_size == "64x64"
    assert cfg.batch_size >= 2 and cfg.optimizer == "sgd" and cfg.lr == 0.01

    ds = _tiny_3d(tmp_path / "big", 4, (160, 160, 96), (0.8, 0.8, 1.0))
    small = load_or_make_plans(ds, memory_mb=200.0)["configurations"]["3d_fullres"]
    large = load_or_make_plans(ds, memory_mb=8000.0)["configurations"]["3d_fullres"]
    assert small["estimated_memory_mb"] <= 200.0 < large["estimated_memory_mb"]
    assert np.prod(small["patch_size"]) < np.prod(large["patch_size"])
    # the planned patch already fits DynUNet's strides: the job will not pad it
    from medloop.experiments.segmentation.networks import patch_divisor

    cfg3 = SegConfig.model_validate(plan_baseline(ds, memory_mb=200.0))
    assert cfg3.spatial_dims == 3 and cfg3.patch_size == "x".join(map(str, small["patch_size"]))
    divisor = patch_divisor(cfg3, small["patch_size"], small["target_spacing"])
    assert all(p % d == 0 for p, d in zip(small["patch_size"], divisor, strict=True))
