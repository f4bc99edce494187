"""One segmentation trial: load the staged split, train, predict, report.

Inputs (beside the spec): train/imagesTr + train/labelsTr, eval/imagesTs, test/imagesTs.
Outputs: predictions/{internal_val,eval,test}/<case><file_ending> (uint8 label maps with
the image's shape and affine), checkpoints/{last,best}.safetensors, and the JobOutcome.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, ReportedMetrics, TrialSpec
from medloop.core.specs import SegConfig
from medloop.experiments.dataset.imageio import write_like
from medloop.experiments.dataset.label_fraction import labelled_subset
from medloop.experiments.dataset.manifest import stratified_holdout
from medloop.experiments.dataset.plans import target_spacing
from medloop.experiments.extensions import activate, extensions_for
from medloop.experiments.job import versions
from medloop.experiments.segmentation.data import (
    CaseData,
    Normalizer,
    auto_patch,
    fit_patch,
    load_cases,
    parse_patch,
    parse_spacing,
    resample,
    target_shape,
    training_items,
)

INTERNAL_VAL_SEED = 0  # the same internal split for every trial of a dataset, so trials compare
Emit = Callable[[dict[str, Any]], None]


CURVES_FILE = "curves.json"  # every iteration's training loss, for the dashboard's charts


def write_curves(path: Path, losses: list[float]) -> None:
    """{"iteration": [1..n], "loss": [...]}; a non-finite loss is written as null."""
    finite = [v if math.isfinite(v) else None for v in losses]
    path.write_text(json.dumps({"iteration": list(range(1, len(finite) + 1)), "loss": finite}))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_spacing(config: SegConfig, cases: list[CaseData]) -> list[float] | None:
    """Target spacing (mm) for the configured axes, or None to keep the native grid."""
    if config.target_spacing == "none":
        return None
    dims = config.spatial_dims
    explicit = parse_spacing(config.target_spacing)
    if explicit is not None:
        if len(explicit) != dims:
            raise ValueError(f"target_spacing {config.target_spacing!r} does not have {dims} axes")
        return explicit
    spacings = np.asarray([c.reference.spacing[:3] for c in cases], dtype=float)
    shapes = np.asarray([c.spatial for c in cases], dtype=float)
    return target_spacing(spacings[:, :dims], shapes[:, :dims])


def to_grid(case: CaseData, spacing: list[float] | None) -> CaseData:
    """The case resampled to `spacing` (image cubic, label nearest); unchanged if None."""
    if spacing is None:
        return case
    shape = target_shape(case.spatial, case.reference.spacing, spacing)
    label = resample(case.label, shape, order=0) if case.label is not None else None
    return CaseData(case.id, resample(case.image, shape, order=3), label, case.reference, case.site)


class Trial:
    """The parts of one trial, built in order by `run_segmentation`."""

    def __init__(self, spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit) -> None:
        self.spec, self.in_dir, self.out_dir, self.emit = spec, in_dir, out_dir, emit
        self.config = spec.config_as(SegConfig)
        self.labels = spec.dataset.labels
        self.fg_labels = {k: v for k, v in self.labels.items() if v != 0}

    def load(self, images: Path, labels_dir: Path | None, ids: list[str]) -> list[CaseData]:
        ds = self.spec.dataset
        return load_cases(
            images, labels_dir, ids, n_channels=len(ds.channel_names), ending=ds.file_ending, sites=ds.sites
        )

    def split_training(self) -> tuple[list[str], list[str]]:
        train_ids = list(self.spec.dataset.train_cases)
        if not train_ids:
            raise DatasetError("the spec lists no training cases")
        # Low-label studies: the labelled pool (nested per seed), before the internal holdout
        train_ids = labelled_subset(train_ids, self.config.label_fraction, self.spec.seed)
        fraction = self.config.internal_val_fraction
        if fraction > 0 and len(train_ids) >= 2:
            return stratified_holdout(
                train_ids, self.spec.dataset.sites, fraction=fraction, seed=INTERNAL_VAL_SEED
            )
        return train_ids, []

    def check_labels(self, cases: list[CaseData]) -> None:
        allowed = set(self.labels.values())
        for case in cases:
            assert case.label is not None
            bad = sorted(set(np.unique(case.label).tolist()) - allowed)
            if bad:
                raise DatasetError(f"case {case.id}: label values {bad} are not in dataset.json labels")
            if self.config.spatial_dims == 3 and case.spatial[2] == 1:
                raise DatasetError(f"case {case.id} is 2D (shape {case.spatial}); use spatial_dims 2")


def run_segmentation(spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit) -> JobOutcome:
    import torch
    from monai.data.meta_obj import set_track_meta

    from medloop.experiments.segmentation.data import make_loader
    from medloop.experiments.segmentation.networks import (
        build_network,
        count_flops,
        min_patch,
        patch_divisor,
        sized,
    )
    from medloop.experiments.segmentation.training import peak_memory_mb, train
    from medloop.experiments.segmentation.transfer import initialise

    # Plain tensors through the transforms: the job keeps geometry itself (CaseData.reference),
    # and MetaTensor bookkeeping costs time on every item.
    set_track_meta(False)
    t0 = time.perf_counter()
    trial = Trial(spec, in_dir, out_dir, emit)
    config = sized(spec.config_as(SegConfig))
    # Code hypotheses: load and check every staged module before any training (core/code.py)
    extensions = extensions_for(config, in_dir)
    activate(extensions)
    torch.set_num_threads(config.num_threads)
    seed_everything(spec.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_classes = max(trial.labels.values()) + 1
    n_channels = len(spec.dataset.channel_names)

    train_ids, val_ids = trial.split_training()
    tr_dir = in_dir / "train"
    fit_cases = trial.load(tr_dir / "imagesTr", tr_dir / "labelsTr", train_ids)
    val_cases = trial.load(tr_dir / "imagesTr", tr_dir / "labelsTr", val_ids)
    trial.check_labels([*fit_cases, *val_cases])
    normalizer = Normalizer.fit(spec.dataset.channel_names, fit_cases, seed=spec.seed)
    grid = resolve_spacing(config, fit_cases)
    for case in (*fit_cases, *val_cases):
        case.image = normalizer.apply(case.image)
    fit_grid = [to_grid(c, grid) for c in fit_cases]
    val_grid = [to_grid(c, grid) for c in val_cases]

    spacing = grid or list(fit_cases[0].reference.spacing[: config.spatial_dims])
    wanted = parse_patch(config.patch_size) or auto_patch(config, fit_grid)
    if len(wanted) != config.spatial_dims:
        raise ValueError(f"patch_size {config.patch_size!r} does not have {config.spatial_dims} axes")
    wanted = [max(w, min_patch(config)) for w in wanted]
    patch = fit_patch(wanted, patch_divisor(config, wanted, spacing))
    items = training_items(config, fit_grid)
    loader = make_loader(config, items, patch, spec.seed, device)

    model = build_network(config, n_channels, n_classes, patch, spacing)
    init_info: dict[str, Any] = {"source": "scratch"}
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.init_checkpoint is not None or config.init != "scratch":
        model, params, init_info = initialise(model, spec, in_dir, config)
    model = model.to(device)
    if device.type == "cuda":
        fmt = torch.channels_last if config.spatial_dims == 2 else torch.channels_last_3d
        model = model.to(memory_format=fmt)  # type: ignore[call-overload]  # documented; missing from the stubs
    n_params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, n_channels, patch, device)
    setup: dict[str, Any] = {
        "device": _device_name(device),
        "patch": patch,
        "spacing": spacing,
        "resampled": grid is not None,
        "train_cases": len(fit_cases),
        "label_fraction": config.label_fraction,
        "internal_val_cases": val_ids,
        "train_items": len(items),
        "parameters": n_params,
        "flops_per_patch": flops,
        "model_size": config.model_size,
        "base_features": config.base_features,
        "trainable_parameters": sum(p.numel() for p in params),
        "normalization": normalizer.describe(),
        "init": init_info,
        "code": config.code_refs(),
    }
    emit({"event": "setup", **setup})
    setup_seconds = time.perf_counter() - t0

    ckpt_dir = out_dir / "checkpoints"
    result = train(
        config,
        model,
        loader,
        val_cases=val_grid,
        labels=trial.labels,
        patch=patch,
        device=device,
        checkpoint_dir=ckpt_dir,
        emit=emit,
        deep_supervision=bool(getattr(model, "deep_supervision", False)),
        params=params,
    )
    write_curves(out_dir / CURVES_FILE, result.iteration_loss)
    best = ckpt_dir / "best.safetensors"
    chosen = best if best.is_file() else ckpt_dir / "last.safetensors"
    if chosen == best:
        from safetensors.torch import load_model

        load_model(model, str(best), device=str(device))

    # ---- predict every split on the original grid; the host scores them against labels
    # the job never saw
    splits: dict[str, list[CaseData]] = {"internal_val": val_cases}
    for split, cases_ids in (("eval", spec.dataset.eval_cases), ("test", spec.dataset.test_cases)):
        if cases_ids:
            loaded = trial.load(in_dir / split / "imagesTs", None, list(cases_ids))
            for case in loaded:
                case.image = normalizer.apply(case.image)
            splits[split] = loaded
    pred_dirs: dict[str, str] = {}
    reported: dict[str, dict[str, float]] = {}
    n_pred, pred_seconds = 0, 0.0
    case_seconds: dict[str, float] = {}  # "<split>/<case>" -> seconds, post-processing included
    train_peak_mb = peak_memory_mb(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for split, cases in splits.items():
        if not cases:
            continue
        for case in cases:
            tic = time.perf_counter()
            label_map = predict_on_grid(model, case, grid, patch, device, config)
            if "postprocess" in extensions:
                label_map = postprocessed(extensions["postprocess"], label_map, case, trial.labels)
            seconds = time.perf_counter() - tic
            case_seconds[f"{split}/{case.id}"] = round(seconds, 4)
            pred_seconds += seconds
            n_pred += 1
            write_like(
                label_map,
                case.reference,
                out_dir / "predictions" / split / f"{case.id}{spec.dataset.file_ending}",
            )
            if split == "internal_val":
                from medloop.experiments.segmentation.inference import dice_per_class

                assert case.label is not None
                reported[case.id] = dice_per_class(
                    label_map, case.label[0].reshape(label_map.shape), trial.fg_labels
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
        "inference_s_per_case_max": max(case_seconds.values(), default=0.0),
        "inference_seconds": case_seconds,
        "setup_seconds": setup_seconds,
        "total_seconds": time.perf_counter() - t0,
        "peak_memory_mb": max(train_peak_mb, peak_memory_mb(device)),
        "peak_train_memory_mb": train_peak_mb,
        # CUDA: torch's peak allocation during inference alone; CPU: the process's peak
        # resident set so far (it cannot be reset, so it includes training)
        "peak_inference_memory_mb": peak_memory_mb(device),
        "memory_measure": "cuda max_memory_allocated" if device.type == "cuda" else "cpu max RSS",
        "parameters": n_params,
        "flops_per_patch": flops,
        "model_size": config.model_size,
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


def predict_on_grid(
    model: Any, case: CaseData, grid: list[float] | None, patch: list[int], device: Any, config: SegConfig
) -> np.ndarray:
    """Label map (uint8) in the case's original geometry. With a target grid, the
    probabilities are computed on the resampled image and interpolated back before argmax."""
    import torch

    from medloop.experiments.segmentation.inference import predict_probabilities

    on_grid = to_grid(case, grid)
    probs = predict_probabilities(
        model,
        on_grid.image,
        patch,
        device,
        overlap=config.sw_overlap,
        tta=config.tta,
        amp=config.amp,
        channels_last=device.type == "cuda",
    )  # (K, X', Y', Z') on the device
    if grid is not None and tuple(probs.shape[1:]) != case.spatial:
        mode = "trilinear" if case.spatial[2] > 1 else "bilinear"
        if mode == "bilinear":
            probs = torch.nn.functional.interpolate(probs[None, ..., 0], size=case.spatial[:2], mode=mode)[
                0, ..., None
            ]
        else:
            probs = torch.nn.functional.interpolate(probs[None], size=case.spatial, mode=mode)[0]
    label = probs.argmax(0).to(torch.uint8).cpu().numpy()
    return np.asarray(label.reshape(case.reference.shape), dtype=np.uint8)


def postprocessed(fn: Any, label_map: np.ndarray, case: CaseData, labels: dict[str, int]) -> np.ndarray:
    """A code hypothesis's post-processing of one predicted label map, held to the contract:
    same shape, integer labels the dataset declares."""
    spacing = tuple(float(s) for s in case.reference.spacing)
    out = np.asarray(fn(label_map.copy(), spacing, dict(labels)))
    if out.shape != label_map.shape:
        raise ValueError(f"postprocess returned shape {out.shape} for a label map of shape {label_map.shape}")
    values = set(np.unique(out).tolist())
    if not values <= set(labels.values()):
        raise ValueError(f"postprocess returned label values {sorted(values - set(labels.values()))}")
    return out.astype(np.uint8)


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"
