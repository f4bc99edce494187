"""Shared plumbing of the synthetic dataset generators: atomic creation, reuse of an
identical dataset, smooth random fields."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError


def smooth_field(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Zero-mean, unit-std smooth noise of any dimension (textures, bias fields, warps)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=shape), sigma)
    std = float(field.std()) or 1.0
    out: NDArray[np.float64] = (field - field.mean()) / std
    return out


def reuse_existing(dest: Path, recipe: dict[str, Any]) -> bool:
    """True if `dest` already holds the dataset this recipe makes; False if it is absent or
    empty; DatasetError if it holds anything else."""
    if not dest.exists():
        return False
    if dest.is_dir() and not any(dest.iterdir()):
        return False
    try:
        meta = json.loads((dest / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        meta = {}
    if isinstance(meta, dict) and meta.get("medloop_synth") == json.loads(json.dumps(recipe)):
        return True
    raise DatasetError(
        f"{dest}: already exists and is not this synthetic dataset",
        hint="choose an empty or new folder, or remove the old one",
    )


def build_dataset(
    dest: Path, recipe: dict[str, Any], meta: dict[str, Any], write_cases: Callable[[Path], dict[str, str]]
) -> Path:
    """Create a dataset at `dest` atomically: `write_cases(tmp)` writes imagesTr/labelsTr/
    imagesTs/labelsTs into a temporary folder and returns {case: site}; dataset.json (with
    the recipe) and sites.json follow; then the folder is renamed into place."""
    dest = Path(dest)
    if reuse_existing(dest, recipe):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        site_of = write_cases(tmp)
        full = {"name": dest.name, **meta, "file_ending": ".nii.gz", "medloop_synth": recipe}
        (tmp / "dataset.json").write_text(json.dumps(full, indent=2) + "\n")
        (tmp / "sites.json").write_text(json.dumps(site_of, indent=2) + "\n")
        if dest.exists():  # an empty folder the user created
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
