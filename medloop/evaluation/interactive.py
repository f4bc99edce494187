"""Simulated interaction for promptable segmentation, on the host (pure numpy/scipy).

The host holds the reference label of every evaluation target; a job never sees it. Each
round the host derives the next click from the error of the job's previous prediction
(the rule of RITM / SAM-Med3D NoC evaluation):

- the error regions are the false negatives (reference, not predicted) and the false
  positives (predicted, not reference), split into 26-connected components;
- the largest component wins (ties: false negatives first, then the first in C order);
- the click goes to its centre: the voxel deepest inside it (largest distance, in mm, to
  the nearest voxel outside the component; ties: first in C order); a false-negative
  region gives a positive click, a false-positive region a negative one.

Round 1 has an empty prediction, so the first click is the centre of the target's largest
component. Everything is deterministic; a click always lies inside the volume (inside the
error region it corrects). Only click coordinates (and, for box prompts, the reference's
bounding box) leave the host.

Scores: Dice after k clicks (k = 1, 3, 5, 10) and NoC@80/85/90, the clicks needed to reach
that Dice, capped at the number of clicks simulated (20 by default; a target that never
reaches it counts as the cap). A target whose prediction is exact gets no further click:
its prompts, and so its prediction, stay as they are, and its Dice is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IMPLEMENTATION = "medloop.evaluation.interactive/1 (largest-error-centre clicks, EDT in mm)"
DICE_AT = (1, 3, 5, 10)
NOC_AT = (80, 85, 90)


@dataclass(frozen=True)
class Click:
    """A click in voxel indices of the volume (reader axis order) and its polarity."""

    x: int
    y: int
    z: int
    positive: bool

    def as_json(self) -> list[int]:
        return [self.x, self.y, self.z, int(self.positive)]


def dice(pred: NDArray[np.bool_], ref: NDArray[np.bool_]) -> float:
    """Dice of two binary masks; both empty -> 1.0 (nothing to find, nothing found)."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the reference {ref.shape}")
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def _centre(region: NDArray[np.bool_], spacing: Sequence[float]) -> tuple[int, int, int]:
    """The voxel of `region` farthest (mm) from any voxel outside it; first in C order on ties."""
    from scipy import ndimage

    # Pad so that the volume's border counts as outside: a region touching the border
    # is centred inside, not on the edge.
    padded = np.pad(region, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded, sampling=[float(s) for s in spacing])[1:-1, 1:-1, 1:-1]
    flat = int(np.argmax(np.where(region, depth, -1.0)))
    x, y, z = np.unravel_index(flat, region.shape)
    return int(x), int(y), int(z)


def _largest_component(mask: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], int]:
    from scipy import ndimage

    labelled, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(mask), 0
    sizes = np.bincount(labelled.ravel())[1:]
    best = int(np.argmax(sizes)) + 1  # first component on ties (scan order of ndimage.label)
    return labelled == best, int(sizes[best - 1])


def next_click(
    pred: NDArray[np.bool_], ref: NDArray[np.bool_], spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> Click | None:
    """The next simulated click for a prediction of reference `ref`; None when it is exact."""
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(f"expected two 3D masks of one shape, got {pred.shape} and {ref.shape}")
    fn_region, fn_size = _largest_component(np.logical_and(ref, np.logical_not(pred)))
    fp_region, fp_size = _largest_component(np.logical_and(pred, np.logical_not(ref)))
    if fn_size == 0 and fp_size == 0:
        return None
    positive = fn_size >= fp_size
    x, y, z = _centre(fn_region if positive else fp_region, spacing)
    return Click(x, y, z, positive)


def bounding_box(ref: NDArray[np.bool_]) -> list[int] | None:
    """[x0, y0, z0, x1, y1, z1] (inclusive voxel indices) of a mask; None when empty."""
    found = np.argwhere(ref)
    if found.size == 0:
        return None
    lo, hi = found.min(axis=0), found.max(axis=0)
    return [int(v) for v in (*lo, *hi)]


def noc(curve: Sequence[float], threshold: float, cap: int) -> int:
    """Clicks needed until Dice >= threshold (curve[k-1] is the Dice after k clicks);
    `cap` when it never gets there within the curve."""
    for k, value in enumerate(curve[:cap], start=1):
        if value >= threshold:
            return k
    return cap


def curve_metrics(curve: Sequence[float], cap: int) -> dict[str, float]:
    """dice@k for every click of one target's Dice-per-click curve (curve[k-1]: after k
    clicks) and noc@80/85/90 capped at `cap`. A curve shorter than `cap` must have reached
    every NoC threshold (the caller stops simulating only then)."""
    if not curve:
        raise ValueError("an interaction curve needs at least one click")
    out = {f"dice@{k}": float(v) for k, v in enumerate(curve[:cap], start=1)}
    out.update({f"noc@{t}": float(noc(curve, t / 100.0, cap)) for t in NOC_AT})
    return out
