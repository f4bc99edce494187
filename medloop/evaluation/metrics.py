"""Segmentation metrics recomputed on the host from a job's raw predictions.

Per case and per foreground class: Dice (DSC), normalised surface Dice (NSD) at a
per-class tolerance in mm, and the 95th-percentile Hausdorff distance (HD95) in mm.
Dice is counted here with numpy; NSD and HD95 use MONAI's implementation
(`compute_surface_dice`, `compute_hausdorff_distance`), whose name and version are
recorded in every SplitEvaluation. Spacing comes from the reference label's header, so
anisotropic voxels are measured in mm.

NSD has two definitions, and every result records which one it used (`nsd_variant`):
- `surface_area` (default): each boundary element weighs its surface area (3D) or contour
  length (2D) in mm, the boundary taken on the voxel-corner grid: DeepMind's
  surface-distance definition, used by Metrics Reloaded and the MSD/FLARE evaluations
  (MONAI's `use_subvoxels=True`, which follows it);
- `voxel_count`: each border voxel counts once (MONAI's default). On anisotropic voxels it
  can sit well below the surface-area value, since a border voxel along the coarse axis
  covers more surface than one along a fine axis.

Empty masks (a setting, recorded in every result):
- both prediction and reference empty: `both_empty_one` gives DSC = NSD = 1, HD95 = 0
  (the FLARE rule); `both_empty_nan` gives None, skipped in means (the nnU-Net rule).
- only one of them empty: DSC = NSD = 0 and HD95 = the worst value, the image diagonal
  in mm.
A missing, unreadable or wrong-shape prediction scores the worst values for every class
and records why; it never raises.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError, SpecError
from medloop.core.extras import require
from medloop.core.records import CaseEvaluation, ReportedMetrics, SplitEvaluation
from medloop.experiments.dataset.imageio import read_volume

METRICS = ("dice", "nsd", "hd95")
EMPTY_RULES = ("both_empty_one", "both_empty_nan")
NSD_VARIANTS = ("surface_area", "voxel_count")
NSD_DEFINITIONS = {
    "surface_area": "surface-area weighted (DeepMind surface-distance; MONAI use_subvoxels=True)",
    "voxel_count": "border-voxel count (MONAI default, use_subvoxels=False)",
}
HIGHER_IS_BETTER = {"dice": True, "nsd": True, "hd95": False}

# FLARE23 NSD tolerances (mm) by organ; matched by substring of the lower-cased label name.
FLARE_TOLERANCES_MM: dict[str, float] = {
    "liver": 5.0,
    "kidney": 3.0,
    "spleen": 3.0,
    "pancreas": 5.0,
    "aorta": 2.0,
    "inferior vena cava": 2.0,
    "ivc": 2.0,
    "postcava": 2.0,
    "adrenal": 2.0,
    "gallbladder": 2.0,
    "esophagus": 3.0,
    "oesophagus": 3.0,
    "stomach": 5.0,
    "duodenum": 7.0,
    "lesion": 2.0,
    "tumor": 2.0,
    "tumour": 2.0,
}
DEFAULT_TOLERANCE_MM = 2.0


def nsd_tolerances(
    labels: dict[str, int], overrides: dict[str, float] | None = None, default: float = DEFAULT_TOLERANCE_MM
) -> dict[str, float]:
    """Tolerance (mm) per foreground class: an override by exact name, else the FLARE value
    of the first organ name contained in the label name, else `default`."""
    out: dict[str, float] = {}
    for name, value in labels.items():
        if value == 0:
            continue
        if overrides and name in overrides:
            out[name] = float(overrides[name])
            continue
        key = name.lower().replace("_", " ")
        out[name] = next((tol for organ, tol in FLARE_TOLERANCES_MM.items() if organ in key), default)
    return out


def implementation(metrics: Sequence[str], nsd_variant: str = "surface_area") -> str:
    """The metric code and versions used, as recorded in results."""
    parts = [f"dice: medloop numpy {np.__version__}"]
    if any(m in ("nsd", "hd95") for m in metrics):
        monai = require("monai", "NSD/HD95 on the host")

        parts.append(f"nsd/hd95: monai {monai.__version__} compute_surface_dice/compute_hausdorff_distance")
    if "nsd" in metrics:
        parts.append(f"nsd variant: {nsd_variant}")
    return "; ".join(parts)


def _squeeze_singletons(
    arrays: tuple[NDArray[Any], NDArray[Any]], spacing: tuple[float, ...]
) -> tuple[NDArray[Any], NDArray[Any], tuple[float, ...]]:
    # A thin 2D case (X, Y, 1) is measured in 2D: a one-voxel axis has no surface along it.
    keep = [axis for axis, size in enumerate(arrays[0].shape) if size > 1]
    pred, ref = (np.squeeze(a, axis=tuple(i for i in range(a.ndim) if i not in keep)) for a in arrays)
    return pred, ref, tuple(spacing[axis] for axis in keep)


def _surface_metrics(
    pred: NDArray[np.bool_],
    ref: NDArray[np.bool_],
    spacing: tuple[float, ...],
    tolerance: float,
    want: set[str],
    nsd_variant: str = "surface_area",
) -> dict[str, float]:
    """NSD and/or HD95 for one class with both masks non-empty (MONAI's implementation)."""
    torch = require("torch", "NSD/HD95 on the host")
    require("monai", "NSD/HD95 on the host")
    from monai.metrics.hausdorff_distance import compute_hausdorff_distance
    from monai.metrics.surface_dice import compute_surface_dice

    y_pred = torch.from_numpy(pred[None, None])
    y = torch.from_numpy(ref[None, None])
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 passes a deprecated argument to its own helper; nothing to act on here.
        warnings.simplefilter("ignore", FutureWarning)
        if "nsd" in want:
            nsd = compute_surface_dice(
                y_pred,
                y,
                [tolerance],
                include_background=True,
                spacing=list(spacing),
                use_subvoxels=nsd_variant == "surface_area",
            )
            out["nsd"] = float(nsd.reshape(-1)[0])
        if "hd95" in want:
            hd = compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=95, spacing=list(spacing)
            )
            out["hd95"] = float(hd.reshape(-1)[0])
    return out


def score_case(
    pred: NDArray[np.integer],
    ref: NDArray[np.integer],
    *,
    labels: dict[str, int],
    spacing: tuple[float, ...],
    metrics: Sequence[str] = ("dice",),
    empty_rule: str = "both_empty_one",
    tolerances: dict[str, float] | None = None,
    nsd_variant: str = "surface_area",
) -> dict[str, dict[str, float | None]]:
    """metric -> class -> value for one case (pred and ref of the same shape)."""
    pred, ref, spacing = _squeeze_singletons((pred, ref), spacing)
    worst_hd = hd95_worst(ref.shape, spacing)
    tols = tolerances or nsd_tolerances(labels)
    out: dict[str, dict[str, float | None]] = {m: {} for m in metrics}
    surface = {m for m in metrics if m in ("nsd", "hd95")}
    for name, value in labels.items():
        if value == 0:
            continue
        p, r = pred == value, ref == value
        n_p, n_r = int(p.sum()), int(r.sum())
        if n_p == 0 and n_r == 0:
            both: float | None = None if empty_rule == "both_empty_nan" else 1.0
            for m in metrics:
                out[m][name] = both if both is None or m != "hd95" else 0.0
            continue
        if n_p == 0 or n_r == 0:
            for m in metrics:
                out[m][name] = worst_hd if m == "hd95" else 0.0
            continue
        if "dice" in out:
            out["dice"][name] = 2.0 * int((p & r).sum()) / (n_p + n_r)
        if surface:
            for m, v in _surface_metrics(p, r, spacing, tols[name], surface, nsd_variant).items():
                out[m][name] = v if math.isfinite(v) else (worst_hd if m == "hd95" else 0.0)
    return out


def hd95_worst(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The worst HD95: the image diagonal in mm."""
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def worst_values(
    labels: dict[str, int], metrics: Sequence[str], worst_hd: float
) -> dict[str, dict[str, float | None]]:
    fg = [name for name, value in labels.items() if value != 0]
    return {m: {name: (worst_hd if m == "hd95" else 0.0) for name in fg} for m in metrics}


def _read_prediction(path: Path, ref_shape: tuple[int, ...]) -> tuple[NDArray[np.int64] | None, str | None]:
    if not path.is_file():
        return None, f"missing prediction {path.name}"
    try:
        vol = read_volume(path, dtype=np.float32)
    except DatasetError as exc:
        return None, f"unreadable prediction: {exc.message}"
    array = vol.array
    if array.shape != ref_shape:
        if tuple(s for s in array.shape if s > 1) != tuple(s for s in ref_shape if s > 1):
            return None, f"prediction shape {array.shape} differs from reference {ref_shape}"
        array = array.reshape(ref_shape)
    if not np.isfinite(array).all():
        return None, "prediction contains NaN or Inf"
    return np.rint(array).astype(np.int64), None


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarize(cases: Sequence[CaseEvaluation], metrics: Sequence[str]) -> dict[str, float | None]:
    """metric -> mean over cases of the case's foreground-class mean (None values skipped)."""
    return {m: _mean([_mean(list(c.metrics.get(m, {}).values())) for c in cases]) for m in metrics}


def evaluate_split(
    pred_dir: Path,
    label_paths: dict[str, Path],
    *,
    labels: dict[str, int],
    sites: dict[str, str],
    split: str,
    metrics: Sequence[str] = ("dice",),
    empty_rule: str = "both_empty_one",
    tolerances: dict[str, float] | None = None,
    nsd_variant: str = "surface_area",
) -> SplitEvaluation:
    """Score every case of `label_paths` (case -> reference label file) against the job's
    prediction `pred_dir/<label file name>`.

    Per case, per foreground class; summary = mean over cases of the foreground-class
    mean; `by_site` the same per site. Unknown metrics or empty rules raise SpecError; a
    bad prediction scores the worst values (recorded in `error`); an unreadable
    reference label is a DatasetError (the host's data is broken, not the job).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SpecError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if empty_rule not in EMPTY_RULES:
        raise SpecError(f"unknown empty_rule {empty_rule!r}; choose from {list(EMPTY_RULES)}")
    if nsd_variant not in NSD_VARIANTS:
        raise SpecError(f"unknown nsd_variant {nsd_variant!r}; choose from {list(NSD_VARIANTS)}")
    tols = nsd_tolerances(labels, tolerances)
    results: list[CaseEvaluation] = []
    for case in sorted(label_paths):
        ref_vol = read_volume(label_paths[case], dtype=np.float32)
        ref = np.rint(ref_vol.array).astype(np.int64)
        pred, error = _read_prediction(Path(pred_dir) / label_paths[case].name, ref.shape)
        if pred is None:
            squeezed = tuple((n, s) for n, s in zip(ref.shape, ref_vol.spacing, strict=True) if n > 1)
            worst = hd95_worst([n for n, _ in squeezed], [s for _, s in squeezed])
            values = worst_values(labels, metrics, worst)
        else:
            values = score_case(
                pred,
                ref,
                labels=labels,
                spacing=ref_vol.spacing,
                metrics=metrics,
                empty_rule=empty_rule,
                tolerances=tols,
                nsd_variant=nsd_variant,
            )
        results.append(CaseEvaluation(case=case, site=sites.get(case), metrics=values, error=error))
    by_site_cases: dict[str, list[CaseEvaluation]] = defaultdict(list)
    for c in results:
        if c.site is not None:
            by_site_cases[c.site].append(c)
    return SplitEvaluation(
        split=split,
        cases=results,
        summary=summarize(results, metrics),
        implementation=implementation(metrics, nsd_variant),
        empty_rule=empty_rule,
        by_site={site: summarize(cs, metrics) for site, cs in sorted(by_site_cases.items())},
        settings={
            **(
                {
                    "nsd_tolerance_mm": tols,
                    "nsd_variant": nsd_variant,
                    "nsd_definition": NSD_DEFINITIONS[nsd_variant],
                }
                if "nsd" in metrics
                else {}
            ),
            **({"hd95_worst": "image diagonal (mm)"} if "hd95" in metrics else {}),
        },
    )


def tamper_gap(reported: ReportedMetrics, recomputed: SplitEvaluation) -> float:
    """Max |reported - recomputed| over the job's reported cases and classes.

    inf when a reported case or class cannot be recomputed, or a reported value is not a
    finite number. Values the empty rule leaves undefined (None) are skipped. 0.0 when
    nothing was reported.
    """
    by_case = {c.case: c for c in recomputed.cases}
    gap = 0.0
    for case, classes in reported.per_case.items():
        evaluation = by_case.get(case)
        if evaluation is None or reported.metric not in evaluation.metrics:
            return math.inf
        values = evaluation.metrics[reported.metric]
        for name, value in classes.items():
            if name not in values or not math.isfinite(value):
                return math.inf
            truth = values[name]
            if truth is None:
                continue
            gap = max(gap, abs(value - truth))
    return gap
