"""From voxels to the pictures VQA items show: radiological orientation, intensity windows,
outlines drawn in colour, PNG bytes.

Display convention (radiological): axial slices, the patient's right on the viewer's left,
anterior at the top. Volumes are reoriented so that array axis 0 runs toward the patient's
left, axis 1 toward posterior and axis 2 toward superior ("LPS"); a displayed slice is
`volume[:, :, k].T`, so rows run anterior -> posterior and columns right -> left.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

DISPLAY_AXES = ("L", "P", "S")
# CT soft-tissue window (HU): level 40, width 400.
CT_WINDOW = (40.0, 400.0)
RED = (255, 0, 0)


def reorient(array: NDArray[Any], affine: NDArray[np.float64]) -> NDArray[Any]:
    """Reorder and flip array axes so they run toward patient left, posterior, superior."""
    import nibabel.orientations

    orientations: Any = nibabel.orientations  # untyped library
    data = array if array.ndim == 3 else array.reshape((*array.shape[:2], 1))
    current = orientations.io_orientation(affine)
    target = orientations.axcodes2ornt(DISPLAY_AXES)
    transform = orientations.ornt_transform(current, target)
    out: NDArray[Any] = orientations.apply_orientation(data, transform)
    return out


def display_slice(volume: NDArray[Any], k: int) -> NDArray[Any]:
    """(rows, cols) of axial slice k of an LPS-ordered volume."""
    out: NDArray[Any] = np.ascontiguousarray(volume[:, :, k].T)
    return out


def window(image: NDArray[Any], modality: str) -> NDArray[np.uint8]:
    """Grey levels 0..255: the CT soft-tissue window, else the 0.5-99.5 percentile range."""
    values = image.astype(np.float64)
    if modality == "CT":
        level, width = CT_WINDOW
        low, high = level - width / 2, level + width / 2
    else:
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        if high <= low:
            high = low + 1.0
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    out: NDArray[np.uint8] = np.round(scaled).astype(np.uint8)
    return out


def outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The one-pixel inner boundary of a mask."""
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), border_value=0)
    out: NDArray[np.bool_] = mask & ~inner
    return out


def to_rgb(
    grey: NDArray[np.uint8], overlays: list[tuple[NDArray[np.bool_], tuple[int, int, int]]]
) -> NDArray[np.uint8]:
    """Grey image -> RGB (H, W, 3) with each overlay's pixels set to its colour."""
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for mask, colour in overlays:
        rgb[mask] = colour
    return rgb


def png_base64(rgb: NDArray[np.uint8], size: int | None = None) -> str:
    """Encode an RGB array as PNG and base64 (resized to size x size with nearest
    neighbours when `size` is given, so outlines stay crisp)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
