"""medloop's pre-training loop vs a bare PyTorch loop (issue 16: trainer throughput >= 1.0x a
plain loop, extended to the pre-training jobs): same method object (S2-UniSeg with its
in-loop pseudo-masks, or masked-image modelling), crops, optimiser, iterations and seed, one
CPU thread, run alternately in this process (plain, medloop, plain, ...).

The medloop side is the job's own `train_loop` (loss curve, pseudo-mask timings, progress
events, finite-loss check); the plain side is the bare loop: sample crops, the method's loss,
backward, AdamW step, EMA update. Prints iterations/s side by side and the ratio
medloop / plain per method (target: >= 1.0 within noise).

    python bench/pretrain_overhead.py [--iterations 30] [--repeats 3] [--methods s2uniseg mim]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from medloop.core.specs import PretrainConfig
from medloop.experiments.dataset import read_dataset
from medloop.experiments.dataset.phantom3d import synth_phantom3d
from medloop.experiments.pretrain.train import CropSampler, build_method, train_loop
from medloop.experiments.segmentation.data import Normalizer, load_cases, parse_patch


def volumes(root: Path) -> list[np.ndarray]:
    ds = read_dataset(synth_phantom3d(root / "Dataset904_BenchPretrain", cases=6, seed=0, test_cases=0))
    loaded = load_cases(
        ds.root / "imagesTr", None, [c.id for c in ds.training], n_channels=1, ending=ds.file_ending, sites={}
    )
    norm = Normalizer.fit(ds.channel_names, loaded)
    return [norm.apply(c.image) for c in loaded]


def setup(images: list[np.ndarray], config: PretrainConfig) -> tuple[Any, Any, CropSampler]:
    torch.manual_seed(0)
    patch = parse_patch(config.patch_size) or []
    method, _ = build_method(config, 1, patch, seed=0)
    optimizer = torch.optim.AdamW(method.trainable(), lr=config.lr, weight_decay=config.weight_decay)
    return method, optimizer, CropSampler(images, patch, 0)


def plain(images: list[np.ndarray], config: PretrainConfig) -> float:
    method, optimizer, sampler = setup(images, config)
    t0 = time.perf_counter()
    for _ in range(config.iterations):
        x = torch.from_numpy(sampler.batch(config.batch_size))
        loss, _ = method.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step()
    return config.iterations / (time.perf_counter() - t0)


def medloop(images: list[np.ndarray], config: PretrainConfig) -> float:
    method, optimizer, sampler = setup(images, config)
    events: list[dict[str, Any]] = []
    stats = train_loop(method, optimizer, sampler, config, torch.device("cpu"), events.append)
    return config.iterations / stats.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="*", default=["s2uniseg", "mim"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"iterations": args.iterations, "repeats": args.repeats, "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        images = volumes(Path(tmp))
        for name in args.methods:
            config = PretrainConfig(method=name, iterations=args.iterations)
            plain(images, config.model_copy(update={"iterations": 3}))  # warm-up
            runs: dict[str, list[float]] = {"plain": [], "medloop": []}
            for _ in range(args.repeats):
                runs["plain"].append(plain(images, config))
                runs["medloop"].append(medloop(images, config))
            med = {k: statistics.median(v) for k, v in runs.items()}
            out["methods"][name] = {
                "patch_size": config.patch_size,
                "plain_it_s": round(med["plain"], 3),
                "medloop_it_s": round(med["medloop"], 3),
                "ratio": round(med["medloop"] / med["plain"], 3),
                "runs": {k: [round(v, 3) for v in vs] for k, vs in runs.items()},
            }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
