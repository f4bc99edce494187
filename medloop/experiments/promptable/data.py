"""The model's view of a volume (a region of interest, ROI) and simulated training prompts.

An ROI maps volume voxel indices v (reader axis order) to model-input coordinates r:
- `volume`: the whole volume resized to the model's cube, r = (v + 0.5) * S / n - 0.5;
- `crop`: a cube of S native voxels whose centre is the first prompt, r = v - offset.
Training prompts come from the training labels (inside the job, as for segmentation):
a positive click inside the target, then up to `train_clicks - 1` more, positive inside
it or negative in a 2-voxel shell around it (where corrective clicks land), and the
target's bounding box (jittered by a voxel) when the config prompts with a box. Every
second batch also gets a click on the model's own current error (`corrective_click`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

from medloop.core.specs import PromptableConfig
from medloop.experiments.segmentation.data import CaseData


@dataclass(frozen=True)
class Roi:
    size: int
    shape: tuple[int, int, int]  # the volume's spatial shape
    offset: tuple[int, int, int] | None  # crop: the cube's first voxel; None: whole volume resized

    @classmethod
    def around(cls, size: int, shape: tuple[int, int, int], centre: tuple[int, int, int]) -> Roi:
        return cls(size, shape, tuple(int(c) - size // 2 for c in centre))  # type: ignore[arg-type]

    def points(self, voxels: NDArray[np.floating]) -> NDArray[np.float32]:
        """(N, 3) volume voxel indices -> model-input coordinates."""
        v = np.asarray(voxels, dtype=np.float32).reshape(-1, 3)
        if self.offset is None:
            scale = np.asarray([self.size / n for n in self.shape], dtype=np.float32)
            return (v + 0.5) * scale - 0.5
        return v - np.asarray(self.offset, dtype=np.float32)

    def image(self, image: NDArray[np.float32]) -> Tensor:
        """(C, X, Y, Z) -> (C, S, S, S) float tensor (zero outside the volume for crops)."""
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        s = self.size
        if self.offset is None:
            return F.interpolate(t[None], size=(s, s, s), mode="trilinear", align_corners=False)[0]
        return self._crop(t, 0.0)

    def mask(self, mask: NDArray[np.bool_]) -> Tensor:
        """(X, Y, Z) bool -> (S, S, S) float (nearest for resizing)."""
        t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        s = self.size
        if self.offset is None:
            return F.interpolate(t[None], size=(s, s, s), mode="nearest")[0, 0]
        return self._crop(t, 0.0)[0]

    def _crop(self, t: Tensor, fill: float) -> Tensor:
        assert self.offset is not None
        s = self.size
        out = t.new_full((t.shape[0], s, s, s), fill)
        src, dst = [], []
        for o, n in zip(self.offset, self.shape, strict=True):
            lo, hi = max(o, 0), min(o + s, n)
            src.append(slice(lo, max(hi, lo)))
            dst.append(slice(lo - o, max(hi, lo) - o))
        out[(slice(None), *dst)] = t[(slice(None), *src)]
        return out

    def back(self, logits: Tensor) -> NDArray[np.bool_]:
        """(S, S, S) mask logits -> (X, Y, Z) bool mask on the volume (empty outside a crop)."""
        if self.offset is None:
            up = F.interpolate(
                logits[None, None].float(), size=self.shape, mode="trilinear", align_corners=False
            )
            return np.asarray((up[0, 0] > 0).cpu().numpy(), dtype=bool)
        out = np.zeros(self.shape, dtype=bool)
        inside = (logits > 0).cpu().numpy()
        src, dst = [], []
        for o, n in zip(self.offset, self.shape, strict=True):
            lo, hi = max(o, 0), min(o + self.size, n)
            dst.append(slice(lo, max(hi, lo)))
            src.append(slice(lo - o, max(hi, lo) - o))
        out[tuple(dst)] = inside[tuple(src)]
        return out


@dataclass
class Batch:
    images: Tensor  # (B, C, S, S, S)
    points: Tensor  # (B, K, 3) model-input coordinates
    labels: Tensor  # (B, K) 1 positive, 0 negative, -1 padding
    boxes: Tensor | None  # (B, 6)
    masks: Tensor  # (B, 1, S, S, S) the target

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.images.to(device),
            self.points.to(device),
            self.labels.to(device),
            None if self.boxes is None else self.boxes.to(device),
            self.masks.to(device),
        )


class PromptSampler:
    """Training samples: a random (case, class) target, its ROI and simulated prompts."""

    def __init__(self, cases: list[CaseData], config: PromptableConfig, size: int, seed: int) -> None:
        self.config, self.size = config, size
        self.rng = np.random.default_rng(seed)
        self.cases = cases
        self.targets: list[tuple[int, int]] = []
        self._resized: dict[int, tuple[Tensor, NDArray[np.uint8]]] = {}
        for i, case in enumerate(cases):
            assert case.label is not None
            label = case.label[0]
            if config.roi == "volume":  # resized once: every sample of the case reuses it
                roi = Roi(size, case.spatial, None)
                image = roi.image(case.image)
                t = torch.from_numpy(label.astype(np.float32))[None, None]
                small = F.interpolate(t, size=(size,) * 3, mode="nearest")[0, 0].numpy().astype(np.uint8)
                self._resized[i] = (image, small)
                label = small
            for value in np.unique(label).tolist():
                if value != 0:
                    self.targets.append((i, int(value)))
        if not self.targets:
            raise ValueError("no training case has a labelled (non-zero) voxel to prompt")

    def sample(self) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:
        case_i, value = self.targets[int(self.rng.integers(len(self.targets)))]
        case = self.cases[case_i]
        if self.config.roi == "volume":
            image, small = self._resized[case_i]
            mask_np = small == value
        else:
            assert case.label is not None
            full = case.label[0] == value
            inside = np.argwhere(full)
            centre = inside[int(self.rng.integers(len(inside)))]
            roi = Roi.around(self.size, case.spatial, (int(centre[0]), int(centre[1]), int(centre[2])))
            image = roi.image(case.image)
            mask_np = roi.mask(full).numpy() > 0.5
        points, labels = self._clicks(mask_np)
        box = self._box(mask_np) if self.config.prompt == "box" else None
        return image, points, labels, box, torch.from_numpy(mask_np.astype(np.float32))[None]

    def _clicks(self, mask: NDArray[np.bool_]) -> tuple[Tensor, Tensor]:
        from scipy import ndimage

        k = self.config.train_clicks
        n = int(self.rng.integers(1, k + 1))
        inside = np.argwhere(mask)
        shell = np.argwhere(ndimage.binary_dilation(mask, iterations=2) & ~mask)
        pts = np.zeros((k, 3), dtype=np.float32)
        lab = np.full(k, -1, dtype=np.int64)
        for j in range(n):
            positive = j == 0 or len(shell) == 0 or self.rng.random() < 0.5
            pool = inside if positive else shell
            pts[j] = pool[int(self.rng.integers(len(pool)))]
            lab[j] = int(positive)
        return torch.from_numpy(pts), torch.from_numpy(lab)

    def _box(self, mask: NDArray[np.bool_]) -> Tensor:
        found = np.argwhere(mask)
        lo, hi = found.min(axis=0), found.max(axis=0)
        jitter = self.rng.integers(-1, 2, size=6)
        box = np.clip(np.concatenate([lo, hi]) + jitter, 0, self.size - 1)
        return torch.from_numpy(box.astype(np.float32))

    def batch(self, n: int) -> Batch:
        items = [self.sample() for _ in range(n)]
        boxes = None if items[0][3] is None else torch.stack([b for *_, b, _ in items if b is not None])
        return Batch(
            torch.stack([i[0] for i in items]),
            torch.stack([i[1] for i in items]),
            torch.stack([i[2] for i in items]),
            boxes,
            torch.stack([i[4] for i in items]),
        )


def corrective_click(model: torch.nn.Module, batch: Batch, rng: np.random.Generator) -> Batch:
    """The batch with one more click per sample where the model currently errs: a random
    voxel of its error (false negative: positive click, false positive: negative), placed in
    the first padding slot. SAM-style iterative training, so later clicks learn to correct."""
    with torch.no_grad():
        pred = model(batch.images, batch.points, batch.labels, batch.boxes)[:, 0] > 0
    target = batch.masks[:, 0] > 0.5
    points, labels = batch.points.clone(), batch.labels.clone()
    for i in range(points.shape[0]):
        free = (labels[i] == -1).nonzero()
        errors = (pred[i] ^ target[i]).nonzero()
        if len(free) == 0 or len(errors) == 0:
            continue
        voxel = errors[int(rng.integers(len(errors)))]
        slot = int(free[0])
        points[i, slot] = voxel.to(points.dtype)
        labels[i, slot] = int(bool(target[i][tuple(voxel.tolist())]))
    return Batch(batch.images, points, labels, batch.boxes, batch.masks)


def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy + soft Dice, per target, averaged."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    tgt = target.flatten(1)
    dice = (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) + 1)
    return bce + (1 - dice).mean()
