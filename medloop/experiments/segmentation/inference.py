"""Sliding-window inference with Gaussian blending and optional mirroring TTA, and the
job's own Dice (for internal validation and early stopping; the host recomputes its own).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from medloop.experiments.extensions import active

_SLICE_CHUNK = 32  # 2D slices predicted per forward batch


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA when the card supports it, else fp16; nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _probabilities(
    model: nn.Module,
    batch: torch.Tensor,
    patch: Sequence[int],
    *,
    overlap: float,
    tta: bool,
    amp: bool,
) -> torch.Tensor:
    """Softmax probabilities (B, K, *spatial) for a batch (B, C, *spatial)."""
    from monai.inferers.utils import sliding_window_inference

    dims = len(patch)
    flips: list[tuple[int, ...]] = [()]
    if tta:  # every combination of mirrored spatial axes, like nnU-Net
        axes = range(2, 2 + dims)
        flips = [combo for n in range(dims + 1) for combo in itertools.combinations(axes, n)]
    total: torch.Tensor | None = None
    for flip in flips:
        x = torch.flip(batch, flip) if flip else batch
        with autocast(batch.device, amp):
            logits = sliding_window_inference(
                x, list(patch), sw_batch_size=4, predictor=model, overlap=overlap, mode="gaussian"
            )
        assert isinstance(logits, torch.Tensor)
        probs = torch.softmax(logits.float(), dim=1)
        probs = torch.flip(probs, flip) if flip else probs
        total = probs if total is None else total + probs
    assert total is not None
    return total / len(flips)


def _predict(
    model: nn.Module, batch: torch.Tensor, patch: Sequence[int], *, overlap: float, tta: bool, amp: bool
) -> torch.Tensor:
    """Sliding-window probabilities, through a code hypothesis's test-time augmentation
    when the trial has one (it wraps the plain predictor)."""
    custom = active("tta")
    if custom is None:
        return _probabilities(model, batch, patch, overlap=overlap, tta=tta, amp=amp)
    out: torch.Tensor = custom(
        lambda x: _probabilities(model, x, patch, overlap=overlap, tta=False, amp=amp), batch
    )
    return out


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    image: NDArray[np.float32],
    patch: Sequence[int],
    device: torch.device,
    *,
    overlap: float = 0.5,
    tta: bool = False,
    amp: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Softmax probabilities (K, X, Y, Z) on `device` for a normalised image (C, X, Y, Z).
    A 2D `patch` predicts slice by slice along Z."""
    model.eval()
    fmt = _memory_format(len(patch)) if channels_last else torch.contiguous_format
    if len(patch) == 3:
        x = torch.from_numpy(image[None]).to(device).contiguous(memory_format=fmt)
        return _predict(model, x, patch, overlap=overlap, tta=tta, amp=amp)[0]
    slices = []
    stack = np.moveaxis(image, -1, 0)  # (Z, C, X, Y)
    for start in range(0, stack.shape[0], _SLICE_CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(stack[start : start + _SLICE_CHUNK])).to(device)
        slices.append(
            _predict(model, x.contiguous(memory_format=fmt), patch, overlap=overlap, tta=tta, amp=amp)
        )
    return torch.cat(slices).permute(1, 2, 3, 0)  # (Z, K, X, Y) -> (K, X, Y, Z)


def predict_case(
    model: nn.Module,
    image: NDArray[np.float32],
    patch: Sequence[int],
    device: torch.device,
    *,
    overlap: float = 0.5,
    tta: bool = False,
    amp: bool = False,
    channels_last: bool = False,
) -> NDArray[np.uint8]:
    """Label map (X, Y, Z) uint8 for a normalised image (C, X, Y, Z)."""
    probs = predict_probabilities(
        model, image, patch, device, overlap=overlap, tta=tta, amp=amp, channels_last=channels_last
    )
    return np.asarray(probs.argmax(0).to(torch.uint8).cpu().numpy())


def _memory_format(dims: int) -> torch.memory_format:
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def dice_per_class(
    pred: NDArray[np.integer], ref: NDArray[np.integer], labels: dict[str, int]
) -> dict[str, float]:
    """Dice per foreground class; a class absent from both maps scores 1.0."""
    out: dict[str, float] = {}
    for name, value in labels.items():
        if value == 0:
            continue
        p, r = pred == value, ref == value
        denom = int(p.sum()) + int(r.sum())
        out[name] = 1.0 if denom == 0 else 2.0 * int((p & r).sum()) / denom
    return out
