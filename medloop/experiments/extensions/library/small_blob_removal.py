"""Remove connected components smaller than 10% of the largest component of their class.

Why it can help: like keeping the largest component, but safe for structures that are
legitimately split in two (paired organs, a lesion with satellites).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

EXTENSION_POINT = "postprocess"
MIN_FRACTION = 0.1  # of the class's largest component, in voxels


def postprocess(
    label_map: NDArray[np.uint8], spacing: tuple[float, ...], labels: dict[str, int]
) -> NDArray[np.uint8]:
    out = label_map.copy()
    structure = ndimage.generate_binary_structure(label_map.ndim, 1)
    for value in labels.values():
        if value == 0:
            continue
        components, count = ndimage.label(label_map == value, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())[1:]
        small = np.flatnonzero(sizes < MIN_FRACTION * sizes.max()) + 1
        out[np.isin(components, small)] = 0
    return out
