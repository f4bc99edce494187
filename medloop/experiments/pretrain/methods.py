"""Self-supervised objectives on a MONAI segmentation network.

- `S2UniSeg`: a student network and its EMA (momentum) teacher produce dense features;
  pseudo-masks are made in the loop from the teacher's features by agglomerative pooling
  (pseudomask.py); every mask is a query whose embedding is the mask-average of the
  features; the student's query embeddings are distilled towards the teacher's (DINO-style
  cross-entropy between sharpened, centred teacher and student prototype distributions).
  The student sees a stronger intensity augmentation of the same crop, so the masks align.
- `MaskedImageModelling`: random blocks of the input are zeroed and the network
  reconstructs them (mean squared error on the masked voxels), the baseline.

Both train the network that `build_network` makes for segmentation, with a different
output head; `transferable_state` drops that head, so the checkpoint loads into a
segmentation network by name (transfer.initialise).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from medloop.experiments.pretrain.pseudomask import agglomerate, mask_matrix

TEACHER_TEMP = 0.04
STUDENT_TEMP = 0.1
CENTER_MOMENTUM = 0.9


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter
    (buffers are copied)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)


def _pool(features: torch.Tensor, stride: int) -> torch.Tensor:
    if stride == 1:
        return features
    pool = nn.functional.avg_pool3d if features.ndim == 5 else nn.functional.avg_pool2d
    return pool(features, kernel_size=stride, stride=stride, ceil_mode=True)


def _augment(x: torch.Tensor, gen: torch.Generator, *, strong: bool) -> torch.Tensor:
    """Per-sample intensity scale/shift; strong adds Gaussian noise. Geometry is unchanged,
    so masks made on one view index the other."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    spread = 0.3 if strong else 0.1
    scale = 1 + spread * (2 * torch.rand(shape, generator=gen) - 1)
    shift = spread * (2 * torch.rand(shape, generator=gen) - 1)
    out = x * scale.to(x.device) + shift.to(x.device)
    if strong:
        out = out + 0.2 * torch.randn(x.shape, generator=gen).to(x.device)
    return out


class Head(nn.Module):
    """Projection of a query embedding to prototype logits."""

    def __init__(self, dim: int, prototypes: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, prototypes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(nn.functional.normalize(x, dim=-1))
        return out


@dataclass
class StepInfo:
    loss: float
    mask_seconds: float = 0.0
    masks: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class S2UniSeg(nn.Module):
    """Student (backbone + head), EMA teacher, pseudo-masks from the teacher, query-wise
    self-distillation."""

    def __init__(
        self,
        backbone: nn.Module,
        embed_dim: int,
        prototypes: int,
        *,
        thresholds: tuple[float, ...],
        mask_stride: int,
        max_queries: int,
        momentum: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "head": Head(embed_dim, prototypes)})
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.center: torch.Tensor
        self.register_buffer("center", torch.zeros(prototypes))
        self.thresholds, self.stride, self.max_queries = thresholds, mask_stride, max_queries
        self.momentum = momentum
        self.gen = torch.Generator().manual_seed(seed)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.student.parameters())

    def backbone(self) -> nn.Module:
        found: nn.Module = self.student["backbone"]
        return found

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, StepInfo]:
        """x: (B, C, *patch) normalised crops."""
        with torch.no_grad():
            t_feat = _pool(self.teacher["backbone"](_augment(x, self.gen, strong=False)), self.stride)
        s_feat = _pool(self.student["backbone"](_augment(x, self.gen, strong=True)), self.stride)
        losses, t_outs = [], []
        mask_seconds, n_masks = 0.0, 0
        for b in range(x.shape[0]):
            tic = time.perf_counter()
            masks = agglomerate(t_feat[b].cpu(), self.thresholds)
            m = mask_matrix(masks, max_queries=self.max_queries).to(x.device)  # (Q, N)
            mask_seconds += time.perf_counter() - tic
            n_masks += m.shape[0]
            q_t = m @ t_feat[b].flatten(1).T  # (Q, D) mask-pooled teacher queries
            q_s = m @ s_feat[b].flatten(1).T
            with torch.no_grad():
                out_t = self.teacher["head"](q_t)
            out_s = self.student["head"](q_s)
            # KL(teacher || student): the cross-entropy minus the teacher's entropy (the same
            # gradient), so the curve shows agreement rather than the teacher sharpening
            log_t = torch.log_softmax((out_t - self.center) / TEACHER_TEMP, dim=-1)
            log_s = torch.log_softmax(out_s / STUDENT_TEMP, dim=-1)
            losses.append((log_t.exp() * (log_t - log_s)).sum(-1).mean())
            t_outs.append(out_t)
        with torch.no_grad():
            batch_center = torch.cat(t_outs).mean(0)
            self.center.mul_(CENTER_MOMENTUM).add_(batch_center, alpha=1 - CENTER_MOMENTUM)
        loss = torch.stack(losses).mean()
        return loss, StepInfo(float(loss.detach()), mask_seconds / x.shape[0], n_masks // x.shape[0])

    def after_step(self) -> None:
        ema_update(self.teacher, self.student, self.momentum)


class MaskedImageModelling(nn.Module):
    """Reconstruct randomly masked blocks of the input."""

    def __init__(self, backbone: nn.Module, *, ratio: float, block: int, seed: int) -> None:
        super().__init__()
        self.net = backbone
        self.ratio, self.block = ratio, block
        self.gen = torch.Generator().manual_seed(seed)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def backbone(self) -> nn.Module:
        return self.net

    def block_mask(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, *patch) float mask, 1 where the input is hidden: whole blocks of `block` voxels."""
        spatial = x.shape[2:]
        coarse = [-(-s // self.block) for s in spatial]
        keep = torch.rand((x.shape[0], 1, *coarse), generator=self.gen) < self.ratio
        mask = keep.float()
        for axis, _ in enumerate(spatial, start=2):
            mask = mask.repeat_interleave(self.block, dim=axis)
        index = tuple(slice(0, s) for s in spatial)
        return mask[(slice(None), slice(None), *index)].to(x.device)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, StepInfo]:
        mask = self.block_mask(x)
        recon = self.net(x * (1 - mask))
        err = ((recon - x) ** 2 * mask).sum() / (mask.sum() * x.shape[1]).clamp_min(1.0)
        return err, StepInfo(float(err.detach()))

    def after_step(self) -> None:
        return None


def transferable_state(backbone: nn.Module, probe: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights without its output head: the tensors whose shapes differ from
    those of `probe`, the same network built with one more output channel."""
    theirs = probe.state_dict()
    return {
        k: v.detach().cpu().clone().contiguous()
        for k, v in backbone.state_dict().items()
        if k in theirs and theirs[k].shape == v.shape
    }
