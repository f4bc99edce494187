"""One pre-training trial: pre-train on unlabelled volumes, save the weights with
provenance, fine-tune briefly on the labelled share of the training cases, predict.

Inputs (beside the spec): the segmentation inputs (train/imagesTr + labelsTr, eval and
test images) and, if the config names one, `unlabelled/` (more scans, images only).
Pre-training reads the training images and the unlabelled scans, never a label and never
an evaluation or test image. Outputs: checkpoints/pretrained.safetensors (with its
provenance block, dataset/pretrained.py), pretrain_curves.json (the self-supervised loss
per iteration, informational), and everything a segmentation job writes, from the
fine-tune (predictions/ at the top, its checkpoints under finetune/).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import PretrainConfig, SegConfig
from medloop.experiments.dataset.pretrained import (
    KIND,
    data_checksum,
    folder_checksum,
    weights_digest,
)

Emit = Callable[[dict[str, Any]], None]
CHECKPOINT = "checkpoints/pretrained.safetensors"
CURVES = "pretrain_curves.json"
VOLUME_TIMING_CASES = 4  # whole volumes timed for pseudo-mask generation after training


def seg_config(config: PretrainConfig, *, init: str) -> SegConfig:
    """The segmentation config of the fine-tune (and of the network pre-training builds)."""
    return SegConfig(
        model=config.model,
        spatial_dims=config.spatial_dims,
        base_features=config.base_features,
        depth=config.depth,
        res_units=config.res_units,
        patch_size=config.patch_size,
        iterations=config.finetune_iterations,
        epoch_iterations=config.finetune_iterations,
        batch_size=config.batch_size,
        lr=config.finetune_lr,
        weight_decay=config.weight_decay,
        internal_val_fraction=config.internal_val_fraction,
        label_fraction=config.label_fraction,
        init=init,
        init_mode=config.finetune_mode,
        num_threads=config.num_threads,
    )


def finetune_spec(spec: TrialSpec, *, init: bool, **paths: Any) -> TrialSpec:
    """The segmentation trial of the fine-tune (same dataset and seed)."""
    config = spec.config_as(PretrainConfig)
    return TrialSpec(
        task="segmentation",
        dataset=spec.dataset,
        config=seg_config(config, init="trial:pretrained" if init else "scratch"),
        seed=spec.seed,
        **paths,
    )


def unlabelled_cases(folder: Path, ending: str, n_channels: int) -> list[str]:
    """Case ids of `folder` (files <case>_0000<ending>); every channel must be present."""
    from medloop.core.errors import DatasetError

    suffix = f"_0000{ending}"
    cases = sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))
    for case in cases:
        for ch in range(1, n_channels):
            if not (folder / f"{case}_{ch:04d}{ending}").is_file():
                raise DatasetError(f"unlabelled/{case}_{ch:04d}{ending} is missing (channel {ch})")
    if not cases:
        raise DatasetError(f"the unlabelled folder has no <case>_0000{ending} images")
    return cases


class CropSampler:
    """Random crops of `patch` (2D: from a random slice) from normalised volumes, padded
    with zeros where a volume is smaller; seeded."""

    def __init__(self, images: list[np.ndarray], patch: list[int], seed: int) -> None:
        self.images, self.patch = images, patch
        self.rng = np.random.default_rng(seed)

    def crop(self, image: np.ndarray) -> np.ndarray:
        dims = len(self.patch)
        if dims == 2:
            image = image[..., int(self.rng.integers(image.shape[-1]))]
        pad = [(0, 0)] + [(0, max(0, p - s)) for s, p in zip(image.shape[1:], self.patch, strict=True)]
        image = np.pad(image, pad)
        starts = [int(self.rng.integers(s - p + 1)) for s, p in zip(image.shape[1:], self.patch, strict=True)]
        index = tuple(slice(st, st + p) for st, p in zip(starts, self.patch, strict=True))
        return np.ascontiguousarray(image[(slice(None), *index)])

    def batch(self, size: int) -> np.ndarray:
        picks = self.rng.integers(len(self.images), size=size)
        return np.stack([self.crop(self.images[int(i)]) for i in picks]).astype(np.float32)


def build_method(config: PretrainConfig, n_channels: int, patch: list[int], seed: int) -> tuple[Any, Any]:
    """(the pre-training method around a fresh backbone, a probe network with one more
    output channel: the tensors whose shapes differ are the head, left out of the checkpoint)."""
    from medloop.experiments.pretrain.methods import MaskedImageModelling, S2UniSeg
    from medloop.experiments.segmentation.networks import build_network

    spacing = [1.0] * config.spatial_dims
    net_config = seg_config(config, init="scratch")
    out = config.embed_dim if config.method == "s2uniseg" else n_channels
    backbone = build_network(net_config, n_channels, out, patch, spacing)
    probe = build_network(net_config, n_channels, out + 1, patch, spacing)
    if config.method == "s2uniseg":
        method: S2UniSeg | MaskedImageModelling = S2UniSeg(
            backbone,
            config.embed_dim,
            config.prototypes,
            thresholds=config.thresholds(),
            mask_stride=config.mask_stride,
            max_queries=config.max_queries,
            momentum=config.ema_momentum,
            seed=seed,
        )
    else:
        method = MaskedImageModelling(backbone, ratio=config.mim_ratio, block=config.mim_block, seed=seed)
    return method, probe


@dataclass
class LoopStats:
    losses: list[float] = field(default_factory=list)
    mask_seconds: list[float] = field(default_factory=list)  # per sample, per iteration (S2-UniSeg)
    masks_per_sample: list[int] = field(default_factory=list)
    seconds: float = 0.0


def train_loop(
    method: Any, optimizer: Any, sampler: CropSampler, config: PretrainConfig, device: Any, emit: Emit
) -> LoopStats:
    """The self-supervised iterations: sample crops, the method's loss, a step, the
    method's after-step (EMA teacher); the loss curve, pseudo-mask timings and progress
    events recorded (bench/pretrain_overhead.py compares it with a bare loop)."""
    import torch

    stats = LoopStats()
    every = max(1, config.iterations // 10)
    s2 = config.method == "s2uniseg"
    tic = time.perf_counter()
    for it in range(config.iterations):
        x = torch.from_numpy(sampler.batch(config.batch_size)).to(device)
        loss, info = method.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step()
        stats.losses.append(info.loss)
        if s2:
            stats.mask_seconds.append(info.mask_seconds)
            stats.masks_per_sample.append(info.masks)
        if not math.isfinite(info.loss):
            raise FloatingPointError(f"pre-training loss is {info.loss} at iteration {it + 1}")
        if (it + 1) % every == 0 or it + 1 == config.iterations:
            emit({"event": "pretrain", "iteration": it + 1, "loss": info.loss})
    stats.seconds = time.perf_counter() - tic
    return stats


def save_pretrained(path: Path, state: dict[str, Any], meta: dict[str, str]) -> str:
    """Write the weights, then again with the provenance block naming their digest."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    digest = weights_digest(tmp)
    save_file(state, str(tmp), metadata={**meta, "medloop.weights_sha256": digest})
    if weights_digest(tmp) != digest:  # the tensors must be laid out the same both times
        raise RuntimeError("pre-trained checkpoint digest changed on rewrite")
    tmp.replace(path)
    return digest


def pretrain(
    spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the self-supervised stage; (setup info, efficiency info)."""
    import torch

    from medloop.experiments.pretrain.methods import transferable_state
    from medloop.experiments.segmentation.data import Normalizer, load_cases, parse_patch
    from medloop.experiments.segmentation.job import Trial as SegTrial

    config = spec.config_as(PretrainConfig)
    ds = spec.dataset
    n_channels = len(ds.channel_names)
    t0 = time.perf_counter()
    cases = load_cases(
        in_dir / "train" / "imagesTr", None, list(ds.train_cases), n_channels=n_channels,
        ending=ds.file_ending, sites=ds.sites,
    )  # fmt: skip
    unl_dir = in_dir / "unlabelled"
    unl_checksum = None
    n_unlabelled = 0
    if config.unlabelled != "none":
        ids = unlabelled_cases(unl_dir, ds.file_ending, n_channels)
        cases += load_cases(unl_dir, None, ids, n_channels=n_channels, ending=ds.file_ending, sites={})
        unl_checksum = folder_checksum(unl_dir, ds.file_ending)
        n_unlabelled = len(ids)
    # The fine-tune's intensity normalisation (fitted on its labelled cases, as a
    # segmentation job does), so both stages see the same intensities; no label enters the
    # self-supervised loss.
    ft_trial = SegTrial(finetune_spec(spec, init=False), in_dir, out_dir, emit)
    fit_ids, _ = ft_trial.split_training()
    labelled = ft_trial.load(in_dir / "train" / "imagesTr", in_dir / "train" / "labelsTr", fit_ids)
    normalizer = Normalizer.fit(ds.channel_names, labelled, seed=spec.seed)
    images = [normalizer.apply(c.image) for c in cases]
    patch = parse_patch(config.patch_size) or []
    if len(patch) != config.spatial_dims:
        raise ValueError(f"patch_size {config.patch_size!r} does not have {config.spatial_dims} axes")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    method, probe = build_method(config, n_channels, patch, spec.seed)
    method = method.to(device)
    optimizer = torch.optim.AdamW(method.trainable(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = CropSampler(images, patch, spec.seed)
    setup_seconds = time.perf_counter() - t0
    loop = train_loop(method, optimizer, sampler, config, device, emit)
    losses, mask_seconds, masks_per_sample, train_seconds = (
        loop.losses, loop.mask_seconds, loop.masks_per_sample, loop.seconds
    )  # fmt: skip

    volume_timing = _time_volumes(method, images, config, device) if config.method == "s2uniseg" else {}
    state = transferable_state(method.backbone(), probe)
    checksum = data_checksum(ds.checksum, unl_checksum)
    network = {
        "model": config.model,
        "spatial_dims": config.spatial_dims,
        "in_channels": n_channels,
        "base_features": config.base_features,
        "depth": config.depth,
        "res_units": config.res_units,
    }
    digest = save_pretrained(
        out_dir / CHECKPOINT,
        state,
        {
            "medloop.kind": KIND,
            "medloop.method": config.method,
            "medloop.seed": str(spec.seed),
            "medloop.data_checksum": checksum,
            "medloop.network": json.dumps(network, sort_keys=True),
            "medloop.normalization": json.dumps(normalizer.describe(), sort_keys=True),
        },
    )
    finite = [v if math.isfinite(v) else None for v in losses]
    (out_dir / CURVES).write_text(json.dumps({"iteration": list(range(1, len(finite) + 1)), "loss": finite}))
    head = losses[: max(1, len(losses) // 5)]
    tail = losses[-max(1, len(losses) // 5) :]
    setup = {
        "method": config.method,
        "volumes": len(cases),
        "unlabelled_volumes": n_unlabelled,
        "data_checksum": checksum,
        "checkpoint": CHECKPOINT,
        "weights_sha256": digest,
        "tensors": len(state),
        "loss_first": float(np.mean(head)) if losses else None,
        "loss_last": float(np.mean(tail)) if losses else None,
        "normalization": normalizer.describe(),
    }
    efficiency: dict[str, Any] = {
        "pretrain_iterations": config.iterations,
        "pretrain_seconds": train_seconds,
        "pretrain_setup_seconds": setup_seconds,
        "pretrain_s_per_iteration": train_seconds / max(config.iterations, 1),
        **volume_timing,
    }
    if mask_seconds:
        efficiency["pseudo_mask_ms_per_patch"] = 1000 * float(np.mean(mask_seconds))
        efficiency["pseudo_mask_share_of_step"] = float(
            np.sum(mask_seconds) * config.batch_size / train_seconds
        )
        efficiency["pseudo_masks_per_patch"] = float(np.mean(masks_per_sample))
    emit({"event": "pretrained", **setup, **efficiency})
    return setup, efficiency


def _time_volumes(
    method: Any, images: list[np.ndarray], config: PretrainConfig, device: Any
) -> dict[str, Any]:
    """Pseudo-mask generation time on whole volumes (the teacher's features of the whole
    image, pooled by mask_stride); the teacher's forward pass is timed separately."""
    import torch

    from medloop.experiments.pretrain.methods import _pool
    from medloop.experiments.pretrain.pseudomask import agglomerate

    teacher = method.teacher["backbone"]
    feature_s, mask_s, groups = [], [], []
    divisor = 2 ** (config.depth - 1)
    for image in images[:VOLUME_TIMING_CASES]:
        arr = image if config.spatial_dims == 3 else image[..., image.shape[-1] // 2]
        pad = [(0, 0)] + [(0, (-s) % divisor) for s in arr.shape[1:]]
        x = torch.from_numpy(np.pad(arr, pad)[None].astype(np.float32)).to(device)
        with torch.no_grad():
            tic = time.perf_counter()
            feat = _pool(teacher(x), config.mask_stride)[0].cpu()
            feature_s.append(time.perf_counter() - tic)
        masks = agglomerate(feat, config.thresholds())
        mask_s.append(masks.seconds)
        groups.append(masks.counts())
    shape = "x".join(str(s) for s in images[0].shape[1 : 1 + config.spatial_dims])
    unit = "volume" if config.spatial_dims == 3 else "slice"
    return {
        f"pseudo_mask_ms_per_{unit}": 1000 * float(np.mean(mask_s)),
        f"feature_ms_per_{unit}": 1000 * float(np.mean(feature_s)),
        "pseudo_mask_timed_shape": shape,
        "pseudo_mask_groups_per_level": [
            float(np.mean([g[i] for g in groups])) for i in range(len(groups[0]))
        ],
    }


def run_pretrain(spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Emit) -> JobOutcome:
    import torch

    from medloop.experiments.job import versions
    from medloop.experiments.segmentation.job import run_segmentation, seed_everything

    config = spec.config_as(PretrainConfig)
    torch.set_num_threads(config.num_threads)
    seed_everything(spec.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup: dict[str, Any] = {"pretrain": {"method": "none"}}
    efficiency: dict[str, Any] = {}
    init: dict[str, Any] = {}
    if config.method != "none":
        pre_setup, efficiency = pretrain(spec, in_dir, out_dir, emit)
        setup["pretrain"] = pre_setup
        # An absolute path: the fine-tune reads the checkpoint this job just wrote.
        init = {
            "init_checkpoint": str((out_dir / CHECKPOINT).resolve()),
            "provenance": {
                "init_parent": f"pretrain:{config.method}",
                "init_sha256": pre_setup["weights_sha256"],
            },
        }
    ft_spec = finetune_spec(spec, init=bool(init), **init)
    seed_everything(spec.seed)
    ft_dir = out_dir / "finetune"
    finetuned = run_segmentation(ft_spec, in_dir, ft_dir, emit)
    # the predictions go where the host scores segmentation predictions
    if (ft_dir / "predictions").is_dir():
        shutil.move(str(ft_dir / "predictions"), str(out_dir / "predictions"))
    checkpoint = CHECKPOINT if init else f"finetune/{finetuned.checkpoint}"
    return finetuned.model_copy(
        update={
            "efficiency": {**finetuned.efficiency, **efficiency},
            "setup": {**setup, "finetune": finetuned.setup},
            "checkpoint": checkpoint,
            "versions": versions(),
        }
    )
