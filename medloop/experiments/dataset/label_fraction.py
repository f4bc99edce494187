"""Low-label studies: the labelled subset of a trial's training cases.

`labelled_subset(cases, fraction, seed)` orders the cases by a permutation drawn from
`seed` alone and keeps the first ceil(fraction * n) (at least one). The order does not
depend on the fraction, so for one seed the subsets are nested: the 5% subset lies
inside the 10% subset, which lies inside 100%. Trials of different arms with the same
seed get the same subset (a paired comparison); different seeds get different subsets,
so the spread over seeds includes the luck of which cases were labelled.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np


def labelled_subset(cases: list[str], fraction: float, seed: int) -> list[str]:
    """The labelled training cases at `fraction` (0 < fraction <= 1), in the input order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    ordered = sorted(cases)  # the subset must not depend on the order cases were listed in
    if fraction >= 1.0 or not ordered:
        return list(cases)
    # A seed of its own (salted), so the subset is independent of the trial's other draws.
    salt = int.from_bytes(hashlib.sha256(f"label_fraction:{seed}".encode()).digest()[:8], "little")
    order = np.random.default_rng(salt).permutation(len(ordered))
    keep = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    chosen = {ordered[i] for i in order[:keep]}
    return [c for c in cases if c in chosen]
