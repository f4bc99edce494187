"""A real-anatomy dataset built offline from nilearn's bundled MNI152 (2009) template and
its grey/white-matter probability maps (no download: the files ship inside nilearn).

Subjects are made by a seeded random affine (rotation, scale) plus a smooth elastic
displacement field applied to the template and its tissue maps; labels are the argmax
of the warped grey matter, white matter and CSF (brain mask minus GM and WM)
probabilities, after averaging down to `resolution_mm`. Sites change the image like
scanners do: gamma/contrast, offset, Rician noise, a multiplicative bias field and blur
along the slice axis. Channel "T1" (z-scored per image by the trainer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.synthetic import build_dataset, smooth_field

LABELS_MNI = {"background": 0, "grey_matter": 1, "white_matter": 2, "csf": 3}
_GENERATOR_VERSION = 1


@dataclass(frozen=True)
class MRSite:
    name: str
    gamma: float = 1.0  # intensity exponent (contrast of the sequence)
    scale: float = 1000.0  # intensity units of the scanner
    offset: float = 0.0
    noise: float = 0.02  # Rician noise level, fraction of the scale
    bias: float = 0.0  # amplitude of the multiplicative bias field (0.2 = +-20%)
    slice_blur: float = 0.0  # voxels, Gaussian blur along the last axis (thick slices)


MNI_SITES = (
    MRSite("site_a", gamma=1.0, scale=1000.0, noise=0.02, bias=0.05),
    MRSite("site_b", gamma=1.3, scale=600.0, offset=50.0, noise=0.04, bias=0.15, slice_blur=0.8),
    MRSite("site_c", gamma=0.8, scale=1500.0, noise=0.06, bias=0.25, slice_blur=0.4),
    MRSite("site_d", gamma=1.1, scale=800.0, offset=-30.0, noise=0.03, bias=0.2, slice_blur=1.2),
)


def _load_template() -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], float]:
    """(T1, grey-matter probability, white-matter probability) at 2 mm, cropped to the
    brain with a 2-voxel margin, and the voxel size."""
    try:
        from nilearn import datasets
    except ImportError:
        raise DatasetError("the mni dataset needs nilearn", hint="pip install 'medloop[data]'") from None

    def arr(img: Any) -> NDArray[np.float32]:
        return np.asarray(img.dataobj, dtype=np.float32)

    t1 = arr(datasets.load_mni152_template(resolution=2))
    gm = arr(datasets.load_mni152_gm_template(resolution=2))
    wm = arr(datasets.load_mni152_wm_template(resolution=2))
    brain = arr(datasets.load_mni152_brain_mask(resolution=2)) > 0
    idx = np.argwhere(brain)
    lo = np.maximum(idx.min(0) - 2, 0)
    hi = np.minimum(idx.max(0) + 3, brain.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0, 1)
    return t1[crop], np.stack([gm[crop], wm[crop], csf[crop]]), brain[crop].astype(np.float32), 2.0


def _warp(
    volumes: NDArray[np.float32], rng: np.random.Generator, amplitude_vox: float, max_rot_deg: float
) -> NDArray[np.float32]:
    """Apply one random affine + smooth elastic field to every volume (C, X, Y, Z), linearly."""
    from scipy.ndimage import map_coordinates

    shape = volumes.shape[1:]
    center = (np.asarray(shape) - 1) / 2
    angles = np.radians(rng.uniform(-max_rot_deg, max_rot_deg, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rot = (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )
    matrix = rot * rng.uniform(0.93, 1.07, 3)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    coords = (
        np.einsum("ij,j...->i...", matrix, grid - center[:, None, None, None]) + center[:, None, None, None]
    )
    for axis in range(3):
        coords[axis] += amplitude_vox * smooth_field(shape, 4.0, rng)
    return np.stack([map_coordinates(v, coords, order=1, mode="constant", cval=0.0) for v in volumes]).astype(
        np.float32
    )


def _downsample(volume: NDArray[np.float32], factor: int) -> NDArray[np.float32]:
    if factor == 1:
        return volume
    shape = [n // factor * factor for n in volume.shape]
    v = volume[: shape[0], : shape[1], : shape[2]]
    out: NDArray[np.float32] = v.reshape(
        shape[0] // factor, factor, shape[1] // factor, factor, shape[2] // factor, factor
    ).mean(axis=(1, 3, 5))
    return out


def render_subject(
    index: int, seed: int, site: MRSite, template: tuple[Any, ...], resolution_mm: float
) -> tuple[NDArray[np.float32], NDArray[np.uint8], tuple[float, float, float]]:
    from scipy.ndimage import gaussian_filter

    t1, tissues, brain, base_mm = template
    rng = np.random.default_rng([seed, index, 152])
    warped = _warp(np.concatenate([t1[None], tissues, brain[None]]), rng, amplitude_vox=1.5, max_rot_deg=6.0)
    factor = max(1, round(resolution_mm / base_mm))
    image = _downsample(warped[0], factor)
    probs = np.stack([_downsample(v, factor) for v in warped[1:4]])
    inside = _downsample(warped[4], factor) > 0.5
    label = np.where(inside, probs.argmax(0) + 1, 0).astype(np.uint8)
    image = np.clip(image / max(float(t1.max()), 1e-6), 0, None) ** site.gamma
    if site.bias > 0:
        image = image * (1 + site.bias * np.tanh(smooth_field(image.shape, max(image.shape) / 3, rng)))
    if site.slice_blur > 0:
        image = gaussian_filter(image, (0, 0, site.slice_blur))
    real = image + rng.normal(0, site.noise, image.shape)
    imag = rng.normal(0, site.noise, image.shape)
    image = np.sqrt(real**2 + imag**2)  # Rician magnitude noise
    mm = base_mm * factor
    return (site.scale * image + site.offset).astype(np.float32), label, (mm, mm, mm)


def synth_mni(
    dest: Path,
    *,
    cases: int = 24,
    seed: int = 0,
    test_cases: int | None = None,
    n_sites: int = 3,
    test_only_sites: int = 1,
    resolution_mm: float = 4.0,
) -> Path:
    """Write the MNI152-based dataset at `dest` (see module doc). Training cases cycle over
    the first `n_sites - test_only_sites` sites, test cases over all sites."""
    if not 1 <= n_sites <= len(MNI_SITES):
        raise DatasetError(f"mni: n_sites must lie in 1..{len(MNI_SITES)}, got {n_sites}")
    if not 0 <= test_only_sites < n_sites:
        raise DatasetError("mni: test_only_sites must leave at least one training site")
    if cases < 2:
        raise DatasetError(f"mni: needs at least 2 cases, got {cases}")
    if resolution_mm < 2.0:
        raise DatasetError("mni: resolution_mm must be >= 2 (the bundled template is 2 mm)")
    styles = MNI_SITES[:n_sites]
    train_sites = styles[: n_sites - test_only_sites]
    n_test = cases // 3 if test_cases is None else test_cases
    recipe: dict[str, Any] = {
        "kind": "mni",
        "version": _GENERATOR_VERSION,
        "cases": cases,
        "test_cases": n_test,
        "seed": seed,
        "test_only_sites": test_only_sites,
        "resolution_mm": resolution_mm,
        "sites": [asdict(s) for s in styles],
    }

    def write_cases(tmp: Path) -> dict[str, str]:
        template = _load_template()
        site_of: dict[str, str] = {}
        for index in range(cases + n_test):
            case_id = f"mni_{index:03d}"
            training = index < cases
            site = train_sites[index % len(train_sites)] if training else styles[(index - cases) % n_sites]
            image, label, spacing = render_subject(index, seed, site, template, resolution_mm)
            img_dir, lab_dir = ("imagesTr", "labelsTr") if training else ("imagesTs", "labelsTs")
            save_nifti(image, tmp / img_dir / f"{case_id}_0000.nii.gz", spacing=spacing)
            save_nifti(label, tmp / lab_dir / f"{case_id}.nii.gz", spacing=spacing)
            site_of[case_id] = site.name
        return site_of

    meta = {
        "description": "Subjects from the MNI152 2009 template (nilearn) by seeded elastic deformation; "
        "sites by scanner-like intensity changes",
        "reference": "Fonov et al. 2011, NeuroImage; nilearn load_mni152_* loaders",
        "channel_names": {"0": "T1"},
        "labels": LABELS_MNI,
        "numTraining": cases,
        "licence": "MNI ICBM 2009 template licence (see nilearn)",
        "test_only_sites": [s.name for s in styles[n_sites - test_only_sites :]],
    }
    return build_dataset(Path(dest), recipe, meta, write_cases)
