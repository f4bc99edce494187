"""Dataset fingerprints, measured the way nnU-Net v2's fingerprint extractor measures them,
and the flat numbers the knowledge base compares datasets by.

Per training case: every channel is read, the case is cropped to the bounding box of the
voxels that are non-zero in any channel (nnU-Net's `crop_to_nonzero`; an all-zero image
is not cropped), and the cropped shape is what the median shape and the plans use.
Foreground intensities (label > 0 inside the crop) are summarised per channel with each
case weighted equally, which is what nnU-Net's equal-size per-case sample estimates:
mean and std exactly, min and max over *all* foreground voxels, percentiles from all
foreground voxels unless the dataset holds more than `_PERCENTILE_VOXELS` of them, in
which case each case contributes an equal-size seeded sample and the fingerprint says
so (`percentiles_from`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.experiments.dataset.imageio import read_volume
from medloop.experiments.dataset.nnunet import dataset_checksum, read_dataset

FINGERPRINT_VERSION = 2
_PERCENTILE_VOXELS = 20_000_000  # foreground voxels held in memory for percentiles (~80 MB)
_MIN_SAMPLE_PER_CASE = 10_000


def nonzero_bbox(channels: list[NDArray[Any]]) -> tuple[slice, ...]:
    """Half-open bounding box of the voxels that are non-zero in any channel; the whole
    array when every voxel is zero. (Filling holes, as nnU-Net does, never moves a box.)"""
    mask = np.zeros(channels[0].shape, dtype=bool)
    for array in channels:
        mask |= array != 0
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others)) if mask.ndim > 1 else np.flatnonzero(mask)
        box.append(slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else slice(0, mask.shape[axis]))
    return tuple(box)


def weighted_percentiles(
    values: NDArray[Any], weights: NDArray[Any], percentiles: tuple[float, ...]
) -> list[float]:
    """Percentiles of a weighted sample (each value at the midpoint of its weight's share
    of the cumulative distribution, linear in between)."""
    order = np.argsort(values, kind="stable")
    v = values[order].astype(np.float64)
    w = weights[order].astype(np.float64)
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return [float(np.interp(p / 100.0, cdf, v)) for p in percentiles]


class _ChannelStats:
    """Per-case moments, exact extrema and (sampled) values of one channel's foreground."""

    def __init__(self) -> None:
        self.means: list[float] = []
        self.second: list[float] = []  # per-case mean of squares
        self.lo = math.inf
        self.hi = -math.inf
        self.kept: list[NDArray[np.float32]] = []
        self.sampled = False

    def add(self, values: NDArray[Any], keep: int, rng: np.random.Generator) -> None:
        if values.size == 0:  # a case without foreground contributes nothing (as in nnU-Net)
            return
        v64 = values.astype(np.float64)
        self.means.append(float(v64.mean()))
        self.second.append(float(np.mean(v64 * v64)))
        self.lo = min(self.lo, float(v64.min()))
        self.hi = max(self.hi, float(v64.max()))
        if values.size > keep:
            values = rng.choice(values, keep, replace=False)
            self.sampled = True
        self.kept.append(values.astype(np.float32))

    def summary(self, name: str, keep: int) -> dict[str, Any]:
        if not self.means:
            zero = {
                k: 0.0 for k in ("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5")
            }
            return {"name": name, **zero, "n_cases": 0, "percentiles_from": "no foreground"}
        mean = float(np.mean(self.means))
        var = max(0.0, float(np.mean(self.second)) - mean * mean)
        values = np.concatenate(self.kept)
        weights = np.concatenate([np.full(k.size, 1.0 / k.size) for k in self.kept])
        p005, p50, p995 = weighted_percentiles(values, weights, (0.5, 50.0, 99.5))
        return {
            "name": name,
            "mean": mean,
            "median": p50,
            "std": math.sqrt(var),
            "min": self.lo,
            "max": self.hi,
            "percentile_00_5": p005,
            "percentile_99_5": p995,
            "n_cases": len(self.means),
            "percentiles_from": f"a seeded sample of <= {keep} voxels per case"
            if self.sampled
            else "all foreground voxels",
        }


def _pad3(values: tuple[Any, ...] | list[Any], fill: Any) -> list[Any]:
    return [*values, fill, fill, fill][:3]


def compute_fingerprint(path: Path) -> dict[str, Any]:
    """Geometry after cropping to the non-zero region, foreground intensity statistics per
    channel and foreground voxel fractions per class, from every training case.

    `shapes` are the cropped shapes (`shapes_before_crop` the stored ones), `spacings`
    the voxel sizes, both padded to 3 axes in medloop's (x, y, z) voxel order."""
    ds = read_dataset(path)
    n = max(1, len(ds.training))
    keep = max(_MIN_SAMPLE_PER_CASE, _PERCENTILE_VOXELS // n)
    rng = np.random.default_rng(1234)
    stats = [_ChannelStats() for _ in range(ds.n_channels)]
    class_fraction: dict[str, list[float]] = {name: [] for name in ds.foreground}
    shapes, before, spacings, relative = [], [], [], []
    for case in ds.training:
        assert case.label is not None
        volumes = [read_volume(p) for p in case.images]
        arrays = [v.array for v in volumes]
        label = np.rint(read_volume(case.label).array).astype(np.int32)
        for name, value in ds.foreground.items():
            class_fraction[name].append(float((label == value).mean()))
        box = nonzero_bbox(arrays)
        cropped_label = label[box]
        mask = cropped_label > 0
        for c, array in enumerate(arrays):
            stats[c].add(array[box][mask], keep, rng)
        full = arrays[0].shape
        crop = cropped_label.shape
        shapes.append(_pad3([int(s) for s in crop], 1))
        before.append(_pad3([int(s) for s in full], 1))
        spacings.append(_pad3([round(float(s), 6) for s in volumes[0].spacing], 1.0))
        relative.append(math.prod(crop) / max(1, math.prod(full)))
    return {
        "version": FINGERPRINT_VERSION,
        "dataset": ds.name,
        "checksum": dataset_checksum(ds.root),
        "n_cases": len(ds.training),
        "n_test_cases": len(ds.test),
        "channels": ds.channel_names,
        "labels": ds.labels,
        "sites": sorted(set(ds.sites.values())),
        "shapes": shapes,
        "shapes_before_crop": before,
        "spacings": spacings,
        "median_shape": [float(v) for v in np.median(np.asarray(shapes, float), axis=0)],
        "median_shape_before_crop": [float(v) for v in np.median(np.asarray(before, float), axis=0)],
        "median_spacing": [float(v) for v in np.median(np.asarray(spacings, float), axis=0)],
        "median_relative_size_after_cropping": float(np.median(relative)) if relative else 1.0,
        "intensity": {str(c): s.summary(ds.channel_names[str(c)], keep) for c, s in enumerate(stats)},
        "intensity_weighting": "each case equally (as nnU-Net's per-case sample)",
        "class_fraction": {k: float(np.mean(v)) if v else 0.0 for k, v in class_fraction.items()},
    }


def cached_fingerprint(path: Path) -> dict[str, Any]:
    """The fingerprint stored in the dataset's plans file when it matches the dataset's
    checksum and this fingerprint version; else a freshly computed one (nothing written)."""
    from medloop.experiments.dataset.plans import PLANS_FILE

    plans_path = Path(path) / PLANS_FILE
    if plans_path.is_file():
        try:
            cached = json.loads(plans_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            cached = None
        fp = cached.get("fingerprint") if isinstance(cached, dict) else None
        if (
            isinstance(fp, dict)
            and fp.get("version") == FINGERPRINT_VERSION
            and fp.get("checksum") == dataset_checksum(Path(path))
        ):
            return fp
    return compute_fingerprint(path)


def summarize_fingerprint(fp: dict[str, Any]) -> dict[str, float]:
    """Flatten a full fingerprint (compute_fingerprint) into stable float keys."""
    intensity = fp["intensity"]["0"]
    fractions = list(fp["class_fraction"].values())
    out = {
        "n_cases": float(fp["n_cases"]),
        "n_test_cases": float(fp["n_test_cases"]),
        "n_classes": float(len(fp["class_fraction"])),
        "n_channels": float(len(fp["channels"])),
        "n_sites": float(len(fp["sites"])),
        "is_3d": float(min(fp["median_shape"]) > 1),
        "fg_fraction": float(sum(fractions)),
        "intensity_mean": float(intensity["mean"]),
        "intensity_std": float(intensity["std"]),
        "intensity_p005": float(intensity["percentile_00_5"]),
        "intensity_p995": float(intensity["percentile_99_5"]),
    }
    for axis in range(3):
        out[f"shape_{axis}"] = float(fp["median_shape"][axis])
        out[f"spacing_{axis}"] = float(fp["median_spacing"][axis])
    return out


def fingerprint_summary(path: Path) -> dict[str, float]:
    """A compact numeric fingerprint: sizes, geometry (after cropping to the non-zero
    region), classes and channel-0 foreground intensities. Keys are stable; values are
    floats (axis keys padded to 3 axes)."""
    return summarize_fingerprint(cached_fingerprint(path))
