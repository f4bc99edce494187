"""NRRD/MHA (SimpleITK) and NIfTI (nibabel) readers agree on voxels and geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medloop.experiments.dataset.imageio import read_header, read_volume, save_nifti, write_like
from tests.conftest import require

try:
    import SimpleITK as sitk
except ImportError:  # the `data` extra; CI installs it and lists simpleitk in MEDLOOP_REQUIRE
    sitk = None


@pytest.fixture(autouse=True)
def _needs_simpleitk() -> None:
    require(
        "simpleitk", sitk is not None, "the SimpleITK package is not installed (pip install 'medloop[data]')"
    )


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_sitk_formats_match_nifti(tmp_path: Path, ending: str) -> None:
    rng = np.random.default_rng(0)
    zyx = rng.integers(0, 100, size=(5, 7, 9)).astype(np.int16)  # SimpleITK order (z, y, x)
    img = sitk.GetImageFromArray(zyx)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-10.0, 20.0, 5.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))  # rotated in-plane
    sitk.WriteImage(img, str(tmp_path / f"a{ending}"))
    sitk.WriteImage(img, str(tmp_path / "a.nii.gz"))
    ours, ref = read_volume(tmp_path / f"a{ending}"), read_volume(tmp_path / "a.nii.gz")
    assert ours.shape == ref.shape == (9, 7, 5)
    np.testing.assert_array_equal(ours.array, ref.array)
    np.testing.assert_allclose(ours.spacing, ref.spacing, rtol=1e-6)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-5)
    assert read_header(tmp_path / f"a{ending}")[0] == (9, 7, 5)


def test_write_like_keeps_geometry_and_refuses_wrong_shapes(tmp_path: Path) -> None:
    affine = np.array([[0.0, -1.5, 0, 10], [1.5, 0, 0, -4], [0, 0, 3.0, 2], [0, 0, 0, 1]])
    image = save_nifti(
        np.zeros((6, 5, 4), np.float32), tmp_path / "img.nii.gz", spacing=(1.5, 1.5, 3.0), affine=affine
    )
    out = write_like(np.ones((6, 5, 4), np.uint8), image, tmp_path / "pred.nii.gz")
    pred = read_volume(out)
    np.testing.assert_allclose(pred.affine, affine) and np.testing.assert_array_equal(pred.array, 1)
    with pytest.raises(ValueError, match="differs from reference"):
        write_like(np.ones((6, 5, 3), np.uint8), image, tmp_path / "bad.nii.gz")
    assert not (tmp_path / "bad.nii.gz").exists()
