"""Keep only the largest connected component of each foreground class.

Why it can help: organs are single connected structures, so small islands a network
predicts away from the organ are false positives; removing them raises Dice and cuts HD95
(a standard nnU-Net post-processing step, applied there when it helps on validation).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

EXTENSION_POINT = "postprocess"


def postprocess(
    label_map: NDArray[np.uint8], spacing: tuple[float, ...], labels: dict[str, int]
) -> NDArray[np.uint8]:
    out = np.zeros_like(label_map)
    structure = ndimage.generate_binary_structure(label_map.ndim, 1)
    for value in labels.values():
        if value == 0:
            continue
        mask = label_map == value
        components, count = ndimage.label(mask, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        out[components == int(np.argmax(sizes)) + 1] = value
    return out
