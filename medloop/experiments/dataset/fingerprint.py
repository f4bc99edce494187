"""Dataset fingerprints: the numbers the knowledge base compares datasets by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medloop.experiments.dataset.plans import compute_fingerprint


def summarize_fingerprint(fp: dict[str, Any]) -> dict[str, float]:
    """Flatten a full fingerprint (plans.compute_fingerprint) into stable float keys."""
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
    """A compact numeric fingerprint: sizes, geometry, classes and channel-0 foreground
    intensities. Keys are stable; values are floats (axis keys padded to 3 axes)."""
    return summarize_fingerprint(compute_fingerprint(path))
