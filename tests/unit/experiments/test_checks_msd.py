"""`dataset check` on planted defects, its speed on good data, and MSD conversion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import DatasetError
from medloop.experiments.dataset import read_dataset, read_volume, synth_phantom
from medloop.experiments.dataset.checks import check_dataset
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.msd import convert_msd


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_phantom(tmp_path_factory.mktemp("data") / "Dataset900_Tiny", cases=12, seed=3, test_cases=3)


def _plant_defects(ds: Path) -> dict[str, tuple[str, str]]:
    """Break a copy of the phantom in known ways: code -> (case, what)."""
    tr, lab = ds / "imagesTr", ds / "labelsTr"
    (lab / "phantom_001.nii.gz").unlink()
    (tr / "phantom_002_0000.nii.gz").rename(tr / "phantom_002_0001.nii.gz")
    ref = read_volume(lab / "phantom_003.nii.gz")
    bad = ref.array.copy()
    bad[0, 0, 0] = 7
    save_nifti(bad.astype(np.uint8), lab / "phantom_003.nii.gz", spacing=ref.spacing, affine=ref.affine)
    img = read_volume(tr / "phantom_004_0000.nii.gz")
    nan = img.array.copy()
    nan[5, 5, 0] = np.nan
    save_nifti(nan, tr / "phantom_004_0000.nii.gz", spacing=img.spacing, affine=img.affine)
    lab5 = read_volume(lab / "phantom_005.nii.gz")
    save_nifti(lab5.array.astype(np.uint8), lab / "phantom_005.nii.gz", spacing=(2.0, 2.0, 5.0))
    lab6 = read_volume(lab / "phantom_006.nii.gz")
    save_nifti(lab6.array[:60].astype(np.uint8), lab / "phantom_006.nii.gz", spacing=lab6.spacing)
    lab7 = read_volume(lab / "phantom_007.nii.gz")
    save_nifti(
        np.zeros_like(lab7.array, np.uint8),
        lab / "phantom_007.nii.gz",
        spacing=lab7.spacing,
        affine=lab7.affine,
    )
    shutil.copy(tr / "phantom_008_0000.nii.gz", ds / "imagesTs" / "phantom_008_0000.nii.gz")
    (tr / "phantom_009_0000.nii.gz").write_bytes(b"\x1f\x8b garbage")
    shifted = lab6.affine.copy()
    img10 = read_volume(tr / "phantom_010_0000.nii.gz")
    shifted = img10.affine.copy()
    shifted[0, 3] += 5.0
    save_nifti(
        read_volume(lab / "phantom_010.nii.gz").array.astype(np.uint8),
        lab / "phantom_010.nii.gz",
        spacing=img10.spacing,
        affine=shifted,
    )
    return {
        "missing_label": ("phantom_001", "labelsTr/phantom_001"),
        "missing_channel": ("phantom_002", "phantom_002_0000"),
        "extra_channel": ("phantom_002", "channel 0001"),
        "label_values": ("phantom_003", "[7]"),
        "nan_inf": ("phantom_004", "1 NaN/Inf"),
        "geometry_spacing": ("phantom_005", "spacing"),
        "geometry_shape": ("phantom_006", "shape"),
        "empty_label": ("phantom_007", "no foreground"),
        "duplicate_case": ("phantom_008", "imagesTr and imagesTs"),
        "unreadable": ("phantom_009", "unreadable"),
        "geometry_origin": ("phantom_010", "origin"),
    }


def test_check_lists_every_planted_defect_with_its_case(tmp_path: Path, phantom: Path) -> None:
    ds = tmp_path / phantom.name
    shutil.copytree(phantom, ds)
    planted = _plant_defects(ds)
    report = check_dataset(ds)
    assert not report.ok
    found = {(p.code, p.case) for p in report.problems}
    for code, (case, text) in planted.items():
        assert (code, case) in found, f"{code} for {case} not reported: {[p.line() for p in report.problems]}"
        line = next(p.line() for p in report.problems if p.code == code and p.case == case)
        assert case in line and text in line
    assert next(p for p in report.problems if p.code == "empty_label").severity == "warning"
    # nothing reported for the untouched cases
    assert not {p.case for p in report.problems} & {"phantom_000", "phantom_011"}

    proc = subprocess.run(
        [sys.executable, "-m", "medloop", "dataset", "check", str(ds), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["n_errors"] == len(report.errors)


def test_check_flags_dataset_json_problems(tmp_path: Path, phantom: Path) -> None:
    ds = tmp_path / phantom.name
    shutil.copytree(phantom, ds)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "liver": 1, "spleen": 2, "kidney": 5}
    meta["numTraining"] = 99
    (ds / "dataset.json").write_text(json.dumps(meta))
    (ds / "sites.json").write_text(json.dumps({"phantom_000": "a", "ghost": "b"}))
    codes = {p.code for p in check_dataset(ds).problems}
    assert {
        "labels_not_consecutive",
        "num_training",
        "label_values",
        "sites_unknown_case",
        "sites_missing",
    } <= codes
    (ds / "dataset.json").write_text('{"channel_names": {"0": "CT"}, "channel_names": {"0": "MR"}}')
    report = check_dataset(ds)
    assert [p.code for p in report.problems] == ["dataset_json"] and "duplicate key" in report.problems[
        0
    ].message


def test_check_is_fast_and_clean_on_100_good_cases(tmp_path: Path) -> None:
    ds = synth_phantom(tmp_path / "Dataset950_Hundred", cases=100, seed=1, test_cases=10)
    cpu, wall = time.process_time(), time.perf_counter()
    report = check_dataset(ds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert report.ok and not report.problems, [p.line() for p in report.problems]
    assert report.n_training == 100
    # CPU seconds, so other work on a shared machine does not decide the test
    assert cpu < 5.0, f"check took {cpu:.2f} CPU s ({wall:.2f} s wall) for 110 cases"


def _msd(root: Path, n_channels: int) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    rng = np.random.default_rng(0)
    training = []
    for i in range(3):
        shape = (8, 9, 5, n_channels) if n_channels > 1 else (8, 9, 5)
        save_nifti(
            rng.normal(size=shape).astype(np.float32),
            root / "imagesTr" / f"BRATS_{i:03d}.nii.gz",
            spacing=(1.0, 1.0, 2.0),
        )
        label = np.zeros((8, 9, 5), np.uint8)
        label[2:4, 2:4, 1:3] = 1 + i % 2
        save_nifti(label, root / "labelsTr" / f"BRATS_{i:03d}.nii.gz", spacing=(1.0, 1.0, 2.0))
        training.append(
            {"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"}
        )
    shape = (8, 9, 5, n_channels) if n_channels > 1 else (8, 9, 5)
    save_nifti(np.ones(shape, np.float32), root / "imagesTs" / "BRATS_100.nii.gz", spacing=(1.0, 1.0, 2.0))
    meta = {
        "name": "BRATS",
        "modality": {str(c): name for c, name in enumerate(["FLAIR", "T1w", "t1gd", "T2w"][:n_channels])},
        "labels": {"0": "background", "1": "edema", "2": "tumour"},
        "numTraining": 3,
        "training": training,
        "test": ["./imagesTs/BRATS_100.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_convert_msd_splits_4d_into_channel_files(tmp_path: Path) -> None:
    src = _msd(tmp_path / "Task01_BrainTumour", 4)
    with pytest.raises(DatasetError, match="convert-msd"):
        read_dataset(src)
    dst = convert_msd(src, tmp_path / "Dataset001_BrainTumour")
    ds = read_dataset(dst)
    assert ds.channel_names == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert ds.labels == {"background": 0, "edema": 1, "tumour": 2}
    assert [c.id for c in ds.training] == ["BRATS_000", "BRATS_001", "BRATS_002"] and len(ds.test) == 1
    original = read_volume(src / "imagesTr" / "BRATS_001.nii.gz").array
    for c in range(4):
        channel = read_volume(ds.training[1].images[c])
        assert channel.shape == (8, 9, 5) and channel.spacing == (1.0, 1.0, 2.0)
        np.testing.assert_allclose(channel.array, original[..., c], rtol=1e-6)
    assert check_dataset(dst).ok
    with pytest.raises(DatasetError, match="not empty"):
        convert_msd(src, dst)


def test_convert_msd_reports_missing_files(tmp_path: Path) -> None:
    src = _msd(tmp_path / "Task02", 1)
    (src / "labelsTr" / "BRATS_002.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"BRATS_002\.nii\.gz does not exist"):
        convert_msd(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
