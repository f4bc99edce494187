"""Deep-supervision weighting as nnU-Net does it: Dice+CE on every head with weights
halving per resolution level, the lowest-resolution head weighted zero, normalised.

Why it can help: the coarsest head's target is too blurred to be useful and its gradient
competes with the full-resolution output (only changes networks with deep supervision).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EXTENSION_POINT = "loss"


class WeightedDeepSupervision(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from monai.losses.dice import DiceCELoss

        self.base = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    def forward(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        heads = output if isinstance(output, list) else [output]
        weights = [0.5**i for i in range(len(heads))]
        if len(heads) > 1:
            weights[-1] = 0.0
        total = torch.zeros((), device=target.device)
        for w, logits in zip(weights, heads, strict=True):
            if w == 0.0:
                continue
            t = target
            if t.shape[2:] != logits.shape[2:]:
                t = F.interpolate(target.float(), size=logits.shape[2:], mode="nearest")
            total = total + w * self.base(logits, t)
        return total / sum(weights)


def build_loss(config: Any, deep_supervision: bool) -> nn.Module:
    return WeightedDeepSupervision()
