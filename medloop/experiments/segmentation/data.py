"""Loading the staged split into memory, intensity normalisation and patch geometry.

Arrays are channel-first: images (C, *spatial) float32, labels (1, *spatial) uint8, with
spatial = (X, Y, Z) in the reader's axis order. A 2D configuration trains on the Z slices
of each case: a thin 2D case (X, Y, 1) is one slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medloop.core.errors import DatasetError
from medloop.core.specs import SegConfig
from medloop.experiments.dataset.imageio import Volume, read_volume
from medloop.experiments.extensions import active

_FG_SAMPLES_PER_CASE = 10_000  # voxels sampled per case for CT intensity statistics


@dataclass
class CaseData:
    id: str
    image: NDArray[np.float32]  # (C, X, Y, Z), normalised once `Normalizer.apply` ran
    label: NDArray[np.uint8] | None  # (1, X, Y, Z)
    reference: Volume  # channel-0 image: geometry for writing the prediction
    site: str | None = None

    @property
    def spatial(self) -> tuple[int, int, int]:
        x, y, z = self.image.shape[1:]
        return int(x), int(y), int(z)


def load_cases(
    images_dir: Path,
    labels_dir: Path | None,
    case_ids: list[str],
    *,
    n_channels: int,
    ending: str,
    sites: dict[str, str],
) -> list[CaseData]:
    """Read the named cases from a staged folder; a missing or malformed file is a DatasetError."""
    out = []
    for case_id in case_ids:
        channels = [read_volume(images_dir / f"{case_id}_{c:04d}{ending}") for c in range(n_channels)]
        ref = channels[0]
        for vol in channels:
            if vol.shape != ref.shape:
                raise DatasetError(f"{vol.path}: shape {vol.shape} differs from channel 0 {ref.shape}")
        image = np.stack([_as_3d(v.array, v.path) for v in channels]).astype(np.float32)
        if not np.isfinite(image).all():
            raise DatasetError(f"case {case_id}: image contains NaN or Inf")
        label = None
        if labels_dir is not None:
            lab = read_volume(labels_dir / f"{case_id}{ending}", dtype=np.float32)
            if lab.shape != ref.shape:
                raise DatasetError(f"{lab.path}: label shape {lab.shape} differs from image {ref.shape}")
            label = np.rint(_as_3d(lab.array, lab.path))[None].astype(np.uint8)
        out.append(CaseData(case_id, image, label, ref, sites.get(case_id)))
    return out


def _as_3d(array: NDArray[Any], path: Path) -> NDArray[Any]:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        return array
    if array.ndim == 4 and array.shape[3] == 1:
        return array[..., 0]
    raise DatasetError(f"{path}: expected a 2D or 3D image per channel file, got shape {array.shape}")


@dataclass
class Normalizer:
    """nnU-Net's intensity normalisation, fitted on the training cases.

    A channel named CT is clipped to the 0.5/99.5 percentiles of the foreground voxels of
    all training cases and z-scored with their mean and std; other channels are z-scored
    per image.
    """

    schemes: list[str]
    ct: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # lo, hi, mean, std

    @classmethod
    def fit(cls, channel_names: dict[str, str], cases: list[CaseData], seed: int = 0) -> Normalizer:
        schemes = [
            "ct" if channel_names[str(c)].strip().lower() == "ct" else "zscore"
            for c in range(len(channel_names))
        ]
        norm = cls(schemes)
        rng = np.random.default_rng(seed)
        for c, scheme in enumerate(schemes):
            if scheme != "ct":
                continue
            samples = []
            for case in cases:
                values = case.image[c][case.label[0] > 0] if case.label is not None else case.image[c].ravel()
                if values.size > _FG_SAMPLES_PER_CASE:
                    values = rng.choice(values, _FG_SAMPLES_PER_CASE, replace=False)
                samples.append(values)
            pooled = np.concatenate(samples) if samples else np.zeros(1, np.float32)
            if pooled.size == 0:
                pooled = np.concatenate([case.image[c].ravel() for case in cases])
            lo, hi = np.percentile(pooled, [0.5, 99.5])
            clipped = np.clip(pooled, lo, hi)
            norm.ct[c] = (float(lo), float(hi), float(clipped.mean()), float(max(clipped.std(), 1e-8)))
        return norm

    def apply(self, image: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.empty_like(image, dtype=np.float32)
        for c, scheme in enumerate(self.schemes):
            if scheme == "ct":
                lo, hi, mean, std = self.ct[c]
                out[c] = (np.clip(image[c], lo, hi) - mean) / std
            else:
                mean, std = float(image[c].mean()), float(image[c].std())
                out[c] = (image[c] - mean) / max(std, 1e-8)
        return out

    def describe(self) -> dict[str, Any]:
        return {"schemes": self.schemes, "ct": {str(k): list(v) for k, v in self.ct.items()}}


def parse_patch(text: str) -> list[int] | None:
    if text == "auto":
        return None
    return [int(v) for v in text.split("x")]


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def auto_patch(config: SegConfig, cases: list[CaseData], max_voxels_3d: int = 96**3) -> list[int]:
    """The training patch when `patch_size` is auto.

    2D: the largest slice. 3D: the median case shape, shrunk along its largest axis until it
    holds at most `max_voxels_3d` voxels (the job-side fallback; the host's plans set
    patch_size explicitly from a memory budget).
    """
    shapes = np.asarray([c.spatial for c in cases])
    if config.spatial_dims == 2:
        return [int(shapes[:, 0].max()), int(shapes[:, 1].max())]
    patch = [int(v) for v in np.median(shapes, axis=0)]
    while math.prod(patch) > max_voxels_3d:
        axis = int(np.argmax(patch))
        patch[axis] = max(8, int(patch[axis] * 0.9))
    return patch


def fit_patch(patch: list[int], divisor: list[int]) -> list[int]:
    return [round_up(p, d) for p, d in zip(patch, divisor, strict=True)]


def training_items(config: SegConfig, cases: list[CaseData]) -> list[dict[str, NDArray[Any]]]:
    """Items for the training dataset: whole cases (3D) or every slice (2D)."""
    items: list[dict[str, NDArray[Any]]] = []
    for case in cases:
        assert case.label is not None
        if config.spatial_dims == 3:
            items.append({"image": case.image, "label": case.label})
            continue
        for z in range(case.image.shape[-1]):
            items.append({"image": case.image[..., z], "label": case.label[..., z]})
    return items


# ---------------------------------------------------------------- resampling


def parse_spacing(text: str) -> list[float] | None:
    if text in ("none", "auto"):
        return None
    return [float(v) for v in text.split("x")]


def target_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: list[float]) -> tuple[int, ...]:
    """Shape after resampling the first len(target) axes from `spacing` to `target` (mm)."""
    out = list(shape)
    for axis, t in enumerate(target):
        out[axis] = max(1, round(shape[axis] * spacing[axis] / t))
    return tuple(out)


def resample(array: NDArray[Any], new_shape: tuple[int, ...], order: int) -> NDArray[Any]:
    """Resample a channel-first array (C, X, Y, Z) to spatial `new_shape`: order 3 for images,
    0 (nearest) for labels."""
    from scipy.ndimage import zoom

    if tuple(array.shape[1:]) == tuple(new_shape):
        return array
    factors = [n / o for n, o in zip(new_shape, array.shape[1:], strict=True)]
    return np.stack(
        [zoom(ch, factors, order=order, mode="nearest", grid_mode=order == 0) for ch in array]
    ).astype(array.dtype)


def train_transform(
    config: SegConfig, items: list[dict[str, NDArray[Any]]], patch: list[int], seed: int
) -> Any:
    """The seeded training transform: cached typing/padding head, then random sampling and
    the augmentation preset (a crop only when items are not already one patch)."""
    from monai.transforms.compose import Compose

    from medloop.experiments.segmentation.augment import deterministic_transforms, random_transforms

    shapes = {tuple(item["image"].shape[1:]) for item in items}
    item_shape = list(next(iter(shapes))) if len(shapes) == 1 else None
    padded = [max(s, p) for s, p in zip(item_shape, patch, strict=True)] if item_shape else None
    custom = active("augmentation")  # a code hypothesis's transforms run after the preset
    extra: list[Any] = list(custom(config, list(patch))) if custom is not None else []
    transform = Compose(
        deterministic_transforms(patch) + random_transforms(config.augmentation, patch, padded) + extra
    )
    transform.set_random_state(seed=seed % 2**32)
    return transform


def make_loader(
    config: SegConfig, items: list[dict[str, NDArray[Any]]], patch: list[int], seed: int, device: Any
) -> Any:
    """CacheDataset (deterministic head cached in memory) + DataLoader drawing exactly
    `iterations` batches, with replacement, from a seeded sampler."""
    import torch
    from monai.data.dataloader import DataLoader
    from monai.data.dataset import CacheDataset

    transform = train_transform(config, items, patch, seed)
    # copy_cache=False: the random transforms never modify their input in place.
    dataset = CacheDataset(items, transform=transform, cache_rate=1.0, progress=False, copy_cache=False)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=config.iterations * config.batch_size, generator=generator
    )
    cuda = getattr(device, "type", "cpu") == "cuda"
    workers = min(8, max(0, len(_cpus()) - 1)) if cuda else 0  # CPU trials stay on their own thread
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
    )


def _cpus() -> set[int]:
    import os

    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))
