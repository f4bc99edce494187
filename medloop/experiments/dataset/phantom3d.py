"""Synthetic 3D abdominal CT phantom with configurable sites (an nnU-Net v2 raw dataset).

Each case is a small CT-like volume (HU, int16) of a fixed physical field of view: a
textured body, liver, spleen, two kidneys (one class) and the aorta, plus unlabelled
distractors (spine, bowel). Organs are ellipsoids whose implicit surface is warped by a
smooth random field, drawn without overlap at 2x resolution and averaged down (partial
volume). Sites render the same anatomy with their own voxel spacing (so shapes differ per
site), intensity shift and contrast, noise, blur and bias field. The last
`test_only_sites` sites appear only in imagesTs: unseen centres, as in FeTA or Touchstone.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.phantom import SiteStyle
from medloop.experiments.dataset.synthetic import build_dataset, smooth_field

LABELS_3D = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "aorta": 4}
FOV_MM = (72.0, 72.0, 60.0)  # x (left-right), y (anterior-posterior), z (cranio-caudal)
_SS = 2  # supersampling factor per axis
_GENERATOR_VERSION = 1

SITES_3D = (
    SiteStyle("site_a", shift=0.0, contrast=1.0, noise=20.0, blur=0.0, spacing=1.5, thickness=2.5, bias=0.0),
    SiteStyle(
        "site_b", shift=30.0, contrast=0.85, noise=30.0, blur=0.6, spacing=1.8, thickness=3.0, bias=20.0
    ),
    SiteStyle(
        "site_c", shift=-25.0, contrast=1.15, noise=40.0, blur=0.3, spacing=1.5, thickness=2.0, bias=30.0
    ),
    SiteStyle(
        "site_d", shift=15.0, contrast=0.9, noise=25.0, blur=1.0, spacing=2.0, thickness=3.0, bias=10.0
    ),
    SiteStyle(
        "site_e", shift=-10.0, contrast=1.05, noise=35.0, blur=0.5, spacing=1.6, thickness=2.5, bias=25.0
    ),
    SiteStyle(
        "site_f", shift=45.0, contrast=0.75, noise=28.0, blur=0.8, spacing=1.8, thickness=2.5, bias=15.0
    ),
)
_AIR, _BODY, _LIVER, _SPLEEN, _KIDNEY, _AORTA, _BONE = -1000.0, 15.0, 62.0, 48.0, 150.0, 180.0, 450.0


def _grid(site: SiteStyle) -> tuple[tuple[int, int, int], list[NDArray[np.float64]]]:
    """Low-res shape and high-res world coordinates (mm, centred) for a site's spacing."""
    spacing = (site.spacing, site.spacing, site.thickness)
    shape = tuple(max(8, round(f / s)) for f, s in zip(FOV_MM, spacing, strict=True))
    axes = [(np.arange(n * _SS) - (n * _SS - 1) / 2) * (s / _SS) for n, s in zip(shape, spacing, strict=True)]
    return (shape[0], shape[1], shape[2]), list(np.meshgrid(*axes, indexing="ij"))


def _ellipsoid(
    grid: list[NDArray[np.float64]],
    center: NDArray[np.float64],
    radii: NDArray[np.float64],
    warp: NDArray[np.float64],
) -> NDArray[np.bool_]:
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True))
    mask: NDArray[np.bool_] = np.sqrt(r2) + warp < 1.0
    return mask


def render_case3d(
    index: int, seed: int, site: SiteStyle
) -> tuple[NDArray[np.int16], NDArray[np.uint8], tuple[float, float, float]]:
    """One 3D case: (image HU int16, label uint8, spacing mm)."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    rng = np.random.default_rng([seed, index, 3])
    shape, grid = _grid(site)
    hr = grid[0].shape
    warp = 0.12 * smooth_field(hr, 3.0 * _SS, rng)  # shared boundary wobble
    body_r = np.array([33.0, 26.0, 200.0]) * rng.uniform(0.92, 1.05, 3)
    body = _ellipsoid(
        [*grid[:2], grid[2] * 0], np.array([rng.normal(0, 1), rng.normal(0, 1), 0.0]), body_r, 0.3 * warp
    )
    labels = np.zeros(hr, np.uint8)
    hu = np.where(body, _BODY, _AIR)
    occupied = np.zeros(hr, bool)
    # (label, HU, centre mm, radii mm); z > 0 is cranial
    organs: list[tuple[int, float, tuple[float, float, float], tuple[float, float, float]]] = [
        (1, _LIVER, (-15.0, -4.0, 12.0), (14.0, 12.0, 16.0)),
        (2, _SPLEEN, (17.0, 6.0, 10.0), (6.0, 8.0, 10.0)),
        (3, _KIDNEY, (-11.0, 12.0, -6.0), (5.0, 6.0, 10.0)),
        (3, _KIDNEY, (11.0, 12.0, -8.0), (5.0, 6.0, 10.0)),
        (0, _BONE, (0.0, 17.0, 0.0), (4.5, 4.5, 40.0)),
        (4, _AORTA, (4.0, 6.0, 0.0), (3.2, 3.2, 40.0)),
    ]
    step = min(site.spacing, site.thickness) / _SS
    for value, tissue, center, radii in organs:
        for attempt in range(30):
            scale = 0.9 ** (attempt // 10)
            c = np.asarray(center) + rng.normal(0, [2.0, 2.0, 3.0])
            r = np.asarray(radii) * rng.uniform(0.85, 1.15, 3) * scale
            mask = _ellipsoid(grid, c, r, warp) & body
            margin = binary_dilation(occupied, iterations=max(1, round(1.5 / step)))
            if mask.any() and not (mask & margin).any():
                break
        else:
            mask = mask & ~margin
        occupied |= mask
        labels[mask] = value
        hu[mask] = tissue + rng.normal(0, 4)
    for _ in range(int(rng.integers(2, 5))):  # bowel loops: organ-like HU, not labelled
        c = np.array([rng.normal(4, 6), rng.normal(-12, 3), rng.normal(-8, 8)])
        mask = (
            _ellipsoid(grid, c, rng.uniform(3.5, 6.5, 3), warp)
            & body
            & ~binary_dilation(occupied, iterations=1)
        )
        occupied |= mask
        hu[mask] = rng.uniform(25, 60)
    hu = hu + body * 12.0 * smooth_field(hr, 2.0 * _SS, rng)  # parenchymal texture

    blocks = (shape[0], _SS, shape[1], _SS, shape[2], _SS)
    hu_lr = hu.reshape(blocks).mean(axis=(1, 3, 5))
    votes = np.stack([(labels == k).reshape(blocks).mean(axis=(1, 3, 5)) for k in range(len(LABELS_3D))])
    label_lr = votes.argmax(axis=0).astype(np.uint8)
    img = site.contrast * hu_lr + site.shift
    if site.blur > 0:
        img = gaussian_filter(img, site.blur)
    if site.bias > 0:
        img = img + site.bias * smooth_field(shape, max(shape) / 4, rng)
    img = img + rng.normal(0, site.noise, size=img.shape)
    spacing = (site.spacing, site.spacing, site.thickness)
    return np.clip(np.round(img), -1024, 3071).astype(np.int16), label_lr, spacing


def synth_phantom3d(
    dest: Path,
    *,
    cases: int = 24,
    seed: int = 0,
    test_cases: int | None = None,
    n_sites: int = 3,
    test_only_sites: int = 1,
    sites: tuple[SiteStyle, ...] | None = None,
) -> Path:
    """Write the 3D phantom as an nnU-Net v2 raw dataset at `dest` (see module doc).

    Training cases cycle over the first `n_sites - test_only_sites` sites; test cases
    (default cases // 3) cycle over all `n_sites`."""
    styles = sites if sites is not None else SITES_3D[:n_sites]
    if sites is None and not 1 <= n_sites <= len(SITES_3D):
        raise DatasetError(f"phantom3d: n_sites must lie in 1..{len(SITES_3D)}, got {n_sites}")
    if not 0 <= test_only_sites < len(styles):
        raise DatasetError(f"phantom3d: test_only_sites must leave a training site ({len(styles)} site(s))")
    if cases < 2:
        raise DatasetError(f"phantom3d: needs at least 2 cases, got {cases}")
    n_test = cases // 3 if test_cases is None else test_cases
    train_sites = styles[: len(styles) - test_only_sites]
    recipe: dict[str, Any] = {
        "kind": "phantom3d",
        "version": _GENERATOR_VERSION,
        "cases": cases,
        "test_cases": n_test,
        "seed": seed,
        "test_only_sites": test_only_sites,
        "sites": [asdict(s) for s in styles],
    }

    def write_cases(tmp: Path) -> dict[str, str]:
        site_of: dict[str, str] = {}
        for index in range(cases + n_test):
            case_id = f"abd3d_{index:03d}"
            training = index < cases
            site = (
                train_sites[index % len(train_sites)] if training else styles[(index - cases) % len(styles)]
            )
            image, label, spacing = render_case3d(index, seed, site)
            img_dir, lab_dir = ("imagesTr", "labelsTr") if training else ("imagesTs", "labelsTs")
            save_nifti(image, tmp / img_dir / f"{case_id}_0000.nii.gz", spacing=spacing)
            save_nifti(label, tmp / lab_dir / f"{case_id}.nii.gz", spacing=spacing)
            site_of[case_id] = site.name
        return site_of

    meta = {
        "description": "Synthetic 3D abdominal CT phantom (medloop); sites differ in spacing, intensity, noise, blur",
        "channel_names": {"0": "CT"},
        "labels": LABELS_3D,
        "numTraining": cases,
        "licence": "CC0 (synthetic)",
        "test_only_sites": [s.name for s in styles[len(styles) - test_only_sites :]],
    }
    return build_dataset(Path(dest), recipe, meta, write_cases)
