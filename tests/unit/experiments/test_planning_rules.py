"""nnU-Net v2 planning rules worked by hand (no nnU-Net needed): cropping to the non-zero
region before the median shape, extrema from every foreground voxel, patch rounding up to
the pooling divisor, and the feature-map memory proxy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medloop.experiments.dataset.fingerprint import compute_fingerprint, nonzero_bbox, weighted_percentiles
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.plans import feature_map_voxels, load_or_make_plans, pool_topology


def _brainlike(root: Path, boxes: list[tuple[int, int, int]], shape: tuple[int, int, int]) -> Path:
    """Cases of `shape` whose non-zero 'head' is a centred box of the given size."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, box in enumerate(boxes):
        image = np.zeros(shape, np.float32)
        lo = [(s - b) // 2 for s, b in zip(shape, box, strict=True)]
        sl = tuple(slice(a, a + b) for a, b in zip(lo, box, strict=True))
        image[sl] = 50.0 + i
        label = np.zeros(shape, np.uint8)
        label[sl] = 1
        if i == 0:
            image[lo[0], lo[1], lo[2]] = 9999.0  # one extreme foreground voxel among ~400k
        save_nifti(image, root / "imagesTr" / f"b{i}_0000.nii.gz", spacing=(1.0, 1.0, 1.0))
        save_nifti(label, root / "labelsTr" / f"b{i}.nii.gz", spacing=(1.0, 1.0, 1.0))
    meta = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "brain": 1}, "numTraining": len(boxes)}
    (root / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii.gz"}))
    return root


def test_median_shape_is_taken_after_cropping_to_the_head(tmp_path: Path) -> None:
    # stored volumes are 96^3; the heads are 70..82 voxels per axis
    ds = _brainlike(tmp_path / "Dataset901_Heads", [(70, 90, 74), (76, 94, 81), (82, 96, 88)], (96, 96, 96))
    fp = compute_fingerprint(ds)
    assert fp["median_shape"] == [76.0, 94.0, 81.0]  # the brain example
    assert fp["median_shape_before_crop"] == [96.0, 96.0, 96.0]
    assert fp["median_relative_size_after_cropping"] == pytest.approx(76 * 94 * 81 / 96**3)
    # min/max from every foreground voxel: the single 9999 voxel is found
    assert fp["intensity"]["0"]["max"] == 9999.0 and fp["intensity"]["0"]["min"] == 50.0
    assert fp["intensity"]["0"]["percentiles_from"] == "all foreground voxels"
    # each case weighs the same: the mean of the per-case means
    n0 = 70 * 90 * 74
    case0 = (50.0 * (n0 - 1) + 9999.0) / n0
    assert fp["intensity"]["0"]["mean"] == pytest.approx((case0 + 51.0 + 52.0) / 3)
    plans = load_or_make_plans(ds)
    assert plans["use_mask_for_norm"] == {"0": True}  # cropping removed over a quarter


def test_bbox_of_an_all_zero_image_is_the_whole_image() -> None:
    zero = np.zeros((4, 5, 6), np.float32)
    assert nonzero_bbox([zero]) == (slice(0, 4), slice(0, 5), slice(0, 6))
    one = zero.copy()
    one[1, 2, 3] = -1.0  # negative values are non-zero too
    other = zero.copy()
    other[3, 0, 5] = 2.0  # a second channel widens the box
    assert nonzero_bbox([one, other]) == (slice(1, 4), slice(0, 3), slice(3, 6))


def test_patch_is_rounded_up_to_the_pooling_divisor() -> None:
    # 84.5 voxels: pools at 84.5, 43, 22, 11 (>= 8), then 6 < 8 -> divisor 16 -> 96
    pools, strides, kernels, patch = pool_topology([1.0, 1.0, 1.0], [84.5, 84.5, 84.5])
    assert pools == [4, 4, 4] and patch == [96, 96, 96]
    assert len(strides) == 5 and strides[0] == [1, 1, 1] and kernels[-1] == [3, 3, 3]
    # a multiple already is kept; a coarse axis (3 mm vs 1 mm) is not pooled until the
    # others catch up, and keeps 1-voxel kernels meanwhile
    pools, strides, kernels, patch = pool_topology([3.0, 1.0, 1.0], [20, 160, 160])
    assert patch == [20 + 4 - 20 % 4 if 20 % 4 else 20, 160, 160]
    assert strides[1] == [1, 2, 2] and kernels[0] == [1, 3, 3]
    assert pools == [2, 5, 5]
    # a lone axis needs >= 12 voxels to be pooled
    assert pool_topology([1.0, 5.0], [10, 4])[0] == [0, 0]
    assert pool_topology([1.0, 5.0], [12, 4])[0] == [1, 0]


def test_feature_map_count_by_hand() -> None:
    # 2 stages on 8x8: encoder 2*32*64 + 2*64*16; decoder level 0: (2 convs + transposed) * 32*64;
    # head 3 classes * 64
    assert feature_map_voxels([8, 8], [[1, 1], [2, 2]], [32, 64], 3) == (
        2 * 32 * 64 + 2 * 64 * 16 + 3 * 32 * 64 + 3 * 64
    )


def test_weighted_percentiles_of_equal_weights_match_the_midpoint_rule() -> None:
    values = np.arange(10, dtype=np.float32)
    assert weighted_percentiles(values, np.ones(10), (50.0,)) == [4.5]
    # one case of 2 voxels and one of 8: each case has half the mass
    v = np.array([0.0, 0.0, *[10.0] * 8])
    w = np.array([0.25, 0.25, *[1 / 16] * 8])
    lo, hi = weighted_percentiles(v, w, (10.0, 90.0))
    assert lo == 0.0 and hi == 10.0
