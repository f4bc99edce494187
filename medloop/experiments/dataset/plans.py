"""nnU-Net v2's experiment planning ("plans"), torch-free.

The fingerprint (fingerprint.py: shapes after cropping to the non-zero region, spacings,
foreground intensities) goes through the rules of nnU-Net v2's default `ExperimentPlanner`,
re-implemented here from its published algorithm:
- target spacing = the median spacing, except that an axis more than 3x coarser than the
  others whose median size is under a third of theirs gets the 10th percentile of its
  spacings (never finer than the other axes);
- axes are planned in nnU-Net's order (its SimpleITK (z, y, x) order, the coarsest axis
  moved first) and mapped back to medloop's (x, y, z);
- the patch starts from a 256^3 (2D: 2048^2) box shaped like the voxel aspect ratio,
  clipped to the median resampled shape; the pooling topology halves an axis while it
  has >= 8 voxels and its spacing is within 2x of the finest; the patch is rounded *up*
  to a multiple of 2^pools per axis (84.5 voxels with 4 pools -> 96);
- memory is nnU-Net's feature-map count of its plain U-Net (2 convs per stage, features
  32 doubling to 320 in 3D / 512 in 2D) against its reference (560e6 voxels = 8 GB at
  batch 2 in 3D; 85e6 at batch 12 in 2D); while over budget the axis largest relative to
  the median shape is cut by one divisor step;
- batch = the reference headroom, at most 5% of the dataset's voxels, at least 2.
2D plans use medloop's in-plane axes (x, y), which is nnU-Net's 2D plane when the
through-plane axis is the coarsest one.

`plan_baseline(path)` returns the SegConfig fields of the planned baseline; the plans are
cached as `medloop_plans.json` next to the dataset (not part of its checksum).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.fingerprint import compute_fingerprint
from medloop.experiments.dataset.nnunet import dataset_checksum

__all__ = ["compute_fingerprint"]

PLANS_FILE = "medloop_plans.json"
PLANS_VERSION = 2
DEFAULT_MEMORY_MB = 8000.0  # nnU-Net plans for about 8 GB of GPU memory
ANISO_THRESHOLD = 3.0
_MIN_EDGE = 4  # smallest bottleneck feature-map edge
_BASE_FEATURES = 32
_MAX_FEATURES = {2: 512, 3: 320}
_CONVS_PER_STAGE = 2
_REF_VOXELS = {2: 85_000_000, 3: 560_000_000}  # feature-map voxels of the reference U-Net at 8 GB
_REF_BATCH = {2: 12, 3: 2}
_REF_MB = 8000.0
_MIN_BATCH = 2
_MAX_DATASET_COVERED = 0.05
_INITIAL_EDGE = {2: 2048, 3: 256}


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """Median spacing per axis; the coarsest axis, when > 3x coarser than every other and
    its median size is under a third of the smallest other, gets its 10th percentile
    spacing instead, raised to just above the other axes' if it would be finer."""
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=float)
    target = np.percentile(spacings, 50, axis=0)
    sizes = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return [float(v) for v in target]
    other_spacing = max(float(target[a]) for a in others)
    aniso_spacing = target[worst] > ANISO_THRESHOLD * other_spacing
    aniso_voxels = sizes[worst] * ANISO_THRESHOLD < min(sizes[a] for a in others)
    if aniso_spacing and aniso_voxels:
        tenth = float(np.percentile(spacings[:, worst], 10))
        target[worst] = tenth if tenth >= other_spacing else other_spacing + 1e-5
    return [float(v) for v in target]


def pool_topology(
    spacing: Sequence[float], patch: Sequence[float]
) -> tuple[list[int], list[list[int]], list[list[int]], list[int]]:
    """nnU-Net's pooling rule for a patch at a spacing: per stage, halve every axis that
    still has >= 8 voxels and whose spacing is within 2x of the finest such axis (a lone
    axis needs >= 12); an axis gets 3-voxel kernels once its spacing is within 2x of the
    finest. Returns (pools per axis, strides per stage, kernels per stage, the patch
    rounded up to a multiple of 2^pools per axis)."""
    dims = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(p) for p in patch]
    pools = [0] * dims
    kernel = [1] * dims
    strides: list[list[int]] = [[1] * dims]
    kernels: list[list[int]] = []
    while True:
        axes = [a for a in range(dims) if cur_size[a] >= 2 * _MIN_EDGE]
        if not axes:
            break
        finest = min(cur_spacing[a] for a in axes)
        axes = [a for a in axes if cur_spacing[a] / finest < 2]
        if len(axes) == 1 and cur_size[axes[0]] < 3 * _MIN_EDGE:
            break
        overall = min(cur_spacing)
        kernel = [3 if k == 3 or cur_spacing[a] / overall < 2 else 1 for a, k in enumerate(kernel)]
        stride = [2 if a in axes else 1 for a in range(dims)]
        for a in axes:
            pools[a] += 1
            cur_spacing[a] *= 2
            cur_size[a] = math.ceil(cur_size[a] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dims)  # the bottleneck
    rounded = []
    for p, n in zip(patch, pools, strict=True):
        div = 2**n
        rounded.append(int(p if p % div == 0 else p + div - p % div))
    return pools, strides, kernels, rounded


def feature_map_voxels(
    patch: list[int], strides: list[list[int]], features: list[int], n_classes: int
) -> int:
    """Output voxels x channels of every convolution of nnU-Net's plain U-Net on `patch`
    (encoder: 2 convs per stage; decoder: a transposed conv and 2 convs per stage; one
    segmentation head): nnU-Net's proxy for training memory."""
    sizes = []
    size = list(patch)
    for stride in strides:
        size = [s // st for s, st in zip(size, stride, strict=True)]
        sizes.append(size)
    total = sum(_CONVS_PER_STAGE * f * math.prod(sz) for f, sz in zip(features, sizes, strict=True))
    for level in range(len(strides) - 1):
        total += (_CONVS_PER_STAGE + 1) * features[level] * math.prod(sizes[level])
    return int(total + n_classes * math.prod(sizes[0]))


def _plan_axes(
    spacing: list[float], median: list[float], n_voxels_dataset: float, n_classes: int, memory_mb: float
) -> dict[str, Any]:
    """nnU-Net's get_plans_for_configuration, in nnU-Net's axis order."""
    dims = len(spacing)
    inv = 1.0 / np.asarray(spacing, dtype=float)
    scale = (_INITIAL_EDGE[dims] ** dims / float(np.prod(inv))) ** (1.0 / dims)
    initial = [min(float(round(float(v) * scale)), float(m)) for v, m in zip(inv, median, strict=True)]
    pools, strides, kernels, patch = pool_topology(spacing, initial)

    def features(n_stages: int) -> list[int]:
        return [min(_MAX_FEATURES[dims], _BASE_FEATURES * 2**i) for i in range(n_stages)]

    estimate = feature_map_voxels(patch, strides, features(len(strides)), n_classes)
    reference = _REF_VOXELS[dims] * memory_mb / _REF_MB
    ref_batch = _REF_BATCH[dims]
    while estimate / ref_batch * _MIN_BATCH > reference:
        axis = int(np.argsort([p / m for p, m in zip(patch, median, strict=True)])[-1])
        trial = list(patch)
        trial[axis] -= 2 ** pools[axis]
        step = 2 ** pool_topology(spacing, trial)[0][axis]
        patch = list(patch)
        patch[axis] -= step
        pools, strides, kernels, patch = pool_topology(spacing, patch)
        estimate = feature_map_voxels(patch, strides, features(len(strides)), n_classes)
    batch = round(reference / estimate * ref_batch)
    covered = round(n_voxels_dataset * _MAX_DATASET_COVERED / float(np.prod(patch, dtype=np.float64)))
    batch = max(min(batch, covered), _MIN_BATCH)
    return {
        "patch": patch,
        "batch": int(batch),
        "strides": strides,
        "kernels": kernels,
        "features": features(len(strides)),
        "memory_mb": estimate * batch / ref_batch * _REF_MB / _REF_VOXELS[dims],
    }


def nnunet_axis_order(spacing: list[float]) -> list[int]:
    """medloop axes in nnU-Net's planning order: its SimpleITK (z, y, x) order with the
    coarsest axis (the first of equals) moved to the front."""
    sitk = list(range(len(spacing)))[::-1]
    first = int(np.argmax([spacing[a] for a in sitk]))
    return [sitk[first]] + [a for i, a in enumerate(sitk) if i != first]


def plan_configuration(fp: dict[str, Any], dims: int, memory_mb: float) -> dict[str, Any]:
    """Patch, batch, features and topology of a 2D or 3D configuration of this
    fingerprint, in medloop's axis order."""
    shapes = np.asarray(fp["shapes"], dtype=float)
    spacings = np.asarray(fp["spacings"], dtype=float)
    full = target_spacing(spacings, shapes)
    new_shapes = [
        [round(float(sp) / float(t) * float(sh)) for sp, t, sh in zip(sps, full, shp, strict=True)]
        for sps, shp in zip(spacings, shapes, strict=True)
    ]
    median = [float(v) for v in np.median(np.asarray(new_shapes, dtype=float), axis=0)]
    n_voxels = float(np.prod(median, dtype=np.float64)) * fp["n_cases"]
    order = nnunet_axis_order(full) if dims == 3 else [1, 0]
    n_classes = len(fp["labels"])
    plan = _plan_axes([full[a] for a in order], [median[a] for a in order], n_voxels, n_classes, memory_mb)

    def back(per_axis: list[Any]) -> list[Any]:
        out = [0] * dims
        for i, a in enumerate(order):
            out[a] = per_axis[i]
        return out

    cap = _MAX_FEATURES[dims]
    return {
        "spatial_dims": dims,
        "patch_size": back(plan["patch"]),
        "batch_size": plan["batch"],
        "base_features": _BASE_FEATURES,
        "depth": len(plan["strides"]),
        "feature_cap": cap,
        "features_per_stage": plan["features"],
        "strides": [back(s) for s in plan["strides"]],
        "kernel_sizes": [back(k) for k in plan["kernels"]],
        "target_spacing": full[:dims],
        "median_resampled_shape": median[:dims],
        "nnunet_axis_order": order,
        "estimated_memory_mb": round(plan["memory_mb"], 1),
    }


def normalization_plan(fp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per channel: "ct" (clip to the foreground 0.5/99.5 percentiles, z-score with the
    dataset's foreground mean/std) for a channel named CT, else "zscore" per image; the
    z-score uses the non-zero mask when cropping removed over a quarter of the volume."""
    use_mask = fp.get("median_relative_size_after_cropping", 1.0) < 0.75
    out = {}
    for c, info in fp["intensity"].items():
        ct = info["name"].strip().lower() == "ct"
        out[c] = {"scheme": "ct" if ct else "zscore", "use_mask_for_norm": bool(use_mask and not ct)}
    return out


def choose_dims(fp: dict[str, Any]) -> int:
    """2D for single-slice data, or when the through-plane spacing is > 3x the in-plane one
    and fewer than 16 slices remain; otherwise 3D (nnU-Net would cross-validate both)."""
    shape = fp["median_shape"]
    spacing = fp["median_spacing"]
    if min(shape) <= 1:
        return 2
    if spacing[2] > 3 * max(spacing[0], spacing[1]) and shape[2] < 16:
        return 2
    return 3


def make_plans(path: Path, *, memory_mb: float = DEFAULT_MEMORY_MB) -> dict[str, Any]:
    fp = compute_fingerprint(path)
    dims = choose_dims(fp)
    configs = {"2d": plan_configuration(fp, 2, memory_mb)}
    if min(fp["median_shape"]) > 1:
        configs["3d_fullres"] = plan_configuration(fp, 3, memory_mb)
    chosen = "2d" if dims == 2 else "3d_fullres"
    return {
        "version": PLANS_VERSION,
        "checksum": fp["checksum"],
        "memory_budget_mb": memory_mb,
        "fingerprint": fp,
        "configurations": configs,
        "default": chosen,
        "normalization": {c: v["scheme"] for c, v in normalization_plan(fp).items()},
        "use_mask_for_norm": {c: v["use_mask_for_norm"] for c, v in normalization_plan(fp).items()},
    }


def load_or_make_plans(
    path: Path, *, memory_mb: float = DEFAULT_MEMORY_MB, save: bool = True
) -> dict[str, Any]:
    """The cached plans if they match the dataset's checksum and budget, else fresh ones
    (saved atomically next to the dataset when it is writable)."""
    root = Path(path)
    plans_path = root / PLANS_FILE
    checksum = dataset_checksum(root)
    if plans_path.is_file():
        try:
            cached = json.loads(plans_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            cached = None
        if (
            isinstance(cached, dict)
            and cached.get("version") == PLANS_VERSION
            and cached.get("checksum") == checksum
            and cached.get("memory_budget_mb") == memory_mb
        ):
            return cached
    plans = make_plans(root, memory_mb=memory_mb)
    if save:
        write_json_atomic(plans_path, plans)
    return plans


def write_json_atomic(path: Path, data: Any) -> bool:
    """Write JSON via a temp file and rename; False (nothing written) if the folder is read-only."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    except OSError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    Path(tmp).replace(path)
    return True


def plan_baseline(path: Path, *, memory_mb: float = DEFAULT_MEMORY_MB) -> dict[str, str | int | float | bool]:
    """The nnU-Net-like baseline for this dataset as SegConfig fields: DynUNet with deep
    supervision, Dice+CE, SGD (lr 0.01, Nesterov 0.99, poly), nnU-Net augmentation, and the
    planned patch, batch, depth and target spacing."""
    plans = load_or_make_plans(path, memory_mb=memory_mb)
    cfg = plans["configurations"][plans["default"]]
    if not cfg["patch_size"]:
        raise DatasetError(f"{path}: planning produced no patch size")
    return {
        "model": "dynunet",
        "spatial_dims": int(cfg["spatial_dims"]),
        "base_features": int(cfg["base_features"]),
        "depth": int(cfg["depth"]),
        "patch_size": "x".join(str(int(p)) for p in cfg["patch_size"]),
        "batch_size": int(cfg["batch_size"]),
        "target_spacing": "x".join(f"{float(s):g}" for s in cfg["target_spacing"]),
        "loss": "dicece",
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.99,
        "weight_decay": 3e-5,
        "schedule": "poly",
        "augmentation": "nnunet",
        "epoch_iterations": 250,
    }
