"""Dice + cross-entropy plus soft clDice (Shit et al., CVPR 2021): a topology-aware term
that compares soft skeletons of prediction and reference.

Why it can help: thin, elongated structures (vessels, ducts) lose connectivity under
volume-overlap losses; clDice rewards keeping the centreline intact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EXTENSION_POINT = "loss"
ITERATIONS = 3  # soft-skeleton erosion steps
WEIGHT = 0.3  # of the clDice term beside Dice+CE


def _pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    dims = x.ndim - 2
    pool = F.max_pool3d if dims == 3 else F.max_pool2d
    if kind == "max":
        return pool(x, kernel_size=3, stride=1, padding=1)
    return -pool(-x, kernel_size=3, stride=1, padding=1)


def soft_skeleton(x: torch.Tensor) -> torch.Tensor:
    """Soft morphological skeleton of probabilities (B, K, *spatial)."""
    opened = _pool(_pool(x, "min"), "max")
    skel = F.relu(x - opened)
    for _ in range(ITERATIONS):
        x = _pool(x, "min")
        opened = _pool(_pool(x, "min"), "max")
        delta = F.relu(x - opened)
        skel = skel + F.relu(delta - skel * delta)
    return skel


class DiceCEclDice(nn.Module):
    def __init__(self, deep_supervision: bool) -> None:
        super().__init__()
        from monai.losses.dice import DiceCELoss

        self.base = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        self.deep_supervision = deep_supervision

    def _one(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[2:] != logits.shape[2:]:
            target = F.interpolate(target.float(), size=logits.shape[2:], mode="nearest")
        base: torch.Tensor = self.base(logits, target)
        probs = torch.softmax(logits.float(), dim=1)[:, 1:]
        onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        sp, sr = soft_skeleton(probs), soft_skeleton(onehot)
        eps = 1e-6
        tprec = ((sp * onehot).sum() + eps) / (sp.sum() + eps)
        tsens = ((sr * probs).sum() + eps) / (sr.sum() + eps)
        cldice = 1.0 - 2.0 * tprec * tsens / (tprec + tsens)
        return base + WEIGHT * cldice

    def forward(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        if isinstance(output, list):  # deep supervision heads, full resolution first
            weights = [0.5**i for i in range(len(output))]
            total = sum(w * self._one(o, target) for w, o in zip(weights, output, strict=True))
            return torch.as_tensor(total) / sum(weights)
        return self._one(output, target)


def build_loss(config: Any, deep_supervision: bool) -> nn.Module:
    return DiceCEclDice(deep_supervision)
