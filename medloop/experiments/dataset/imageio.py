"""Reading and writing images and label maps (NIfTI through nibabel; NRRD/MHA through
SimpleITK when it is installed).

Arrays keep nibabel's voxel order (i, j, k) = (x, y, z) for every format, so a 2D case
stored nnU-Net style as a thin volume has shape (H, W, 1). `spacing` is in mm per axis,
in the same order as the array axes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError

NIFTI_ENDINGS = (".nii.gz", ".nii")
SITK_ENDINGS = (".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class Volume:
    """One image or label map: voxel data plus the geometry needed to write it back."""

    array: NDArray[Any]
    spacing: tuple[float, ...]
    affine: NDArray[np.float64]  # (4, 4) voxel -> world (RAS mm)
    path: Path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)


def nib_module() -> Any:
    # nibabel's type hints describe the generic image class; we use the NIfTI API.
    import nibabel

    return nibabel


def _ending(path: Path) -> str:
    name = path.name.lower()
    for ending in (*NIFTI_ENDINGS, *SITK_ENDINGS):
        if name.endswith(ending):
            return ending
    return path.suffix.lower()


def read_header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], NDArray[np.float64]]:
    """Shape, spacing and affine without loading the voxels (NIfTI reads only the header)."""
    if _ending(path) in NIFTI_ENDINGS:
        try:
            img = nib_module().load(str(path))
        except Exception as exc:  # noqa: BLE001 - nibabel raises many types for broken files
            raise DatasetError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
        shape = tuple(int(s) for s in img.shape)
        zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
        return shape, zooms, np.asarray(img.affine, dtype=np.float64)
    vol = read_volume(path)
    return vol.shape, vol.spacing, vol.affine


def read_volume(path: Path, *, dtype: Any = np.float32) -> Volume:
    """Load an image or label map. Raises DatasetError naming the file if it is unreadable."""
    ending = _ending(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    if ending in NIFTI_ENDINGS:
        try:
            img = nib_module().load(str(path))
            data = np.asarray(img.dataobj, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - nibabel/gzip/zlib raise many types for broken files
            raise DatasetError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
        spacing = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
        return Volume(data, spacing, np.asarray(img.affine, dtype=np.float64), path)
    if ending in SITK_ENDINGS:
        return _read_sitk(path, dtype)
    raise DatasetError(f"{path}: unsupported file type {ending!r}", hint="use NIfTI (.nii.gz), NRRD or MHA")


def _read_sitk(path: Path, dtype: Any) -> Volume:
    try:
        import SimpleITK
    except ImportError:
        raise DatasetError(
            f"{path}: reading {_ending(path)} needs SimpleITK", hint="pip install 'medloop[data]'"
        ) from None
    sitk: Any = SimpleITK
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from None
    # SimpleITK arrays are (z, y, x); transpose to (x, y, z) like nibabel.
    data = np.asarray(sitk.GetArrayFromImage(img), dtype=dtype).T
    spacing = tuple(float(s) for s in img.GetSpacing())
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(img.GetDimension(), -1)
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    n = min(3, img.GetDimension())
    affine[:n, :n] = direction[:n, :n] * np.asarray(spacing[:n])
    affine[:n, 3] = origin[:n]
    # ITK is LPS, NIfTI RAS: flip the first two world axes.
    affine[:2] *= -1
    return Volume(data, spacing, affine, path)


def write_like(array: NDArray[Any], reference: Volume | Path, dest: Path) -> Path:
    """Write `array` with the geometry (affine, spacing) of `reference`.

    Used for label maps: same shape and affine as the image they segment.
    """
    ref = reference if isinstance(reference, Volume) else read_volume(reference)
    if tuple(array.shape) != ref.shape:
        raise ValueError(f"array shape {array.shape} differs from reference {ref.shape}")
    return save_nifti(array, dest, spacing=ref.spacing, affine=ref.affine)


def save_nifti(
    array: NDArray[Any],
    dest: Path,
    *,
    spacing: tuple[float, ...],
    affine: NDArray[np.float64] | None = None,
) -> Path:
    """Write a NIfTI atomically (temp file, then rename). Without `affine`, a diagonal one
    of `spacing` (mm) is used."""
    nib = nib_module()
    if affine is None:
        affine = np.eye(4)
        for axis, size in enumerate(spacing[:3]):
            affine[axis, axis] = size
    dest.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    zooms = [*spacing[:3], *([1.0] * max(0, array.ndim - len(spacing[:3])))]  # 4th axis: channels
    img.header.set_zooms(tuple(zooms[: array.ndim]))
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if dest.name.endswith(".nii.gz") else ".nii"
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        nib.save(img, tmp)
        Path(tmp).chmod(0o644)  # mkstemp makes it 0600: datasets are read by sandbox users too
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
