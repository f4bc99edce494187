"""A synthetic multi-channel brain-like classification dataset, small enough for a CPU
(`medloop dataset synth DIR --kind brain-cls`).

Each patient gets a head: an ellipsoidal brain (white-matter core, grey-matter shell,
CSF ventricles) with smooth texture, and one or two focal lesions. Three channels mimic
MRI contrasts: T1 (WM bright, CSF dark), T2 (CSF bright) and FLAIR (CSF dark, lesions
bright). The class is in how the channels relate: every lesion is bright on FLAIR, but
only in class 1 ("active") is it also clearly dark on T1 (class 0 lesions barely change
T1). One channel alone is a weak cue; fusing FLAIR (where) with T1 (what) is the signal.
Patients may have two scans (sessions: same anatomy, fresh noise, a small shift); sites
change intensity scale, contrast and noise like scanners do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medloop.experiments.dataset.cls_manifest import write_labels_csv
from medloop.experiments.dataset.imageio import save_nifti
from medloop.experiments.dataset.synthetic import build_dataset, smooth_field

CHANNELS = {"0": "T1", "1": "T2", "2": "FLAIR"}
CLASSES = {"stable": 0, "active": 1}
# tissue -> (T1, T2, FLAIR) intensity before the site's scaling
_TISSUE = {"wm": (0.9, 0.45, 0.5), "gm": (0.6, 0.65, 0.6), "csf": (0.15, 1.0, 0.1)}
_LESION_FLAIR = 0.45  # added to FLAIR inside a lesion (both classes)
_LESION_T1 = {0: -0.05, 1: -0.5}  # added to T1 inside a lesion, by class
_SITES = ((1.0, 1.0, 0.03), (650.0, 1.2, 0.05), (1400.0, 0.85, 0.06))  # (scale, gamma, noise)
_GENERATOR_VERSION = 2


def _grid(size: int) -> list[NDArray[np.float64]]:
    axis = np.linspace(-1.0, 1.0, size)
    return list(np.meshgrid(axis, axis, axis, indexing="ij"))


def render_patient(
    size: int, label: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], dict[str, float]]:
    """(3, size, size, size) channel volumes in [0, ~1.5] and the lesion parameters."""
    x, y, z = _grid(size)
    radii = rng.uniform(0.7, 0.85, size=3)
    r = np.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2)
    r = r + 0.05 * smooth_field((size,) * 3, size / 8, rng)
    vent = np.sqrt((x / 0.22) ** 2 + (y / 0.12) ** 2 + (z / 0.3) ** 2) < 1.0
    tissue = np.where(r < 0.7, 0, np.where(r < 1.0, 1, 3))  # 0 wm, 1 gm, 3 outside
    tissue[vent & (r < 0.7)] = 2  # csf
    vol = np.zeros((3, size, size, size))
    for value, name in ((0, "wm"), (1, "gm"), (2, "csf")):
        for ch in range(3):
            vol[ch][tissue == value] = _TISSUE[name][ch]
    texture = 0.04 * smooth_field((size,) * 3, 1.5, rng)
    vol[:, tissue < 3] += texture[tissue < 3]
    n_lesions = int(rng.integers(1, 3))
    volume = 0.0
    for _ in range(n_lesions):
        centre = rng.uniform(-0.35, 0.35, size=3)
        radius = rng.uniform(0.2, 0.3)
        d = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
        blob = np.clip(1.0 - d / radius, 0.0, 1.0) ** 0.5 * (tissue < 3)
        vol[2] += _LESION_FLAIR * blob
        vol[0] += _LESION_T1[label] * blob
        vol[1] += 0.15 * blob  # T2: mildly bright, both classes
        volume += float((blob > 0).sum())
    return vol.astype(np.float32), {"lesions": float(n_lesions), "lesion_voxels": volume}


def _acquire(
    vol: NDArray[np.float32], site: int, shift: int, rng: np.random.Generator
) -> NDArray[np.float32]:
    scale, gamma, noise = _SITES[site % len(_SITES)]
    moved = np.roll(vol, shift, axis=1) if shift else vol
    out = np.clip(moved.astype(np.float64), 0.0, None) ** gamma + noise * rng.standard_normal(vol.shape)
    return (np.abs(out) * scale).astype(np.float32)


def synth_brain_cls(
    dest: Path,
    *,
    patients: int = 24,
    test_patients: int | None = None,
    sites: int = 2,
    size: int = 24,
    second_scan: float = 0.5,
    seed: int = 0,
) -> Path:
    """Write the dataset (nnU-Net-style images + labels.csv) and return its folder.
    `second_scan`: share of patients with a second session (another case id)."""
    n_test = patients // 3 if test_patients is None else test_patients
    recipe = {
        "kind": "brain-cls",
        "version": _GENERATOR_VERSION,
        "patients": patients,
        "test_patients": n_test,
        "sites": sites,
        "size": size,
        "second_scan": second_scan,
        "seed": seed,
    }

    def write_cases(tmp: Path) -> dict[str, str]:
        rng = np.random.default_rng(seed)
        rows: list[tuple[str, str, str, str]] = []
        site_of: dict[str, str] = {}
        total = patients + n_test
        labels = np.array([i % 2 for i in range(total)])
        rng.shuffle(labels)
        for p in range(total):
            folder = "imagesTr" if p < patients else "imagesTs"
            label = int(labels[p])
            site = p % max(sites, 1)
            anatomy, _ = render_patient(size, label, rng)
            patient = f"pat{p:03d}"
            sessions = 2 if rng.random() < second_scan else 1
            for s in range(sessions):
                case = f"{patient}_s{s + 1}"
                img = _acquire(anatomy, site, shift=s, rng=rng)
                for ch in range(img.shape[0]):
                    save_nifti(img[ch], tmp / folder / f"{case}_{ch:04d}.nii.gz", spacing=(2.0, 2.0, 2.0))
                name = next(n for n, v in CLASSES.items() if v == label)
                rows.append((case, name, patient, f"site_{chr(ord('a') + site)}"))
                site_of[case] = f"site_{chr(ord('a') + site)}"
        write_labels_csv(tmp, rows)
        return site_of

    meta = {
        "description": "synthetic brain-like lesion classification (medloop brain-cls)",
        "channel_names": CHANNELS,
        "labels": CLASSES,
        "task": "classification",
    }
    return build_dataset(Path(dest), recipe, meta, write_cases)
