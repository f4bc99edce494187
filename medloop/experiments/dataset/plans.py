"""nnU-Net-style fingerprint and auto-configuration ("plans"), torch-free.

The fingerprint holds per-case geometry, per-channel foreground intensity statistics and
class sizes. The plans apply nnU-Net's rules to it: target spacing = the median spacing,
except that an axis more than 3x coarser than the finest (with few voxels along it) gets
the 10th percentile of its spacings; a patch that starts from the median resampled shape
and shrinks until a memory estimate fits the budget; batch size >= 2 and at most 5% of
the dataset's voxels per batch; feature maps from 32, capped at 320 (3D) / 512 (2D); 2D
for single-slice data or strongly anisotropic volumes, else 3D.

`plan_baseline(path)` returns the SegConfig fields of the planned baseline; the plans are
cached as `medloop_plans.json` next to the dataset (not part of its checksum).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import read_header, read_volume
from medloop.experiments.dataset.nnunet import dataset_checksum, read_dataset

PLANS_FILE = "medloop_plans.json"
PLANS_VERSION = 1
DEFAULT_MEMORY_MB = 8000.0  # nnU-Net plans for about 8 GB of GPU memory
_MAX_INTENSITY_CASES = 60
_VOXELS_PER_CASE = 10_000
_BYTES_PER_ACTIVATION = 4 * 6  # fp32 activations, kept ~6x over (conv, norm, act, grads)


def compute_fingerprint(path: Path) -> dict[str, Any]:
    """Geometry of every training case (from headers), foreground intensity statistics
    per channel and foreground voxel fractions per class (from up to 60 cases)."""
    ds = read_dataset(path)
    shapes, spacings = [], []
    for case in ds.training:
        shape, spacing, _ = read_header(case.images[0])
        shapes.append([*shape, 1, 1, 1][:3])
        spacings.append([round(float(s), 6) for s in [*spacing, 1.0, 1.0, 1.0][:3]])
    step = max(1, math.ceil(len(ds.training) / _MAX_INTENSITY_CASES))
    rng = np.random.default_rng(1234)
    fg: dict[int, list[np.ndarray]] = {c: [] for c in range(ds.n_channels)}
    class_fraction: dict[str, list[float]] = {name: [] for name in ds.foreground}
    for case in ds.training[::step]:
        assert case.label is not None
        label = np.rint(read_volume(case.label).array).astype(np.int32)
        mask = label > 0
        for name, value in ds.foreground.items():
            class_fraction[name].append(float((label == value).mean()))
        for c, image_path in enumerate(case.images):
            values = read_volume(image_path).array[mask] if mask.any() else np.zeros(0, np.float32)
            if values.size > _VOXELS_PER_CASE:
                values = rng.choice(values, _VOXELS_PER_CASE, replace=False)
            fg[c].append(values)
    intensity = {}
    for c, chunks in fg.items():
        values = np.concatenate(chunks) if chunks else np.zeros(0)
        if values.size == 0:
            values = np.zeros(1)
        intensity[str(c)] = {
            "name": ds.channel_names[str(c)],
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "percentile_00_5": float(np.percentile(values, 0.5)),
            "percentile_99_5": float(np.percentile(values, 99.5)),
        }
    return {
        "dataset": ds.name,
        "checksum": dataset_checksum(ds.root),
        "n_cases": len(ds.training),
        "n_test_cases": len(ds.test),
        "channels": ds.channel_names,
        "labels": ds.labels,
        "sites": sorted(set(ds.sites.values())),
        "shapes": shapes,
        "spacings": spacings,
        "median_shape": [float(v) for v in np.median(np.asarray(shapes, float), axis=0)],
        "median_spacing": [float(v) for v in np.median(np.asarray(spacings, float), axis=0)],
        "intensity": intensity,
        "class_fraction": {k: float(np.mean(v)) if v else 0.0 for k, v in class_fraction.items()},
    }


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """Median spacing per axis; an axis > 3x coarser than the finest other axis, whose
    median size is under a third of the smallest other, gets its 10th percentile spacing
    instead (never finer than the other axes)."""
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=float)
    target = np.median(spacings, axis=0)
    sizes = np.median(shapes, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return [float(v) for v in target]
    aniso_spacing = target[worst] > 3 * min(target[a] for a in others)
    aniso_voxels = sizes[worst] * 3 < min(sizes[a] for a in others)
    if aniso_spacing and aniso_voxels:
        tenth = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(tenth, max(target[a] for a in others) + 1e-5)
    return [float(v) for v in target]


def estimate_memory_mb(patch: list[int], base_features: int, levels: int, batch: int, cap: int) -> float:
    """Activation memory of a U-Net on `patch`: two convolutions per level and side, the
    features doubling and the voxels halving (per axis > 4) at each level."""
    total = 0.0
    size = [float(p) for p in patch]
    for level in range(levels):
        feats = min(base_features * 2**level, cap)
        total += 4 * feats * math.prod(size)  # 2 convs encoder + 2 decoder
        size = [s / 2 if s >= 8 else s for s in size]
    return batch * total * _BYTES_PER_ACTIVATION / 2**20


def _levels(patch: list[int], max_levels: int) -> int:
    """Resolution levels until every axis would fall below 4 voxels (nnU-Net's minimum)."""
    per_axis = [max(1, math.floor(math.log2(max(p, 4) / 4)) + 1) for p in patch]
    return min(max(per_axis), max_levels)


def _round_patch(patch: list[float], levels: int) -> list[int]:
    out = []
    for p in patch:
        div = 2 ** max(0, min(levels - 1, math.floor(math.log2(max(p, 4) / 4))))
        out.append(max(div, round(p / div) * div))
    return out


def plan_configuration(fp: dict[str, Any], dims: int, memory_mb: float) -> dict[str, Any]:
    """Patch, batch, features and depth for a 2D or 3D configuration of this fingerprint."""
    shapes = np.asarray(fp["shapes"], dtype=float)
    spacings = np.asarray(fp["spacings"], dtype=float)
    spacing = target_spacing(
        spacings[:, :dims] if dims == 2 else spacings, shapes[:, :dims] if dims == 2 else shapes
    )
    resampled = np.median(shapes[:, :dims] * spacings[:, :dims] / np.asarray(spacing[:dims]), axis=0)
    cap = 320 if dims == 3 else 512
    base = 32
    max_levels = 6 if dims == 3 else 7
    patch = [float(min(s, 256 if dims == 3 else 512)) for s in resampled]
    levels = _levels([int(p) for p in patch], max_levels)
    rounded = _round_patch(patch, levels)
    while estimate_memory_mb(rounded, base, levels, 2, cap) > memory_mb:
        # shrink the axis that is largest relative to the median shape, by 10%
        ratios = [p / max(r, 1.0) for p, r in zip(patch, resampled, strict=True)]
        axis = int(np.argmax([r if p > 8 else -1 for r, p in zip(ratios, patch, strict=True)]))
        if patch[axis] <= 8:
            break
        patch[axis] = max(8.0, patch[axis] * 0.9)
        levels = _levels([int(p) for p in patch], max_levels)
        rounded = _round_patch(patch, levels)
    per_sample = estimate_memory_mb(rounded, base, levels, 1, cap)
    batch = max(2, int(memory_mb // max(per_sample, 1e-6)))
    dataset_voxels = float(
        np.sum(np.prod(shapes[:, :dims] * spacings[:, :dims] / np.asarray(spacing[:dims]), axis=1))
    )
    if dims == 2:
        dataset_voxels *= float(np.median(shapes[:, 2]))  # every slice is a sample
    batch_cap = max(2, int(0.05 * dataset_voxels / math.prod(rounded)))
    batch = max(2, min(batch, batch_cap, 64))
    return {
        "spatial_dims": dims,
        "patch_size": rounded,
        "batch_size": batch,
        "base_features": base,
        "depth": levels,
        "feature_cap": cap,
        "target_spacing": spacing[:dims] if dims == 2 else spacing,
        "median_resampled_shape": [float(v) for v in resampled],
        "estimated_memory_mb": round(estimate_memory_mb(rounded, base, levels, batch, cap), 1),
    }


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
        "normalization": {
            c: ("ct" if info["name"].strip().lower() == "ct" else "zscore")
            for c, info in fp["intensity"].items()
        },
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
