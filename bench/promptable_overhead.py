"""medloop's promptable trainer vs a plain PyTorch loop: same model, sampler, loss, optimiser,
iterations and seed, one CPU thread, run alternately in this process (plain, medloop, ...).

The medloop side is the job's own `train_loop` (history records, JSON progress events); the
plain side is the bare loop: sample a batch, forward, BCE + Dice, backward, AdamW step.
Prints iterations/s side by side and the ratio medloop / plain (target: >= 1.0 within noise).

    python bench/promptable_overhead.py [--iterations 60] [--repeats 3] [--model-size tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from medloop.core.specs import PromptableConfig
from medloop.experiments.dataset import read_dataset
from medloop.experiments.dataset.phantom3d import synth_phantom3d
from medloop.experiments.promptable.data import PromptSampler, corrective_click, loss_fn
from medloop.experiments.promptable.model import build_model
from medloop.experiments.promptable.train import train_loop
from medloop.experiments.segmentation.data import CaseData, Normalizer, load_cases


def cases(root: Path) -> list[CaseData]:
    ds_path = synth_phantom3d(root / "Dataset903_BenchPrompt", cases=8, seed=0, test_cases=0)
    ds = read_dataset(ds_path)
    loaded = load_cases(
        ds.root / "imagesTr",
        ds.root / "labelsTr",
        [c.id for c in ds.training],
        n_channels=1,
        ending=ds.file_ending,
        sites={},
    )
    norm = Normalizer.fit(ds.channel_names, loaded)
    for c in loaded:
        c.image = norm.apply(c.image)
    return loaded


def plain(data: list[CaseData], config: PromptableConfig) -> float:
    torch.manual_seed(0)
    model = build_model(config.model_size, 1, config.prompt == "box")
    sampler = PromptSampler(data, config, model.arch.image_size, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    t0 = time.perf_counter()
    for it in range(1, config.iterations + 1):
        b = sampler.batch(config.batch_size)
        if it % 2 == 0:  # the same corrective clicks as the job's loop
            b = corrective_click(model, b, sampler.rng)
        loss = loss_fn(model(b.images, b.points, b.labels, b.boxes), b.masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return config.iterations / (time.perf_counter() - t0)


def medloop(data: list[CaseData], config: PromptableConfig) -> float:
    torch.manual_seed(0)
    model = build_model(config.model_size, 1, config.prompt == "box")
    sampler = PromptSampler(data, config, model.arch.image_size, 0)
    events: list[dict[str, object]] = []
    _, seconds = train_loop(model, sampler, config, torch.device("cpu"), events.append)
    return config.iterations / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model-size", default="tiny")
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = PromptableConfig(model_size=args.model_size, iterations=args.iterations, batch_size=2)
    with tempfile.TemporaryDirectory() as tmp:
        data = cases(Path(tmp))
        plain(data, config.model_copy(update={"iterations": 5}))  # warm-up
        runs: dict[str, list[float]] = {"plain": [], "medloop": []}
        for _ in range(args.repeats):
            runs["plain"].append(plain(data, config))
            runs["medloop"].append(medloop(data, config))
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {
        "model_size": args.model_size,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "plain_it_s": round(med["plain"], 3),
        "medloop_it_s": round(med["medloop"], 3),
        "ratio": round(med["medloop"] / med["plain"], 3),
        "runs": runs,
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
