"""The audio job, inside the sandbox: features per recording, segment-level training,
per-segment probabilities for every evaluation recording under every noise condition.

Inputs (read-only):  /in/train/train.csv (+ audio, labels of training subjects only),
/in/eval/eval.csv and /in/test/test.csv (no labels), /in/noisy_eval/<condition>/... and
/in/noisy_test/<condition>/... (the host's noisy copies).
Outputs: /out/predictions/<split>/<condition>.csv with `path,segment,prob`; the host
aggregates segments per subject and scores them against labels it kept.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import AudioConfig
from medloop.experiments.audio.features import FRAME_RATE, extract, load, segments

AUG_COPIES = 2  # augmented copies of each training recording (augmentation != none)
CLEAN = "clean"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _augmenter(kind: str) -> Callable[..., Any] | None:
    if kind == "none":
        return None
    from audiomentations import AddGaussianSNR, Compose, Gain, TimeStretch

    p = 0.5 if kind == "all" else 1.0  # all: each transform on half of the copies
    parts = {
        "noise": AddGaussianSNR(min_snr_db=0.0, max_snr_db=20.0, p=p),
        "gain": Gain(min_gain_db=-12.0, max_gain_db=12.0, p=p),
        "stretch": TimeStretch(min_rate=0.85, max_rate=1.15, leave_length_unchanged=False, p=p),
    }
    chosen = list(parts.values()) if kind == "all" else [parts[kind]]
    augment: Callable[..., Any] = Compose(chosen, p=1.0)
    return augment


def run_audio(
    spec: TrialSpec, in_dir: Path, out_dir: Path, emit: Callable[[dict[str, Any]], None]
) -> JobOutcome:
    import torch

    from medloop.experiments.audio.models import SegmentClassifier
    from medloop.experiments.job import versions

    config = spec.config
    if not isinstance(config, AudioConfig):
        raise ValueError(f"an audio job needs an audio config, got task {config.task!r}")
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)  # audiomentations draws from numpy's and Python's global RNGs
    random.seed(spec.seed)
    started = time.monotonic()
    length = max(4, round(config.segment_seconds * FRAME_RATE))
    cpu0, audio_s = time.process_time(), 0.0

    def features(path: Path, augment: Callable[..., Any] | None = None) -> np.ndarray:
        nonlocal audio_s
        y = load(path, config.sample_rate)
        if augment is not None:
            y = np.asarray(augment(samples=y, sample_rate=config.sample_rate), dtype=np.float32)
        audio_s += len(y) / config.sample_rate
        return extract(y, config.sample_rate, config.features, config.n_mels)

    train_rows = _rows(in_dir / "train" / "train.csv")
    if not train_rows:
        raise ValueError("no training recordings staged")
    augment = _augmenter(config.augmentation)
    xs: list[np.ndarray] = []
    ys: list[float] = []
    for row in train_rows:
        copies = [features(in_dir / "train" / row["path"])]
        if augment is not None:
            copies += [features(in_dir / "train" / row["path"], augment) for _ in range(AUG_COPIES)]
        for feats in copies:
            segs = segments(feats, length)
            xs.append(segs)
            ys += [float(row["label"])] * len(segs)
    x = np.concatenate(xs)
    y = np.asarray(ys, dtype=np.float32)
    mean = x.mean(axis=(0, 2), keepdims=True)[0]
    std = x.std(axis=(0, 2), keepdims=True)[0] + 1e-5
    feature_cpu = time.process_time() - cpu0
    emit(
        {
            "event": "features",
            "segments": len(x),
            "audio_s": round(audio_s, 1),
            "cpu_s": round(feature_cpu, 2),
        }
    )

    model = SegmentClassifier(config.model, x.shape[1], config.hidden, config.neuron)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    positives = float(y.sum())
    pos_weight = torch.tensor((len(y) - positives) / max(positives, 1.0))
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(spec.seed)
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append({"epoch": float(epoch), "train_loss": total / len(xt)})
        emit({"event": "epoch", **history[-1]})

    model.eval()
    predictions: dict[str, str] = {}
    n_written = 0
    for split in ("eval", "test"):
        listing = in_dir / split / f"{split}.csv"
        if not listing.is_file():
            continue
        rows = _rows(listing)
        if not rows:
            continue
        noisy_root = in_dir / f"noisy_{split}"
        conditions = {CLEAN: in_dir / split}
        if noisy_root.is_dir():
            conditions.update({p.name: p for p in sorted(noisy_root.iterdir()) if p.is_dir()})
        dest = out_dir / "predictions" / split
        dest.mkdir(parents=True, exist_ok=True)
        for cond, base in conditions.items():
            with (dest / f"{cond}.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["path", "segment", "prob"])
                for row in rows:
                    segs = segments(features(base / row["path"]), length)
                    with torch.no_grad():
                        probs = torch.sigmoid(model(torch.from_numpy((segs - mean) / std))).numpy()
                    for i, p in enumerate(probs):
                        writer.writerow([row["path"], i, f"{float(p):.6f}"])
                    n_written += len(probs)
            emit({"event": "predicted", "split": split, "condition": cond})
        predictions[split] = f"predictions/{split}"
    cpu = time.process_time() - cpu0
    return JobOutcome(
        status="completed",
        predictions=predictions,
        history=history,
        efficiency={
            "wall_s": round(time.monotonic() - started, 3),
            "cpu_s": round(cpu, 3),
            "audio_s": round(audio_s, 1),
            "feature_cpu_s": round(feature_cpu, 3),
            "segments_predicted": n_written,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        versions={**versions(), **_audio_versions()},
    )


def _audio_versions() -> dict[str, str]:
    import sys

    out: dict[str, str] = {}
    for name in ("librosa", "snntorch", "audiomentations", "soundfile"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out
