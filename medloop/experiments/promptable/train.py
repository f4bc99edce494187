"""The promptable training job: load the staged training split (images + labels), train
the SAM-style network on simulated prompts, write `checkpoints/last.safetensors`.

It writes no evaluation predictions: those come from the interactive rounds the host runs
afterwards with this checkpoint (interact.py; docs/promptable.md), one sandboxed job per
round, each seeing only images, the checkpoint and the clicks so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import PromptableConfig
from medloop.experiments.job import versions
from medloop.experiments.promptable.checkpoints import load_into, save
from medloop.experiments.promptable.data import PromptSampler, corrective_click, loss_fn
from medloop.experiments.promptable.model import PromptableSAM3D, build_model
from medloop.experiments.segmentation.data import CaseData, Normalizer, load_cases

Emit = Callable[[dict[str, Any]], None]
CHECKPOINT = "checkpoints/last.safetensors"


def load_training(spec: TrialSpec, in_dir: Path) -> tuple[list[CaseData], Normalizer]:
    ds = spec.dataset
    cases = load_cases(
        in_dir / "train" / "imagesTr",
        in_dir / "train" / "labelsTr",
        list(ds.train_cases),
        n_channels=len(ds.channel_names),
        ending=ds.file_ending,
        sites=ds.sites,
    )
    norm = Normalizer.fit(ds.channel_names, cases, seed=spec.seed)
    for case in cases:
        case.image = norm.apply(case.image)
    return cases, norm


def train_loop(
    model: PromptableSAM3D,
    sampler: PromptSampler,
    config: PromptableConfig,
    device: torch.device,
    emit: Emit,
) -> tuple[list[dict[str, float]], float]:
    """AdamW on BCE + Dice; one history record per tenth of the run. Returns (history, seconds)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    chunk = max(1, config.iterations // 10)
    history: list[dict[str, float]] = []
    total = 0.0
    t0 = tic = time.perf_counter()
    for it in range(1, config.iterations + 1):
        batch = sampler.batch(config.batch_size).to(device)
        if it % 2 == 0:
            batch = corrective_click(model, batch, sampler.rng)
        logits = model(batch.images, batch.points, batch.labels, batch.boxes)
        loss = loss_fn(logits, batch.masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += float(loss.detach())
        if it % chunk == 0 or it == config.iterations:
            n = it - (len(history) * chunk)
            now = time.perf_counter()
            record = {
                "epoch": float(len(history) + 1),
                "iteration": float(it),
                "loss": total / n,
                "seconds": now - tic,
            }
            history.append(record)
            emit({"event": "epoch", **record})
            total, tic = 0.0, now
    return history, time.perf_counter() - t0


def run_promptable(spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit) -> JobOutcome:
    from medloop.experiments.segmentation.training import peak_memory_mb

    t0 = time.perf_counter()
    config = spec.config_as(PromptableConfig)
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(spec.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cases, norm = load_training(spec, in_dir)
    n_channels = len(spec.dataset.channel_names)
    model = build_model(config.model_size, n_channels, config.prompt == "box")
    init: dict[str, Any] = {"source": "scratch"}
    if spec.init_checkpoint is not None:  # staged by the host (config.init: trial:... or file:...)
        path = in_dir / spec.init_checkpoint
        init = {"source": config.init, **load_into(model, path, preset=config.model_size)}
    if config.freeze_encoder:
        for p in model.image_encoder.parameters():
            p.requires_grad_(False)
    model = model.to(device)
    sampler = PromptSampler(cases, config, model.arch.image_size, spec.seed)
    n_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    setup = {
        "device": str(device),
        "model_size": config.model_size,
        "image_size": model.arch.image_size,
        "train_cases": len(cases),
        "train_targets": len(sampler.targets),
        "parameters": n_params,
        "trainable_parameters": trainable,
        "normalization": norm.describe(),
        "init": init,
    }
    emit({"event": "setup", **setup})
    history, seconds = train_loop(model, sampler, config, device, emit)
    save(
        model,
        out_dir / CHECKPOINT,
        {
            "preset": config.model_size,
            "in_chans": n_channels,
            "boxes": config.prompt == "box",
            "normalizer": norm.describe(),
        },
    )
    efficiency = {
        "device": str(device),
        "iterations": config.iterations,
        "train_seconds": seconds,
        "s_per_iteration": seconds / max(config.iterations, 1),
        "total_seconds": time.perf_counter() - t0,
        "peak_memory_mb": peak_memory_mb(device),
        "parameters": n_params,
        "trainable_parameters": trainable,
    }
    return JobOutcome(
        status="completed",
        history=history,
        efficiency=efficiency,
        versions=versions(),
        checkpoint=CHECKPOINT,
        setup=setup,
    )
