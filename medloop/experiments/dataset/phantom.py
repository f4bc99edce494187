"""Synthetic abdominal phantom: a real nnU-Net v2 raw dataset for demos and tests.

Each 2D case is a CT-like axial slice (HU, int16) stored as a thin NIfTI volume (H, W, 1):
air, a textured body, liver, spleen and two kidneys (one class), plus distractors a model
must learn to ignore (vertebra, bowel loops). Shapes are jittered ellipses with smooth
boundary harmonics, drawn without overlap at 4x resolution and averaged down, so edges
carry partial-volume values. Sites differ like scanners do: intensity shift and contrast,
noise, blur, pixel spacing and a smooth bias field. Everything is a function of the seed
and the case index.
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

LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
_SUPERSAMPLE = 4
_GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SiteStyle:
    """How one scanner/site renders the same anatomy."""

    name: str
    shift: float = 0.0  # HU added after contrast
    contrast: float = 1.0  # multiplier of the HU values
    noise: float = 20.0  # HU, std of white noise
    blur: float = 0.0  # pixels, Gaussian sigma (coarser scanner resolution)
    spacing: float = 1.0  # mm per pixel in-plane
    bias: float = 0.0  # HU (or image units), amplitude of a smooth additive bias field
    thickness: float = 5.0  # mm, slice thickness (the 2D phantom stores one slice)


DEFAULT_SITES = (
    SiteStyle("site_a", shift=0.0, contrast=1.0, noise=22.0, blur=0.0, spacing=1.0, bias=0.0),
    SiteStyle("site_b", shift=35.0, contrast=0.8, noise=34.0, blur=0.8, spacing=1.2, bias=25.0),
)

# Tissue HU values (portal-venous phase CT, roughly).
_AIR, _BODY, _LIVER, _SPLEEN, _KIDNEY, _BONE = -1000.0, 15.0, 62.0, 48.0, 150.0, 450.0


def _blob(
    grid: tuple[NDArray[np.float64], NDArray[np.float64]],
    center: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    rng: np.random.Generator,
    wobble: float = 0.12,
) -> NDArray[np.bool_]:
    """An ellipse (mm) whose radius is modulated by harmonics 2..4: organ-like outlines."""
    x, y = grid
    step = float(x[1, 0] - x[0, 0])
    # only the bounding box can be inside: r < 1 + sum(wobble) <= 1.4
    reach = max(radii) * (1 + 3 * wobble) / step
    ci = (center[0] - float(x[0, 0])) / step
    cj = (center[1] - float(y[0, 0])) / step
    i0, i1 = max(0, int(ci - reach) - 1), min(x.shape[0], int(ci + reach) + 2)
    j0, j1 = max(0, int(cj - reach) - 1), min(x.shape[1], int(cj + reach) + 2)
    mask = np.zeros(x.shape, dtype=bool)
    if i0 >= i1 or j0 >= j1:
        return mask
    dx, dy = x[i0:i1, j0:j1] - center[0], y[i0:i1, j0:j1] - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / radii[0]
    v = (-sin * dx + cos * dy) / radii[1]
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    boundary = np.ones_like(r)
    for k in (2, 3, 4):
        boundary += rng.uniform(0, wobble) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    mask[i0:i1, j0:j1] = r < boundary
    return mask


def _place(
    grid: tuple[NDArray[np.float64], NDArray[np.float64]],
    occupied: NDArray[np.bool_],
    inside: NDArray[np.bool_],
    center: tuple[float, float],
    radii: tuple[float, float],
    rng: np.random.Generator,
    jitter: float,
) -> NDArray[np.bool_]:
    """Draw a blob near `center` that stays inside `inside` and off `occupied`; shrink if needed."""
    from scipy.ndimage import binary_dilation

    margin = binary_dilation(occupied, iterations=2 * _SUPERSAMPLE)
    scale = 1.0
    for attempt in range(40):
        c = (center[0] + rng.normal(0, jitter), center[1] + rng.normal(0, jitter))
        r = (radii[0] * scale * rng.uniform(0.85, 1.15), radii[1] * scale * rng.uniform(0.85, 1.15))
        mask = _blob(grid, c, r, rng.uniform(-0.35, 0.35), rng)
        if not (mask & margin).any() and not (mask & ~inside).any():
            return mask
        if attempt % 8 == 7:
            scale *= 0.85
    return np.zeros_like(occupied)


def render_case(
    index: int, seed: int, site: SiteStyle, size: int = 64
) -> tuple[NDArray[np.int16], NDArray[np.uint8]]:
    """One phantom slice: (image HU int16 (size, size), label uint8 (size, size))."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, index])
    hr = size * _SUPERSAMPLE
    step = site.spacing / _SUPERSAMPLE
    # world coordinates (mm) of the high-resolution pixel centres, origin at the image centre
    coords = (np.arange(hr) - (hr - 1) / 2) * step
    grid = np.meshgrid(coords, coords, indexing="ij")
    half = 27.0  # mm, half-width of an average body

    body = _blob(
        grid,
        (rng.normal(0, 1.5), rng.normal(0, 1.5)),
        (half * rng.uniform(0.9, 1.05), half * 0.75),
        0.0,
        rng,
        0.04,
    )
    labels = np.zeros((hr, hr), dtype=np.uint8)
    hu = np.full((hr, hr), _AIR)
    hu[body] = _BODY
    occupied = np.zeros_like(body)
    # (label, HU, centre in units of `half`, radii in units of `half`)
    organs = [
        (1, _LIVER, (-0.36, -0.05), (0.34, 0.30)),
        (2, _SPLEEN, (0.48, 0.08), (0.14, 0.20)),
        (3, _KIDNEY, (-0.30, 0.38), (0.10, 0.15)),
        (3, _KIDNEY, (0.30, 0.38), (0.10, 0.15)),
        (0, _BONE, (0.0, 0.50), (0.11, 0.11)),
    ]
    for value, tissue, (cx, cy), (rx, ry) in organs:
        mask = _place(grid, occupied, body, (cx * half, cy * half), (rx * half, ry * half), rng, 0.05 * half)
        occupied |= mask
        labels[mask] = value
        hu[mask] = tissue + rng.normal(0, 4)
    for _ in range(int(rng.integers(2, 5))):  # bowel loops: organ-like HU, not labelled
        radius = rng.uniform(0.06, 0.11) * half
        mask = _place(
            grid,
            occupied,
            body,
            (rng.normal(0.1, 0.15) * half, -0.3 * half),
            (radius, radius),
            rng,
            0.08 * half,
        )
        occupied |= mask
        hu[mask] = rng.uniform(25, 60)
    hu += body * 12.0 * smooth_field((hr, hr), 2.0 * _SUPERSAMPLE, rng)  # parenchymal texture

    # partial volume: average the HU over each 4x4 block; label = majority in the block
    hu_lr = hu.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    votes = np.stack(
        [(labels == k).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3)) for k in range(4)]
    )
    label_lr = votes.argmax(axis=0).astype(np.uint8)

    img = site.contrast * hu_lr + site.shift
    if site.blur > 0:
        img = gaussian_filter(img, site.blur)
    if site.bias > 0:
        img += site.bias * smooth_field((size, size), size / 4, rng)
    img += rng.normal(0, site.noise, size=img.shape)
    return np.clip(np.round(img), -1024, 3071).astype(np.int16), label_lr


def synth_phantom(
    dest: Path,
    *,
    cases: int = 48,
    seed: int = 0,
    test_cases: int | None = None,
    size: int = 64,
    sites: tuple[SiteStyle, ...] = DEFAULT_SITES,
) -> Path:
    """Write the 2D phantom as an nnU-Net v2 raw dataset at `dest` and return `dest`.

    Layout: dataset.json, sites.json, imagesTr/labelsTr (`cases` cases), imagesTs/labelsTs
    (`test_cases`, default cases // 3). Sites alternate over cases. Written to a temporary
    folder and renamed, so `dest` is complete or absent; an existing dataset made with
    the same arguments is reused, anything else at `dest` is an error.
    """
    if cases < 2:
        raise DatasetError(f"phantom: needs at least 2 cases, got {cases}")
    if not sites:
        raise DatasetError("phantom: needs at least one site")
    n_test = cases // 3 if test_cases is None else test_cases
    recipe: dict[str, Any] = {
        "kind": "phantom",
        "version": _GENERATOR_VERSION,
        "cases": cases,
        "test_cases": n_test,
        "seed": seed,
        "size": size,
        "sites": [asdict(s) for s in sites],
    }

    def write_cases(tmp: Path) -> dict[str, str]:
        site_of: dict[str, str] = {}
        for index in range(cases + n_test):
            case_id = f"phantom_{index:03d}"
            site = sites[index % len(sites)]
            image, label = render_case(index, seed, site, size)
            spacing = (site.spacing, site.spacing, site.thickness)
            img_dir, lab_dir = ("imagesTr", "labelsTr") if index < cases else ("imagesTs", "labelsTs")
            save_nifti(image[:, :, None], tmp / img_dir / f"{case_id}_0000.nii.gz", spacing=spacing)
            save_nifti(label[:, :, None], tmp / lab_dir / f"{case_id}.nii.gz", spacing=spacing)
            site_of[case_id] = site.name
        return site_of

    meta = {
        "description": "Synthetic 2D abdominal CT phantom (medloop); sites differ in intensity, noise, blur, spacing",
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": cases,
        "licence": "CC0 (synthetic)",
    }
    return build_dataset(Path(dest), recipe, meta, write_cases)
