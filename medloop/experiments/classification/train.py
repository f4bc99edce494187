"""The classification job, inside the sandbox: train on the training cases' volumes and
labels, write one probability per evaluation (and test) case.

Inputs (read-only):  /in/train/imagesTr + /in/train/labels.csv (case,label,patient),
/in/eval/imagesTs + /in/eval/cases.csv (case; no labels), /in/test/... likewise, and
/in/init/... when `config.init` names a checkpoint.
Outputs: /out/predictions/<split>.csv with `case,prob` (probability of class 1), which
the host averages per patient and scores; /out/checkpoints/last.safetensors.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import ClassifyConfig


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def load_case(folder: Path, case: str, n_channels: int, ending: str, size: int) -> Any:
    """(M, size, size, size) float32 tensor: every channel z-scored, resized trilinearly."""
    import torch
    import torch.nn.functional as F

    from medloop.experiments.dataset.imageio import read_volume

    chans = []
    for ch in range(n_channels):
        path = folder / f"{case}_{ch:04d}{ending}"
        if not path.is_file():
            raise FileNotFoundError(f"input not staged: {path.name}")
        arr = read_volume(path).array.astype(np.float32)
        if arr.ndim != 3:
            raise ValueError(f"{path.name}: expected a 3D volume, got shape {arr.shape}")
        arr = (arr - arr.mean()) / (arr.std() + 1e-6)
        chans.append(torch.from_numpy(arr))
    vol = torch.stack(chans)[None]  # (1, M, D, H, W)
    out: torch.Tensor = F.interpolate(vol, size=(size,) * 3, mode="trilinear", align_corners=False)[0]
    return out


def run_classification(
    spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Callable[[dict[str, Any]], None]
) -> JobOutcome:
    import torch

    from medloop.experiments.classification.adapters import configure, count_parameters, load_encoder
    from medloop.experiments.classification.networks import VolumeClassifier
    from medloop.experiments.job import versions
    from medloop.experiments.segmentation.transfer import load_weights

    config = spec.config_as(ClassifyConfig)
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(spec.seed)
    started = time.monotonic()
    ds = spec.dataset
    n_ch, ending = len(ds.channel_names), ds.file_ending

    train_rows = _rows(in_dir / "train" / "labels.csv")
    if not train_rows:
        raise ValueError("no training cases staged")
    x = torch.stack(
        [load_case(in_dir / "train" / "imagesTr", r["case"], n_ch, ending, config.size) for r in train_rows]
    )
    y = torch.tensor([int(r["label"]) for r in train_rows])
    emit({"event": "loaded", "cases": len(train_rows), "shape": list(x.shape)})

    model = VolumeClassifier(config, n_modalities=n_ch, n_classes=len(ds.labels))
    init_info: dict[str, Any] = {"source": config.init}
    if config.init != "scratch":
        if spec.init_checkpoint is None:
            raise ValueError(f"config.init is {config.init!r} but the spec has no init_checkpoint")
        init_info.update(load_encoder(model, load_weights(in_dir / spec.init_checkpoint)))
        init_info["checkpoint"] = spec.init_checkpoint
        init_info["parent"] = spec.provenance.get("init_parent")
    parts = configure(model, config)
    n_all, n_trainable = count_parameters(model)
    emit(
        {
            "event": "model",
            "parameters": n_all,
            "trainable_parameters": n_trainable,
            "adapter": config.adapter,
        }
    )

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    counts = torch.bincount(y, minlength=len(ds.labels)).float()
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / (counts.clamp_min(1) * len(counts)))
    gen = torch.Generator().manual_seed(spec.seed)
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            xb = x[idx]
            if config.augmentation == "flip":
                for axis in (2, 3, 4):
                    if torch.rand(1, generator=gen).item() < 0.5:
                        xb = xb.flip(axis)
            opt.zero_grad()
            loss = loss_fn(model(xb), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append({"epoch": float(epoch), "train_loss": total / len(x)})
        emit({"event": "epoch", **history[-1]})

    model.eval()
    predictions: dict[str, str] = {}
    infer_s: list[float] = []
    for split in ("eval", "test"):
        listing = in_dir / split / "cases.csv"
        if not listing.is_file():
            continue
        rows = _rows(listing)
        if not rows:
            continue
        dest = out_dir / "predictions"
        dest.mkdir(parents=True, exist_ok=True)
        with (dest / f"{split}.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "prob"])
            for row in rows:
                t0 = time.perf_counter()
                vol = load_case(in_dir / split / "imagesTs", row["case"], n_ch, ending, config.size)
                with torch.no_grad():
                    prob = torch.softmax(model(vol[None]), dim=1)[0, 1].item()
                infer_s.append(time.perf_counter() - t0)
                writer.writerow([row["case"], f"{prob:.6f}"])
        predictions[split] = f"predictions/{split}.csv"
        emit({"event": "predicted", "split": split, "cases": len(rows)})

    from safetensors.torch import save_model

    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_model(model, str(out_dir / "checkpoints" / "last.safetensors"))
    return JobOutcome(
        status="completed",
        predictions=predictions,
        history=history,
        checkpoint="checkpoints/last.safetensors",
        efficiency={
            "wall_s": round(time.monotonic() - started, 3),
            "parameters": n_all,
            "trainable_parameters": n_trainable,
            "trainable_by_part": parts,
            "inference_s_per_case": round(float(np.mean(infer_s)), 4) if infer_s else None,
        },
        setup={
            "adapter": config.adapter,
            "model": config.model,
            "input_size": config.size,
            "init": init_info,
        },
        versions=versions(),
    )
