"""medloop's trainer vs a plain MONAI training loop: same model, data, iterations, seed.

Both loops train a MONAI UNet on the same cached phantom cases with the same transforms,
loss (Dice+CE) and optimiser (AdamW), one CPU thread each, and are run alternately in
this process (plain, medloop, plain, medloop, ...). The medloop side is the job's own
`train()`: LR schedule, loss accumulation, JSON progress events, epoch bookkeeping and
the bounded checkpoint at the end. Internal validation is off on both sides (the plain
loop has none). Prints iterations/s side by side and the throughput ratio
medloop / plain (the target is >= 0.95).

    python bench/trainer_overhead.py [--iterations 150] [--repeats 3] [--dims 2|3]
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

sys.modules.setdefault("transformers", None)  # type: ignore[arg-type]  # as in the job: MONAI skips it

import torch  # noqa: E402

from medloop.core.specs import SegConfig  # noqa: E402
from medloop.experiments.dataset import build_manifest, read_dataset, synth_phantom  # noqa: E402
from medloop.experiments.segmentation.data import (  # noqa: E402
    Normalizer,
    auto_patch,
    fit_patch,
    load_cases,
    make_loader,
    train_transform,
    training_items,
)
from medloop.experiments.segmentation.networks import build_network, patch_divisor  # noqa: E402
from medloop.experiments.segmentation.training import build_loss, train  # noqa: E402


def prepare(root: Path, dims: int, iterations: int) -> tuple[SegConfig, list[dict[str, Any]], list[int], int]:
    if dims == 3:
        from medloop.experiments.dataset.phantom3d import synth_phantom3d

        ds_path = synth_phantom3d(root / "Dataset902_Bench3D", cases=12, seed=0)
        config = SegConfig(
            spatial_dims=3,
            iterations=iterations,
            batch_size=2,
            patch_size="32x32x32",
            epoch_iterations=iterations,
        )
    else:
        ds_path = synth_phantom(root / "Dataset901_Bench", cases=32, seed=0)
        config = SegConfig(iterations=iterations, batch_size=8, epoch_iterations=iterations)
    config = config.model_copy(update={"internal_val_fraction": 0.0})
    ds = read_dataset(ds_path)
    manifest = build_manifest(ds_path, eval_fraction=0.2, split_seed=0)
    cases = load_cases(
        ds.root / "imagesTr",
        ds.root / "labelsTr",
        manifest.train_cases,
        n_channels=ds.n_channels,
        ending=ds.file_ending,
        sites=ds.sites,
    )
    norm = Normalizer.fit(ds.channel_names, cases)
    for case in cases:
        case.image = norm.apply(case.image)
    spacing = list(cases[0].reference.spacing[:dims])
    wanted = (
        [int(v) for v in config.patch_size.split("x")]
        if config.patch_size != "auto"
        else auto_patch(config, cases)
    )
    patch = fit_patch(wanted, patch_divisor(config, wanted, spacing))
    return config, training_items(config, cases), patch, max(ds.labels.values()) + 1


Timing = tuple[float, float]  # (iterations per wall-clock second, iterations per CPU second)


def medloop_run(
    config: SegConfig, items: list[dict[str, Any]], patch: list[int], n_classes: int, seed: int
) -> Timing:
    torch.manual_seed(seed)
    model = build_network(config, 1, n_classes, patch, patch)
    loader = make_loader(config, items, patch, seed, torch.device("cpu"))
    sink: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tic, cpu = time.perf_counter(), time.process_time()
        train(
            config,
            model,
            loader,
            val_cases=[],
            labels={str(i): i for i in range(n_classes)},
            patch=patch,
            device=torch.device("cpu"),
            checkpoint_dir=Path(tmp),
            emit=lambda event: sink.append(json.dumps(event)),
            deep_supervision=False,
            params=list(model.parameters()),
        )
        wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
    return config.iterations / wall, config.iterations / cpu


def plain_run(
    config: SegConfig, items: list[dict[str, Any]], patch: list[int], n_classes: int, seed: int
) -> Timing:
    """The MONAI tutorial loop: CacheDataset + shuffling DataLoader, forward/backward/step."""
    from monai.data.dataloader import DataLoader
    from monai.data.dataset import CacheDataset

    torch.manual_seed(seed)
    model = build_network(config, 1, n_classes, patch, patch)
    transform = train_transform(config, items, patch, seed)
    dataset = CacheDataset(items, transform=transform, cache_rate=1.0, progress=False, copy_cache=False)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    loss_fn = build_loss(config, deep_supervision=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    done = 0
    tic, cpu = time.perf_counter(), time.process_time()
    while done < config.iterations:
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            done += 1
            if done == config.iterations:
                break
    wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
    return config.iterations / wall, config.iterations / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config, items, patch, n_classes = prepare(Path(tmp), args.dims, args.iterations)
        plain_run(config.model_copy(update={"iterations": 5}), items, patch, n_classes, 0)  # warm-up
        medloop_run(
            config.model_copy(update={"iterations": 5, "epoch_iterations": 5}), items, patch, n_classes, 0
        )
        plain: list[Timing] = []
        ours: list[Timing] = []
        for rep in range(args.repeats):
            # ABBA order within each pair of pairs, so slow drift of the machine cancels
            first, second = (plain_run, medloop_run) if rep % 2 == 0 else (medloop_run, plain_run)
            a, b = first(config, items, patch, n_classes, rep), second(config, items, patch, n_classes, rep)
            plain.append(a if first is plain_run else b)
            ours.append(b if first is plain_run else a)
    wall_ratio = statistics.median(o[0] / p[0] for o, p in zip(ours, plain, strict=True))
    cpu_ratio = statistics.median(o[1] / p[1] for o, p in zip(ours, plain, strict=True))
    print(
        f"trainer overhead: {args.dims}D UNet, patch {'x'.join(map(str, patch))}, batch {config.batch_size}, "
        f"{args.iterations} iterations, {args.repeats} ABBA-ordered pairs, 1 CPU thread"
    )
    print(f"{'loop':<9}{'it/s wall (median)':>20}{'it/s CPU (median)':>20}")
    for name, runs in (("plain", plain), ("medloop", ours)):
        print(
            f"{name:<9}{statistics.median(r[0] for r in runs):>20.2f}{statistics.median(r[1] for r in runs):>20.2f}"
        )
    print(
        f"throughput ratio medloop/plain (median of pairs): CPU time {cpu_ratio:.3f}, wall clock {wall_ratio:.3f}"
    )
    print(
        f"target >= 0.95 (CPU time, robust to other load on the machine): {'PASS' if cpu_ratio >= 0.95 else 'FAIL'}"
    )
    return 0 if cpu_ratio >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
