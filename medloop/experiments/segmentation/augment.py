"""Training transforms: patch sampling plus the augmentation presets none / light / nnunet.

Applied per item by MONAI dictionary transforms on keys image (C, *spatial) and label
(1, *spatial). The deterministic head (typing, padding to the patch) is cached by
CacheDataset; everything random runs per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

KEYS = ("image", "label")


def deterministic_transforms(patch: Sequence[int]) -> list[Any]:
    from monai.transforms.croppad.dictionary import SpatialPadd
    from monai.transforms.utility.dictionary import EnsureTyped

    return [
        EnsureTyped(keys=KEYS, track_meta=False),
        SpatialPadd(keys=KEYS, spatial_size=list(patch), mode="constant"),
    ]


def random_transforms(preset: str, patch: Sequence[int], item_shape: Sequence[int] | None) -> list[Any]:
    """Random patch sampling (foreground-oversampled like nnU-Net: 1 in 3 centred on a
    labelled voxel) unless every item is exactly one patch, then the preset's augmentations."""
    from monai.transforms.croppad.dictionary import RandCropByPosNegLabeld
    from monai.transforms.intensity.dictionary import (
        RandAdjustContrastd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )
    from monai.transforms.spatial.dictionary import (
        RandAffined,
        RandFlipd,
        RandRotate90d,
        RandSimulateLowResolutiond,
    )

    dims = len(patch)
    out: list[Any] = []
    if item_shape is None or list(item_shape) != list(patch):
        out.append(
            RandCropByPosNegLabeld(
                keys=KEYS, label_key="label", spatial_size=list(patch), pos=1, neg=2, num_samples=1
            )
        )
    if preset == "none":
        return out
    flips = [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=axis) for axis in range(dims)]
    if preset == "light":
        out += flips
        if patch[0] == patch[1]:
            out.append(RandRotate90d(keys=KEYS, prob=0.5, spatial_axes=(0, 1)))
        out += [
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ]
        return out
    if preset == "nnunet":
        angle = math.radians(30)
        rotate = (angle,) if dims == 2 else (angle, angle, angle)
        out += [
            RandAffined(
                keys=KEYS,
                prob=0.2,
                rotate_range=rotate,
                scale_range=[(-0.3, 0.4)] * dims,  # scale factor 0.7..1.4
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
                spatial_size=list(patch),
            ),
            RandGaussianNoised(keys="image", prob=0.1, std=0.1),
            RandGaussianSmoothd(
                keys="image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)
            ),
            RandScaleIntensityd(keys="image", factors=0.25, prob=0.15),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.7, 1.5)),
            RandSimulateLowResolutiond(keys="image", prob=0.25, zoom_range=(0.5, 1.0)),
            *flips,
        ]
        return out
    raise ValueError(f"unknown augmentation preset {preset!r}")
