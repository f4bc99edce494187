"""Host-side segmentation metrics against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medloop.core.errors import SpecError
from medloop.core.records import ReportedMetrics
from medloop.evaluation.metrics import evaluate_split, hd95_worst, nsd_tolerances, score_case, tamper_gap
from medloop.experiments.dataset.imageio import save_nifti

LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}


def _squares() -> tuple[np.ndarray, np.ndarray]:
    """ref: a 4x4 liver square; pred: the same square one column to the right. Kidney only
    in ref (missed); spleen in neither."""
    ref = np.zeros((10, 10, 1), np.uint8)
    pred = np.zeros_like(ref)
    ref[2:6, 2:6] = 1
    pred[2:6, 3:7] = 1
    ref[8, 8] = 3
    return pred, ref


def _write(tmp_path: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], spacing=(1.0, 1.0, 5.0)):
    labels, preds = tmp_path / "labels", tmp_path / "pred"
    paths = {}
    for case, (pred, ref) in cases.items():
        paths[case] = save_nifti(ref, labels / f"{case}.nii.gz", spacing=spacing)
        if pred is not None:
            save_nifti(pred, preds / f"{case}.nii.gz", spacing=spacing)
    return preds, paths


def test_dice_by_hand_and_empty_rules(tmp_path: Path) -> None:
    pred, ref = _squares()
    preds, paths = _write(tmp_path, {"a": (pred, ref)})
    ev = evaluate_split(preds, paths, labels=LABELS, sites={"a": "s1"}, split="eval")
    dice = ev.cases[0].metrics["dice"]
    assert dice == {"liver": 0.75, "spleen": 1.0, "kidney": 0.0}  # 2*12/(16+16); both empty; missed
    assert ev.summary["dice"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert ev.empty_rule == "both_empty_one" and "numpy" in ev.implementation
    assert ev.by_site == {"s1": {"dice": pytest.approx((0.75 + 1.0) / 3)}}

    nan_rule = evaluate_split(
        preds, paths, labels=LABELS, sites={}, split="eval", empty_rule="both_empty_nan"
    )
    assert nan_rule.cases[0].metrics["dice"]["spleen"] is None
    assert nan_rule.summary["dice"] == pytest.approx(0.375)  # mean of liver and kidney only
    assert nan_rule.empty_rule == "both_empty_nan"


def test_surface_metrics_on_shifted_squares_with_anisotropic_spacing(tmp_path: Path) -> None:
    pred, ref = _squares()
    # the shift is along axis 1, whose spacing is 1.5 mm: every boundary distance is 0 or 1.5 mm
    preds, paths = _write(tmp_path, {"a": (pred, ref)}, spacing=(0.7, 1.5, 5.0))
    ev = evaluate_split(
        preds,
        paths,
        labels=LABELS,
        sites={},
        split="eval",
        metrics=("dice", "nsd", "hd95"),
        tolerances={"liver": 1.0},
        nsd_variant="voxel_count",  # the edge-voxel count worked below (surface area: test_nsd_variants)
    )
    m = ev.cases[0].metrics
    assert m["hd95"]["liver"] == pytest.approx(1.5)
    # Boundary (edge-voxel) distances per direction: 6 x 0, 2 x 0.7 mm (a row step), 4 x 1.5 mm
    # (a column step); within 1 mm: 8 of 12 on each side.
    assert m["nsd"]["liver"] == pytest.approx(8 / 12)
    assert m["hd95"]["spleen"] == 0.0 and m["nsd"]["spleen"] == 1.0  # both empty
    diagonal = math.hypot(10 * 0.7, 10 * 1.5)  # the thin axis is not part of a 2D case
    assert m["hd95"]["kidney"] == pytest.approx(diagonal) and m["nsd"]["kidney"] == 0.0
    assert ev.settings["nsd_tolerance_mm"]["liver"] == 1.0 and "monai" in ev.implementation
    wide = evaluate_split(
        preds, paths, labels=LABELS, sites={}, split="eval", metrics=("nsd",), tolerances={"liver": 2.0}
    )
    assert wide.cases[0].metrics["nsd"]["liver"] == pytest.approx(1.0)


def test_hd95_between_single_voxels_in_mm() -> None:
    pred = np.zeros((6, 6, 8), np.uint8)
    ref = np.zeros_like(pred)
    pred[1, 1, 1] = 1
    ref[2, 3, 1] = 1
    out = score_case(pred, ref, labels={"background": 0, "x": 1}, spacing=(0.5, 2.0, 1.0), metrics=("hd95",))
    assert out["hd95"]["x"] == pytest.approx(math.sqrt(0.5**2 + 4.0**2))
    pred2 = np.zeros_like(pred)
    pred2[2, 3, 3] = 1
    out = score_case(pred2, ref, labels={"background": 0, "x": 1}, spacing=(1.0, 1.0, 3.0), metrics=("hd95",))
    assert out["hd95"]["x"] == pytest.approx(6.0)
    assert hd95_worst((6, 6, 8), (1.0, 1.0, 3.0)) == pytest.approx(math.sqrt(36 + 36 + 576))


def test_flare_tolerances_by_organ_name() -> None:
    tol = nsd_tolerances(
        {"background": 0, "Liver": 1, "left_kidney": 2, "IVC": 3, "brain": 4}, {"brain": 1.5}
    )
    assert tol == {"Liver": 5.0, "left_kidney": 3.0, "IVC": 2.0, "brain": 1.5}
    assert nsd_tolerances({"background": 0, "thing": 1})["thing"] == 2.0


def test_bad_predictions_score_worst_and_say_why(tmp_path: Path) -> None:
    pred, ref = _squares()
    preds, paths = _write(
        tmp_path, {"ok": (pred, ref), "missing": (None, ref), "shape": (pred, ref), "junk": (pred, ref)}
    )
    save_nifti(np.zeros((9, 10, 1), np.uint8), preds / "shape.nii.gz", spacing=(1.0, 1.0, 5.0))
    (preds / "junk.nii.gz").write_bytes(b"not a nifti file")
    ev = evaluate_split(preds, paths, labels=LABELS, sites={}, split="eval", metrics=("dice", "hd95"))
    by = {c.case: c for c in ev.cases}
    assert by["ok"].error is None
    assert "missing prediction" in str(by["missing"].error)
    assert "differs from reference" in str(by["shape"].error)
    assert "unreadable" in str(by["junk"].error)
    for case in ("missing", "shape", "junk"):
        assert by[case].metrics["dice"] == {"liver": 0.0, "spleen": 0.0, "kidney": 0.0}
        assert by[case].metrics["hd95"]["liver"] == pytest.approx(math.hypot(10, 10))
    assert ev.summary["dice"] == pytest.approx((0.75 + 1.0) / 3 / 4)


def test_unknown_settings_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown metric"):
        evaluate_split(tmp_path, {}, labels=LABELS, sites={}, split="eval", metrics=("iou",))
    with pytest.raises(SpecError, match="empty_rule"):
        evaluate_split(tmp_path, {}, labels=LABELS, sites={}, split="eval", empty_rule="zero")


def test_tamper_gap(tmp_path: Path) -> None:
    pred, ref = _squares()
    preds, paths = _write(tmp_path, {"a": (pred, ref), "b": (ref, ref)})
    ev = evaluate_split(preds, paths, labels=LABELS, sites={}, split="internal_val")
    honest = ReportedMetrics(
        per_case={"a": {"liver": 0.75, "spleen": 1.0, "kidney": 0.0}, "b": {"liver": 1.0, "kidney": 1.0}}
    )
    assert tamper_gap(honest, ev) == 0.0
    inflated = ReportedMetrics(per_case={"a": {"liver": 0.95}})
    assert tamper_gap(inflated, ev) == pytest.approx(0.2)
    assert tamper_gap(ReportedMetrics(per_case={"zzz": {"liver": 0.5}}), ev) == math.inf
    assert tamper_gap(ReportedMetrics(per_case={"a": {"pancreas": 0.5}}), ev) == math.inf
    assert tamper_gap(ReportedMetrics(per_case={"a": {"liver": float("nan")}}), ev) == math.inf
    assert tamper_gap(ReportedMetrics(per_case={}), ev) == 0.0
