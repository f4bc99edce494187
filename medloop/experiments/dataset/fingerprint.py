"""Dataset fingerprints: the numbers the knowledge base compares datasets by."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medloop.experiments.dataset.imageio import read_header, read_volume
from medloop.experiments.dataset.nnunet import read_dataset

_MAX_INTENSITY_CASES = 40  # cases whose voxels are read for intensity statistics
_VOXELS_PER_CASE = 20_000  # foreground voxels sampled per case


def fingerprint_summary(path: Path) -> dict[str, float]:
    """A compact numeric fingerprint: sizes, geometry, classes and channel-0 foreground
    intensities. Keys are stable; values are floats (axis keys padded to 3 axes).

    Geometry comes from every training case's header; intensities from up to 40 cases
    chosen evenly (foreground voxels, a fixed random sample per case).
    """
    ds = read_dataset(path)
    shapes, spacings = [], []
    for case in ds.training:
        shape, spacing, _ = read_header(case.images[0])
        shapes.append([*shape, 1, 1, 1][:3])
        spacings.append([*spacing, 1.0, 1.0, 1.0][:3])
    shape_arr = np.asarray(shapes, dtype=np.float64)
    spacing_arr = np.asarray(spacings, dtype=np.float64)
    step = max(1, len(ds.training) // _MAX_INTENSITY_CASES)
    rng = np.random.default_rng(0)
    samples, fg_fraction = [], []
    for case in ds.training[::step][:_MAX_INTENSITY_CASES]:
        assert case.label is not None  # read_dataset guarantees training labels
        label = read_volume(case.label, dtype=np.int16).array
        image = read_volume(case.images[0]).array
        fg = image[label > 0]
        fg_fraction.append(float((label > 0).mean()))
        if fg.size > _VOXELS_PER_CASE:
            fg = rng.choice(fg, _VOXELS_PER_CASE, replace=False)
        samples.append(fg)
    values = np.concatenate(samples) if samples else np.zeros(1)
    median_shape = np.median(shape_arr, axis=0)
    out = {
        "n_cases": float(len(ds.training)),
        "n_test_cases": float(len(ds.test)),
        "n_classes": float(len(ds.foreground)),
        "n_channels": float(ds.n_channels),
        "n_sites": float(len(set(ds.sites.values()))),
        "is_3d": float(np.count_nonzero(median_shape > 1) >= 3),
        "fg_fraction": float(np.mean(fg_fraction)) if fg_fraction else 0.0,
        "intensity_mean": float(values.mean()),
        "intensity_std": float(values.std()),
        "intensity_p005": float(np.percentile(values, 0.5)),
        "intensity_p995": float(np.percentile(values, 99.5)),
    }
    for axis in range(3):
        out[f"shape_{axis}"] = float(median_shape[axis])
        out[f"spacing_{axis}"] = float(np.median(spacing_arr[:, axis]))
    return out
