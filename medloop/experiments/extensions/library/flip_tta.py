"""Test-time augmentation: average the softmax over every combination of flips of the
spatial axes (4 passes in 2D, 8 in 3D).

Why it can help: the model's errors are not flip-equivariant, so averaging mirrored
predictions cancels part of them (nnU-Net mirrors along all axes at inference).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

EXTENSION_POINT = "tta"


def tta(predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    spatial = list(range(2, image.ndim))
    total: torch.Tensor | None = None
    n = 0
    for k in range(len(spatial) + 1):
        for axes in itertools.combinations(spatial, k):
            flipped = torch.flip(image, dims=list(axes)) if axes else image
            probs = predict(flipped)
            probs = torch.flip(probs, dims=list(axes)) if axes else probs
            total = probs if total is None else total + probs
            n += 1
    assert total is not None
    return total / n
