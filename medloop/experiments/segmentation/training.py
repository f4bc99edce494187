"""The training loop: losses, optimisers, LR schedules, epochs with internal validation,
early stopping and bounded checkpoints (last + best).

An "epoch" is `config.epoch_iterations` optimiser steps (nnU-Net counts 250). The loop
keeps per-iteration work to what a plain MONAI loop does; the loss is read back to the CPU
only at progress points, so CUDA runs asynchronously between them.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medloop.core.specs import SegConfig
from medloop.experiments.extensions import active
from medloop.experiments.segmentation.data import CaseData
from medloop.experiments.segmentation.inference import autocast, dice_per_class, predict_case

Emit = Callable[[dict[str, Any]], None]


def build_loss(config: SegConfig, deep_supervision: bool) -> nn.Module:
    """Dice, Dice+CE or Dice+focal over softmax outputs; Dice terms skip the background and
    pool the batch (nnU-Net's batch Dice). DynUNet's deep supervision adds exponentially
    decaying weights over its lower-resolution heads."""
    from monai.losses.dice import DiceCELoss, DiceFocalLoss, DiceLoss
    from monai.losses.ds_loss import DeepSupervisionLoss

    custom = active("loss")  # a code hypothesis's loss (core/code.py)
    if custom is not None:
        built: nn.Module = custom(config, deep_supervision)
        return built

    common: dict[str, Any] = {
        "to_onehot_y": True,
        "softmax": True,
        "include_background": False,
        "batch": True,
    }
    loss: nn.Module
    if config.loss == "dice":
        loss = DiceLoss(**common)
    elif config.loss == "dicece":
        loss = DiceCELoss(**common)
    else:
        loss = DiceFocalLoss(**common, gamma=2.0)
    return DeepSupervisionLoss(loss, weight_mode="exp") if deep_supervision else loss


def build_optimizer(
    config: SegConfig, params: Iterator[nn.Parameter] | list[nn.Parameter]
) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":  # nnU-Net: SGD, Nesterov momentum 0.99
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: SegConfig) -> Callable[[int], float]:
    """Multiplier of the base LR at step `it`: poly (exponent 0.9, nnU-Net), cosine or constant."""
    total = config.iterations
    custom = active("lr_schedule")  # a code hypothesis's schedule (core/code.py)
    if custom is not None:
        return lambda it: float(custom(min(it, total), total))
    schedule = config.schedule
    if schedule == "auto":
        schedule = "poly" if config.optimizer == "sgd" else "constant"
    if schedule == "poly":
        return lambda it: (1.0 - min(it, total) / total) ** 0.9
    if schedule == "cosine":
        return lambda it: 0.5 * (1.0 + math.cos(math.pi * min(it, total) / total))
    return lambda it: 1.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def save_checkpoint(model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Weights as safetensors (no pickle) plus a JSON sidecar; both written atomically."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    # save_model stores each shared tensor once (DynUNet aliases its layers in skip_layers)
    save_model(model, str(tmp), metadata={"medloop": json.dumps(meta, default=str)})
    tmp.replace(path)


@dataclass
class TrainOutcome:
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    train_seconds: float = 0.0
    best_epoch: int | None = None
    best_val_dice: float | None = None
    stopped_early: bool = False
    iteration_loss: list[float] = field(default_factory=list)  # every iteration's batch loss, in order


def validate(
    model: nn.Module,
    cases: list[CaseData],
    labels: dict[str, int],
    patch: list[int],
    device: torch.device,
    config: SegConfig,
    channels_last: bool,
) -> float:
    """Mean over cases of the foreground-mean Dice (both-empty classes score 1)."""
    scores = []
    for case in cases:
        assert case.label is not None
        pred = predict_case(
            model,
            case.image,
            patch,
            device,
            overlap=config.sw_overlap,
            amp=config.amp,
            channels_last=channels_last,
        )
        per_class = dice_per_class(pred, case.label[0], labels)
        scores.append(float(np.mean(list(per_class.values()))))
    return float(np.mean(scores))


def train(
    config: SegConfig,
    model: nn.Module,
    loader: Any,
    *,
    val_cases: list[CaseData],
    labels: dict[str, int],
    patch: list[int],
    device: torch.device,
    checkpoint_dir: Path,
    emit: Emit,
    deep_supervision: bool,
    params: list[nn.Parameter],
) -> TrainOutcome:
    """Run `config.iterations` steps over `loader` (which yields exactly that many batches)."""
    loss_fn = build_loss(config, deep_supervision)
    optimizer = build_optimizer(config, params)
    factor = lr_factor(config)
    cuda = device.type == "cuda"
    channels_last = cuda
    fmt = (
        (torch.channels_last if config.spatial_dims == 2 else torch.channels_last_3d)
        if channels_last
        else None
    )
    use_amp = cuda and config.amp
    scaler = torch.amp.GradScaler("cuda") if use_amp and not torch.cuda.is_bf16_supported() else None
    log_every = max(1, config.epoch_iterations // 5)
    out = TrainOutcome()
    running = torch.zeros((), device=device)  # loss sum since the last progress event
    running_n = 0
    epoch_sum = torch.zeros((), device=device)  # loss sum over the current epoch
    epoch_n = 0
    # Every iteration's loss stays on the device and is copied once per epoch (no per-step sync).
    step_losses = torch.zeros(config.epoch_iterations + 1, device=device)
    epoch_start = time.perf_counter()
    train_time = 0.0
    epochs_without_gain = 0
    model.train()
    tic = time.perf_counter()
    for it, batch in enumerate(loader, start=1):
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        if fmt is not None:
            image = image.contiguous(memory_format=fmt)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * factor(it - 1)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, use_amp):
            output = model(image)
            if deep_supervision:
                output = list(torch.unbind(output, dim=1))
            loss = loss_fn(output, label)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if config.optimizer == "sgd":
                nn.utils.clip_grad_norm_(params, 12.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if config.optimizer == "sgd":  # nnU-Net clips the gradient norm at 12
                nn.utils.clip_grad_norm_(params, 12.0)
            optimizer.step()
        running += loss.detach()
        running_n += 1
        epoch_sum += loss.detach()
        step_losses[epoch_n] = loss.detach()
        epoch_n += 1
        if it % log_every == 0 or it == config.iterations:
            mean_loss = float(running) / running_n
            running.zero_()
            running_n = 0
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss is {mean_loss} at iteration {it} (diverged; lower the lr)")
            emit({"event": "progress", "iteration": it, "loss": round(mean_loss, 6)})
        if it % config.epoch_iterations == 0 or it == config.iterations:
            if cuda:
                torch.cuda.synchronize(device)
            train_time += time.perf_counter() - tic
            epoch = math.ceil(it / config.epoch_iterations)
            record = {
                "epoch": float(epoch),
                "iteration": float(it),
                "loss": float(epoch_sum) / max(epoch_n, 1),
                "lr": config.lr * factor(it),
            }
            epoch_sum.zero_()
            out.iteration_loss += step_losses[:epoch_n].tolist()
            epoch_n = 0
            meta = {"epoch": epoch, "iteration": it, "config": config.model_dump(mode="json")}
            if val_cases:
                val = validate(model, val_cases, labels, patch, device, config, channels_last)
                model.train()
                record["val_dice"] = val
                if out.best_val_dice is None or val > out.best_val_dice:
                    out.best_val_dice, out.best_epoch = val, epoch
                    epochs_without_gain = 0
                    save_checkpoint(model, checkpoint_dir / "best.safetensors", {**meta, "val_dice": val})
                else:
                    epochs_without_gain += 1
            save_checkpoint(model, checkpoint_dir / "last.safetensors", meta)
            now = time.perf_counter()
            record["seconds"] = now - epoch_start
            record["peak_memory_mb"] = peak_memory_mb(device)
            epoch_start = now
            out.history.append(record)
            emit(
                {
                    "event": "epoch",
                    **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()},
                }
            )
            out.iterations = it
            if config.early_stopping and epochs_without_gain >= config.early_stopping:
                out.stopped_early = True
                emit({"event": "early_stop", "epoch": epoch, "best_epoch": out.best_epoch})
                break
            tic = time.perf_counter()
    out.train_seconds = train_time
    return out
