"""One short GPU check: a 3D DynUNet (nnU-Net 3d_fullres-like topology, deep supervision)
trained through the real job entry point with AMP and channels-last for a few hundred
iterations; prints iterations/s and the GPU utilisation sampled by nvidia-smi.

    python bench/gpu_dynunet.py [--iterations 300] [--patch 128x128x96] [--batch 2]

Data: the 3D phantom resampled to a fine grid (target_spacing), so that volumes are larger
than the patch as in real CT. Without a GPU it stops, unless --smoke (a tiny CPU run that
only checks the script).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from medloop.core.records import JobOutcome, TrialSpec
from medloop.core.specs import SegConfig
from medloop.experiments.dataset import build_manifest, stage_inputs
from medloop.experiments.dataset.phantom3d import synth_phantom3d


def sample_gpu(stop: threading.Event, out: list[tuple[float, float]]) -> None:
    """(utilisation %, memory MiB) from nvidia-smi every 0.5 s until `stop`."""
    while not stop.is_set():
        try:
            line = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-i",
                    "0",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            util, mem = (float(v) for v in line.split(",")[:2])
            out.append((util, mem))
        except (OSError, subprocess.SubprocessError, ValueError):
            return
        stop.wait(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--patch", default="128x128x96")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--spacing", default="0.5x0.5x0.6", help="target spacing (mm) the phantom is resampled to"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run that only checks the script")
    args = parser.parse_args()
    has_gpu = shutil.which("nvidia-smi") is not None
    if not has_gpu and not args.smoke:
        print("no GPU (nvidia-smi not found); use --smoke for a CPU check of the script")
        return 2
    if args.smoke:
        args.iterations, args.patch, args.spacing = 4, "32x32x16", "none"
    root = Path(tempfile.mkdtemp(prefix="gpu-dynunet-"))
    try:
        ds = synth_phantom3d(root / "Dataset905_GPU", cases=12, seed=0, test_cases=2)
        manifest = build_manifest(ds, eval_fraction=0.2, split_seed=0)
        parts = stage_inputs(ds, manifest, root / "staging")
        in_dir = root / "in"
        in_dir.mkdir()
        for name, path in parts.items():
            (in_dir / name).symlink_to(path)
        config = SegConfig(
            model="dynunet",
            spatial_dims=3,
            base_features=32,
            depth=6,
            patch_size=args.patch,
            batch_size=args.batch,
            loss="dicece",
            optimizer="sgd",
            lr=0.01,
            momentum=0.99,
            weight_decay=3e-5,
            schedule="poly",
            augmentation="nnunet",
            iterations=args.iterations,
            epoch_iterations=max(1, args.iterations // 3),
            target_spacing=args.spacing,
            amp=True,
            internal_val_fraction=0.2,
            num_threads=4,
        )
        (in_dir / "spec.json").write_text(
            TrialSpec(dataset=manifest, config=config, seed=0).model_dump_json()
        )
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_gpu, args=(stop, samples), daemon=True)
        if has_gpu:
            sampler.start()
        tic = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "medloop.experiments",
                "run",
                "--spec",
                str(in_dir / "spec.json"),
                "--out",
                str(root / "out"),
            ],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - tic
        stop.set()
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
        result = JobOutcome.model_validate_json((root / "out" / "result.json").read_text())
        eff = result.efficiency
        epochs = [
            json.loads(line)
            for line in proc.stdout.splitlines()
            if '"epoch"' in line and '"event":"epoch"' in line
        ]
        print(
            f"device: {eff['device']}  torch {result.versions.get('torch')}  CUDA {result.versions.get('cuda', '-')}  "
            f"MONAI {result.versions.get('monai')}"
        )
        print(
            f"DynUNet 3D, patch {eff['patch']}, batch {args.batch}, {eff['parameters'] / 1e6:.1f}M parameters, "
            f"AMP {eff['amp']}, {eff['iterations']} iterations"
        )
        print(
            f"training: {1 / eff['s_per_iteration']:.2f} it/s ({eff['train_seconds']:.1f} s, excl. validation); "
            f"peak memory {eff['peak_memory_mb']:.0f} MB; inference {eff['inference_s_per_case']:.2f} s/case"
        )
        print(f"whole job wall time {wall:.1f} s (setup {eff['setup_seconds']:.1f} s)")
        if samples:
            utils = [u for u, _ in samples]
            print(
                f"GPU utilisation (nvidia-smi, {len(samples)} samples at 0.5 s over the whole job): "
                f"median {statistics.median(utils):.0f}%, mean {statistics.mean(utils):.0f}%, "
                f"max memory used {max(m for _, m in samples):.0f} MiB"
            )
        for e in epochs:
            print(
                f"  epoch {e['epoch']:.0f}: loss {e['loss']:.3f}, val Dice {e.get('val_dice', float('nan')):.3f}, {e['seconds']:.1f} s"
            )
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
