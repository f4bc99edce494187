"""`medloop dataset fingerprint` against nnU-Net v2's own fingerprint extractor and
ExperimentPlanner, field by field, on a generated dataset that exercises every rule:
zero borders to crop, a coarse through-plane axis with few slices (10th-percentile target
spacing), per-case spacings, two channels (CT and MR normalisation), two classes.

nnU-Net runs in-process (the `nnunet` extra); without it the test skips, unless CI lists
`nnunet` in MEDLOOP_REQUIRE. nnU-Net works in SimpleITK's (z, y, x) order and moves the
coarsest axis first (`transpose_forward`); medloop keeps (x, y, z), so nnU-Net's axis i is
medloop's axis 2 - i before the transposition.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medloop.experiments.dataset.imageio import save_nifti
from tests.conftest import require

NAME = "Dataset987_Parity"


def _dataset(root: Path, n: int = 6, seed: int = 3) -> Path:
    """Cases of ~100x110x26 voxels at ~0.9 mm in-plane and 3-4 mm slices, the anatomy in a
    box with a zero border of varying width, labels 1 and 2 inside it."""
    rng = np.random.default_rng(seed)
    ds = root / NAME
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    for i in range(n):
        shape = (int(rng.integers(96, 108)), int(rng.integers(104, 116)), int(rng.integers(22, 30)))
        spacing = (
            float(rng.uniform(0.8, 1.0)),
            float(rng.uniform(0.8, 1.0)),
            float(rng.choice([3.0, 3.5, 4.0])),
        )
        lo = [int(rng.integers(2, 12)), int(rng.integers(2, 12)), int(rng.integers(1, 4))]
        hi = [s - int(rng.integers(2, 10)) for s in shape]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        ct = np.zeros(shape, np.float32)
        mr = np.zeros(shape, np.float32)
        ct[box] = rng.normal(40.0, 120.0, ct[box].shape).astype(np.float32)
        mr[box] = rng.gamma(2.0, 150.0, mr[box].shape).astype(np.float32) + 1.0
        label = np.zeros(shape, np.uint8)
        c = [(a + b) // 2 for a, b in zip(lo, hi, strict=True)]
        label[c[0] - 8 : c[0] + 6, c[1] - 7 : c[1] + 7, c[2] - 3 : c[2] + 3] = 1
        label[c[0] + 6 : c[0] + 12, c[1] - 4 : c[1] + 5, c[2] - 2 : c[2] + 2] = 2
        ct[label == 2] += 300.0  # a brighter class, so the foreground is a mixture
        for k, array in enumerate((ct, mr)):
            save_nifti(array, ds / "imagesTr" / f"case{i:02d}_{k:04d}.nii.gz", spacing=spacing)
        save_nifti(label, ds / "labelsTr" / f"case{i:02d}.nii.gz", spacing=spacing)
    meta = {
        "channel_names": {"0": "CT", "1": "T2"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (ds / "dataset.json").write_text(json.dumps(meta))
    return ds


def _run_nnunet(
    raw: Path, pre: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """nnU-Net v2's fingerprint and default plans of the dataset, computed in-process."""
    for key, value in (
        ("nnUNet_raw", raw),
        ("nnUNet_preprocessed", pre),
        ("nnUNet_results", pre.parent / "res"),
    ):
        monkeypatch.setenv(key, str(value))
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor as fe
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as ep

    for module in (fe, ep):  # they copied nnunetv2.paths' values at import time
        monkeypatch.setattr(module, "nnUNet_raw", str(raw))
        monkeypatch.setattr(module, "nnUNet_preprocessed", str(pre))
    extractor = fe.DatasetFingerprintExtractor(NAME, num_processes=1)
    extractor.show_progress_bar = False
    # nnU-Net samples 1e8 / n foreground voxels per case with replacement; 2e6 keeps the
    # test small and still draws every foreground voxel of these cases (~3k) many times.
    extractor.num_foreground_voxels_for_intensitystats = 2e6
    fingerprint = extractor.run(overwrite_existing=True)
    plans = ep.ExperimentPlanner(NAME, gpu_memory_target_in_gb=8).plan_experiment()
    return json.loads(json.dumps(fingerprint, default=float)), plans


def test_fingerprint_and_plans_match_nnunet_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require("nnunet", importlib.util.find_spec("nnunetv2") is not None, "pip install 'medloop[nnunet]'")
    raw = tmp_path / "raw"
    ds = _dataset(raw)
    proc = subprocess.run(
        [sys.executable, "-m", "medloop", "dataset", "fingerprint", str(ds), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    saved = json.loads(Path(out["plans_file"]).read_text())
    fp = saved["fingerprint"]
    nn_fp, nn_plans = _run_nnunet(raw, tmp_path / "preprocessed", monkeypatch)

    # geometry: per case, nnU-Net's (z, y, x) is medloop's (x, y, z) reversed
    np.testing.assert_allclose([s[::-1] for s in nn_fp["spacings"]], fp["spacings"], atol=1e-5)
    assert [list(s)[::-1] for s in nn_fp["shapes_after_crop"]] == fp["shapes"]
    assert fp["shapes"] != fp["shapes_before_crop"]  # the border really was cropped
    assert nn_fp["median_relative_size_after_cropping"] == pytest.approx(
        fp["median_relative_size_after_cropping"]
    )
    assert out["fingerprint"]["median_shape"] == [float(v) for v in np.median(fp["shapes"], axis=0)]

    # foreground intensities: nnU-Net's values come from its sample, ours from all voxels
    for c in ("0", "1"):
        theirs, ours = nn_fp["foreground_intensity_properties_per_channel"][c], fp["intensity"][c]
        assert ours["min"] == theirs["min"] and ours["max"] == theirs["max"]
        sd = ours["std"]
        assert ours["std"] == pytest.approx(theirs["std"], rel=0.01)
        assert ours["mean"] == pytest.approx(theirs["mean"], abs=0.01 * sd)
        for key in ("median", "percentile_00_5", "percentile_99_5"):
            assert ours[key] == pytest.approx(theirs[key], abs=0.03 * sd), key
        assert ours["percentiles_from"] == "all foreground voxels"

    # plans: map nnU-Net's transposed axes back to medloop's
    forward = nn_plans["transpose_forward"]
    axes3 = [2 - a for a in forward]  # medloop axis of nnU-Net's transposed axis i
    configs = saved["configurations"]
    for name, axes in (("3d_fullres", axes3), ("2d", axes3[1:])):
        theirs, ours = nn_plans["configurations"][name], configs[name]
        arch = theirs["architecture"]["arch_kwargs"]

        def ours_in_their_order(values: list[Any], axes: list[int] = axes) -> list[Any]:
            return [values[a] for a in axes]

        assert ours_in_their_order(ours["patch_size"]) == list(theirs["patch_size"]), name
        assert ours["batch_size"] == theirs["batch_size"], name
        assert ours_in_their_order(ours["target_spacing"]) == pytest.approx(list(theirs["spacing"])), name
        assert ours_in_their_order(ours["median_resampled_shape"]) == pytest.approx(
            list(theirs["median_image_size_in_voxels"])
        ), name
        assert ours["depth"] == arch["n_stages"], name
        assert ours["features_per_stage"] == list(arch["features_per_stage"]), name
        assert [ours_in_their_order(s) for s in ours["strides"]] == [list(s) for s in arch["strides"]], name
        assert [ours_in_their_order(k) for k in ours["kernel_sizes"]] == [
            list(k) for k in arch["kernel_sizes"]
        ]
        schemes = {"CTNormalization": "ct", "ZScoreNormalization": "zscore"}
        assert [saved["normalization"][c] for c in ("0", "1")] == [
            schemes[s] for s in theirs["normalization_schemes"]
        ]
        assert [saved["use_mask_for_norm"][c] for c in ("0", "1")] == list(theirs["use_mask_for_norm"])
