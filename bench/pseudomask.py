"""Pseudo-mask generation time (agglomerative pooling of features, UniAP-style) on one
CPU core, for the S2-UniSeg-style pre-training (issue 16).

The features are those the pre-training loop makes masks from: the pre-training network
(a MONAI UNet, embed_dim 32, randomly initialised) run on a 3D phantom volume resampled to
96^3 and on a 256x256 slice of it, average-pooled by `mask_stride`. Timed: `agglomerate` + `mask_matrix` (what the loop runs
per sample); the network's forward pass is printed separately (the teacher's forward
happens in the loop anyway). Median of --reps runs after one warm-up.

    PYTHONPATH=. .venv/bin/python bench/pseudomask.py [--reps 5]

Targets: <= 50 ms per 2D slice and <= 1 s per 96^3 volume at the loop's default
mask_stride (4). Stride 2 (8x the nodes in 3D) is printed for reference, not as a target.
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLICE_MS = 50.0
VOLUME_S = 1.0


def _volume() -> Any:
    import numpy as np
    from scipy.ndimage import zoom

    from medloop.experiments.dataset.phantom3d import SITES_3D, render_case3d

    image, _, _ = render_case3d(0, 0, SITES_3D[0])
    image = np.asarray(image, dtype=np.float32)
    vol = zoom(image, [96 / s for s in image.shape], order=1)
    return (vol - vol.mean()) / max(float(vol.std()), 1e-6)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    import torch
    from scipy.ndimage import zoom

    from medloop.core.specs import PretrainConfig
    from medloop.experiments.pretrain.methods import _pool
    from medloop.experiments.pretrain.pseudomask import agglomerate, mask_matrix
    from medloop.experiments.pretrain.train import seg_config
    from medloop.experiments.segmentation.networks import build_network

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vol = _volume()
    slice2d = zoom(vol[:, :, 48], 256 / 96, order=1)
    cases = {
        "2D slice 256x256": (np.asarray(slice2d, dtype=np.float32), 2),
        "3D volume 96^3": (np.asarray(vol, dtype=np.float32), 3),
    }
    missed = False
    print(
        f"{'input':<18} {'stride':>6} {'nodes':>7} {'masks/level':>16} {'forward':>10} {'pseudo-mask':>12} "
        f"{'target':>8} {'ratio':>6}  verdict"
    )
    for name, (array, dims) in cases.items():
        config = PretrainConfig(
            spatial_dims=dims, base_features=8, depth=3, patch_size="x".join(["32"] * dims)
        )
        net = build_network(seg_config(config, init="scratch"), 1, 32, [32] * dims, [1.0] * dims).eval()
        x = torch.from_numpy(array)[None, None]
        with torch.no_grad():
            tic = time.perf_counter()
            dense = net(x)
            forward = time.perf_counter() - tic
        for stride in (4, 2):
            feats = _pool(dense, stride)[0]
            agglomerate(feats)  # warm-up (scipy import, caches)
            times, counts = [], []
            for _ in range(args.reps):
                tic = time.perf_counter()
                masks = agglomerate(feats, config.thresholds())
                mask_matrix(masks, max_queries=config.max_queries)
                times.append(time.perf_counter() - tic)
                counts = masks.counts()
            median = statistics.median(times)
            target = SLICE_MS / 1000 if dims == 2 else VOLUME_S
            ratio = median / target
            verdict = "met" if ratio <= 1 else "MISSED"
            if stride == 4:
                missed |= ratio > 1
            else:
                verdict += " (reference only)"
            print(
                f"{name:<18} {stride:>6} {feats[0].numel():>7} {counts!s:>16} {forward * 1000:>8.1f}ms "
                f"{median * 1000:>10.1f}ms {target * 1000:>6.0f}ms {ratio:>6.2f}  {verdict}"
            )
    print(f"one CPU core (torch threads={torch.get_num_threads()}), median of {args.reps}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
