"""The two NSD definitions on anisotropic voxels, against values worked by hand.

Reference: an 8 x 6 rectangle; prediction: the same shifted by one column; spacing 1 mm
along rows, 3 mm along columns; tolerance 2 mm.

Surface area (DeepMind surface-distance): the boundary lives on the voxel-corner grid.
A rectangle's contour is 2 x 5 column steps of 3 mm, 2 x 7 row steps of 1 mm and four
corner diagonals of 0.5 * sqrt(1 + 9) mm. Within 2 mm of the other contour: the shared
top and bottom (5 x 3 mm + one corner each) and the 4 corner-grid points of the far side
that lie within 2 row steps of the other's top or bottom (1 mm each); the same for the
prediction by symmetry. Voxel count (MONAI default): 24 edge voxels each; 10 on shared
rows plus 4 near them are within 2 mm.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import SpecError
from medloop.evaluation.metrics import evaluate_split, score_case
from medloop.experiments.dataset.imageio import save_nifti

LABELS = {"background": 0, "organ": 1}
SPACING = (1.0, 3.0)
DIAG = 0.5 * math.sqrt(1.0 + 9.0)
SURFACE_AREA = (2 * (5 * 3.0 + DIAG) + 4 * 1.0) / (2 * 5 * 3.0 + 2 * 7 * 1.0 + 4 * DIAG)
VOXEL_COUNT = (10 + 4) / 24


def _pair() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((14, 14), np.uint8)
    ref[3:11, 3:9] = 1
    pred = np.zeros_like(ref)
    pred[3:11, 4:10] = 1
    return pred, ref


def test_surface_area_and_voxel_count_nsd_by_hand() -> None:
    pred, ref = _pair()
    area = score_case(pred, ref, labels=LABELS, spacing=SPACING, metrics=("nsd",), tolerances={"organ": 2.0})
    count = score_case(
        pred,
        ref,
        labels=LABELS,
        spacing=SPACING,
        metrics=("nsd",),
        tolerances={"organ": 2.0},
        nsd_variant="voxel_count",
    )
    assert area["nsd"]["organ"] == pytest.approx(SURFACE_AREA, abs=1e-6)  # 0.7385: the default
    assert count["nsd"]["organ"] == pytest.approx(VOXEL_COUNT, abs=1e-6)  # 0.5833
    # on isotropic voxels the gap closes for this shift: both see the same geometry
    iso_area = score_case(
        pred, ref, labels=LABELS, spacing=(1.0, 1.0), metrics=("nsd",), tolerances={"organ": 1.0}
    )
    assert iso_area["nsd"]["organ"] == pytest.approx(1.0)


def test_every_result_records_the_variant_and_library(tmp_path: Path) -> None:
    pred, ref = _pair()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    spacing3 = (*SPACING, 1.0)
    save_nifti(pred[:, :, None], tmp_path / "pred" / "c.nii.gz", spacing=spacing3)
    save_nifti(ref[:, :, None], tmp_path / "ref" / "c.nii.gz", spacing=spacing3)
    refs = {"c": tmp_path / "ref" / "c.nii.gz"}
    ev = evaluate_split(
        tmp_path / "pred",
        refs,
        labels=LABELS,
        sites={},
        split="eval",
        metrics=("nsd",),
        tolerances={"organ": 2.0},
    )
    assert ev.summary["nsd"] == pytest.approx(SURFACE_AREA, abs=1e-6)
    assert ev.settings["nsd_variant"] == "surface_area" and "DeepMind" in ev.settings["nsd_definition"]
    import monai

    assert (
        f"monai {monai.__version__}" in ev.implementation and "nsd variant: surface_area" in ev.implementation
    )
    voxel = evaluate_split(
        tmp_path / "pred",
        refs,
        labels=LABELS,
        sites={},
        split="eval",
        metrics=("nsd",),
        tolerances={"organ": 2.0},
        nsd_variant="voxel_count",
    )
    assert voxel.summary["nsd"] == pytest.approx(VOXEL_COUNT, abs=1e-6)
    assert voxel.settings["nsd_variant"] == "voxel_count"
    with pytest.raises(SpecError, match="nsd_variant"):
        evaluate_split(tmp_path / "pred", refs, labels=LABELS, sites={}, split="eval", nsd_variant="pixels")
