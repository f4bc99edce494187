"""One segmentation trial: load the staged split, train, predict, report.

Inputs (beside the spec): train/imagesTr + train/labelsTr, eval/imagesTs, test/imagesTs.
Outputs: predictions/{internal_val,eval,test}/<case><file_ending> (uint8 label maps with
the image's shape and affine), checkpoints/{last,best}.safetensors, and the JobOutcome.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, ReportedMetrics, TrialSpec
from medloop.core.specs import SegConfig
from medloop.experiments.dataset.imageio import write_like
from medloop.experiments.dataset.manifest import stratified_holdout
from medloop.experiments.job import versions

INTERNAL_VAL_SEED = 0  # the same internal split for every trial of a dataset, so trials compare


def _quiet_imports() -> None:
    # MONAI imports `transformers` when it is installed (for a network this job never
    # builds), which costs ~4 s of start-up per trial. Mark it unavailable: MONAI's
    # optional imports then skip it.
    sys.modules.setdefault("transformers", None)  # type: ignore[arg-type]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_segmentation(spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Any) -> JobOutcome:
    _quiet_imports()
    import torch
    from monai.data.dataloader import DataLoader
    from monai.data.dataset import CacheDataset
    from monai.transforms.compose import Compose

    from medloop.experiments.segmentation.augment import deterministic_transforms, random_transforms
    from medloop.experiments.segmentation.data import (
        CaseData,
        Normalizer,
        auto_patch,
        fit_patch,
        load_cases,
        parse_patch,
        training_items,
    )
    from medloop.experiments.segmentation.inference import dice_per_class, predict_case
    from medloop.experiments.segmentation.networks import build_network, patch_divisor
    from medloop.experiments.segmentation.training import peak_memory_mb, train
    from medloop.experiments.segmentation.transfer import initialise

    t0 = time.perf_counter()
    config = spec.config_as(SegConfig)
    ds = spec.dataset
    torch.set_num_threads(config.num_threads)
    seed_everything(spec.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    labels = ds.labels
    n_classes = max(labels.values()) + 1
    n_channels = len(ds.channel_names)
    fg_labels = {k: v for k, v in labels.items() if v != 0}

    train_ids = list(ds.train_cases)
    if not train_ids:
        raise DatasetError("the spec lists no training cases")
    val_ids: list[str] = []
    if config.internal_val_fraction > 0 and len(train_ids) >= 2:
        train_ids, val_ids = stratified_holdout(
            train_ids, ds.sites, fraction=config.internal_val_fraction, seed=INTERNAL_VAL_SEED
        )

    def load(images: Path, labels_dir: Path | None, ids: list[str]) -> list[CaseData]:
        return load_cases(
            images, labels_dir, ids, n_channels=n_channels, ending=ds.file_ending, sites=ds.sites
        )

    tr_dir = in_dir / "train"
    fit_cases = load(tr_dir / "imagesTr", tr_dir / "labelsTr", train_ids)
    val_cases = load(tr_dir / "imagesTr", tr_dir / "labelsTr", val_ids)
    for case in (*fit_cases, *val_cases):
        assert case.label is not None
        bad = sorted(set(np.unique(case.label).tolist()) - set(labels.values()))
        if bad:
            raise DatasetError(f"case {case.id}: label values {bad} are not in dataset.json labels")
        if config.spatial_dims == 3 and case.spatial[2] == 1:
            raise DatasetError(f"case {case.id} is 2D (shape {case.spatial}); use spatial_dims 2")
    normalizer = Normalizer.fit(ds.channel_names, fit_cases, seed=spec.seed)
    for case in (*fit_cases, *val_cases):
        case.image = normalizer.apply(case.image)

    spacing = list(fit_cases[0].reference.spacing[: config.spatial_dims])
    wanted = parse_patch(config.patch_size) or auto_patch(config, fit_cases)
    if len(wanted) != config.spatial_dims:
        raise ValueError(f"patch_size {config.patch_size!r} does not have {config.spatial_dims} axes")
    patch = fit_patch(wanted, patch_divisor(config, wanted, spacing))

    items = training_items(config, fit_cases)
    shapes = {tuple(item["image"].shape[1:]) for item in items}
    item_shape = list(next(iter(shapes))) if len(shapes) == 1 else None
    padded = [max(s, p) for s, p in zip(item_shape, patch, strict=True)] if item_shape else None
    transform = Compose(
        deterministic_transforms(patch) + random_transforms(config.augmentation, patch, padded)
    )
    transform.set_random_state(seed=spec.seed % 2**32)
    # copy_cache=False: the random transforms never modify their input in place.
    dataset = CacheDataset(items, transform=transform, cache_rate=1.0, progress=False, copy_cache=False)
    generator = torch.Generator().manual_seed(spec.seed)
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=config.iterations * config.batch_size, generator=generator
    )
    workers = 0 if device.type == "cpu" else min(8, max(0, (len(_cpus()) or 1) - 1))
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    model = build_network(config, n_channels, n_classes, patch, spacing)
    init_info: dict[str, Any] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.init_checkpoint is not None or config.init != "scratch":
        model, params, init_info = initialise(model, spec, in_dir, config)
    model = model.to(device)
    if device.type == "cuda":
        fmt = torch.channels_last if config.spatial_dims == 2 else torch.channels_last_3d
        model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # documented; missing from the stubs
    deep_supervision = bool(getattr(model, "deep_supervision", False))
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in params)
    setup: dict[str, Any] = {
        "device": _device_name(device),
        "patch": patch,
        "spacing": spacing,
        "train_cases": len(fit_cases),
        "internal_val_cases": val_ids,
        "train_items": len(items),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "normalization": normalizer.describe(),
        "init": init_info or {"source": "scratch"},
    }
    emit({"event": "setup", **setup})
    setup_seconds = time.perf_counter() - t0

    ckpt_dir = out_dir / "checkpoints"
    result = train(
        config,
        model,
        loader,
        val_cases=val_cases,
        labels=labels,
        patch=patch,
        device=device,
        checkpoint_dir=ckpt_dir,
        emit=emit,
        deep_supervision=deep_supervision,
        params=params,
    )
    best = ckpt_dir / "best.safetensors"
    chosen = best if best.is_file() else ckpt_dir / "last.safetensors"
    if chosen == best:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(best), device=str(device)))

    # ---- predict every split; the host scores them against labels the job never saw
    predict: dict[str, tuple[list[CaseData] | list[str], Path | None]] = {
        "internal_val": (val_cases, None),
        "eval": (list(ds.eval_cases), in_dir / "eval" / "imagesTs"),
        "test": (list(ds.test_cases), in_dir / "test" / "imagesTs"),
    }
    pred_dirs: dict[str, str] = {}
    reported: dict[str, dict[str, float]] = {}
    n_pred, pred_seconds = 0, 0.0
    for split, (cases_or_ids, folder) in predict.items():
        if not cases_or_ids:
            continue
        cases = [c for c in cases_or_ids if isinstance(c, CaseData)]
        if folder is not None:
            cases = load(folder, None, [c for c in cases_or_ids if isinstance(c, str)])
        dest_dir = out_dir / "predictions" / split
        for case in cases:
            if folder is not None:
                case.image = normalizer.apply(case.image)
            tic = time.perf_counter()
            pred = predict_case(
                model,
                case.image,
                patch,
                device,
                overlap=config.sw_overlap,
                tta=config.tta,
                amp=config.amp,
                channels_last=device.type == "cuda",
            )
            pred_seconds += time.perf_counter() - tic
            n_pred += 1
            label_map = pred.reshape(case.reference.shape)
            write_like(label_map.astype(np.uint8), case.reference, dest_dir / f"{case.id}{ds.file_ending}")
            if split == "internal_val":
                assert case.label is not None
                reported[case.id] = dice_per_class(
                    label_map, case.label[0].reshape(label_map.shape), fg_labels
                )
        pred_dirs[split] = f"predictions/{split}"

    epochs = [h for h in result.history if "epoch" in h]
    efficiency: dict[str, Any] = {
        "device": _device_name(device),
        "device_type": device.type,
        "num_threads": config.num_threads,
        "amp": device.type == "cuda" and config.amp,
        "iterations": result.iterations,
        "train_seconds": result.train_seconds,
        "s_per_iteration": result.train_seconds / max(result.iterations, 1),
        "s_per_epoch": float(np.mean([h["seconds"] for h in epochs])) if epochs else None,
        "inference_s_per_case": pred_seconds / max(n_pred, 1),
        "setup_seconds": setup_seconds,
        "total_seconds": time.perf_counter() - t0,
        "peak_memory_mb": peak_memory_mb(device),
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "patch": "x".join(str(p) for p in patch),
        "stopped_early": result.stopped_early,
        "best_epoch": result.best_epoch,
    }
    return JobOutcome(
        status="completed",
        predictions=pred_dirs,
        reported=[ReportedMetrics(split="internal_val", metric="dice", per_case=reported)]
        if reported
        else [],
        history=epochs,
        efficiency=efficiency,
        versions=versions(),
        checkpoint=str(chosen.relative_to(out_dir)),
        setup=setup,
    )


def _cpus() -> set[int]:
    import os

    try:
        return os.sched_getaffinity(0)
    except AttributeError:
        return set(range(os.cpu_count() or 1))


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"
