"""Docker runtime overhead against a plain process, side by side in one run.

1. Fixed overhead per trial: N trivial jobs (`python -c pass`) through the Docker runtime
   (create, start, stream, collect, remove) vs the same command as a plain subprocess.
   Target (issue 4): p50 overhead <= 0.5 s.
2. A ~30 s CPU training run (a small torch MLP, fixed number of steps) through the Docker
   runtime vs a plain process with the same threads. Target: wall ratio <= 1.05.

Usage: python bench/docker_overhead.py [--trials 20] [--steps N] [--image medloop-runtime:latest]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medloop.core.records import JobLimits, JobSpec
from medloop.sandbox.docker import DockerRuntime

TRAIN = """
import time, torch
torch.manual_seed(0)
torch.set_num_threads({threads})
x = torch.randn(4096, 256); y = torch.randn(4096, 1)
model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                            torch.nn.ReLU(), torch.nn.Linear(512, 1))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
start = time.perf_counter()
for step in range({steps}):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0:
        print('step', step, float(loss.detach()), flush=True)
print('train_s', time.perf_counter() - start)
"""


def plain(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def in_docker(rt: DockerRuntime, key: str, code: str, cpus: float) -> float:
    spec = JobSpec(
        key=key,
        command=["python", "-c", code],
        inputs={},
        limits=JobLimits(timeout_s=600, memory_mb=4096, cpus=cpus),
    )
    start = time.perf_counter()
    result = rt.wait(rt.submit(spec), on_log=lambda _line: None)
    wall = time.perf_counter() - start
    if result.status != "succeeded":
        raise SystemExit(f"{key}: {result.status} {result.reason}\n{result.log_tail}")
    return wall


def raw_sdk(rt: DockerRuntime, image_id: str) -> float:
    """The bare Docker lifecycle of the same container (no medloop): create, start, wait, remove."""
    start = time.perf_counter()
    container = rt.client.containers.create(
        image_id, ["python", "-c", "pass"], network_mode="none", detach=True
    )
    container.start()
    container.wait()
    container.remove(force=True)
    return time.perf_counter() - start


def calibrate(threads: int, target_s: float) -> int:
    """Steps that take about `target_s` on this host (measured with 40 steps)."""
    plain([sys.executable, "-c", "import torch"])  # warm the page cache first
    probe = 40
    wall = plain([sys.executable, "-c", TRAIN.format(threads=threads, steps=probe)])
    overhead = plain([sys.executable, "-c", "import torch"])
    per_step = max(1e-4, (wall - overhead) / probe)
    return max(probe, int(target_s / per_step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="Length of the training run")
    parser.add_argument("--steps", type=int, default=0, help="Training steps (default: calibrated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image", default="medloop-runtime:latest")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="medloop-bench-") as tmp:
        rt = DockerRuntime(Path(tmp) / "jobs", image=args.image)
        in_docker(rt, "warmup", "pass", 1.0)  # image lookup, page cache
        plain([sys.executable, "-c", "pass"])
        image_id, _ = rt.resolve_image(args.image)
        docker_s, plain_s, raw_s = [], [], []
        for i in range(args.trials):
            docker_s.append(in_docker(rt, f"trivial-{i}", "pass", 1.0))
            plain_s.append(plain([sys.executable, "-c", "pass"]))
            raw_s.append(raw_sdk(rt, image_id))
        overhead = [d - p for d, p in zip(docker_s, plain_s, strict=True)]
        p50 = statistics.median(overhead)
        print(f"fixed overhead per trial ({args.trials} trials, `python -c pass`):")
        print(
            f"  medloop docker runtime p50 {statistics.median(docker_s):.3f} s   "
            f"bare docker SDK lifecycle p50 {statistics.median(raw_s):.3f} s   "
            f"plain process p50 {statistics.median(plain_s):.3f} s"
        )
        print(
            f"  medloop runtime / bare docker lifecycle: {statistics.median(docker_s) / statistics.median(raw_s):.2f}"
        )
        print(
            f"  overhead vs plain p50 {p50:.3f} s  p90 {sorted(overhead)[int(0.9 * len(overhead)) - 1]:.3f} s"
            f"  (target <= 0.5 s: {'ok' if p50 <= 0.5 else 'MISSED'})"
        )

        steps = args.steps or calibrate(args.threads, args.seconds)
        code = TRAIN.format(threads=args.threads, steps=steps)
        # Alternate the order (D P P D D P) so neither side always runs on a warmer or
        # busier machine; compare medians.
        docker_t, plain_t = [], []
        for i, side in enumerate("DPPDDP"):
            if side == "D":
                docker_t.append(in_docker(rt, f"train-{i}", code, float(args.threads)))
            else:
                plain_t.append(plain([sys.executable, "-c", code]))
        d, p = statistics.median(docker_t), statistics.median(plain_t)
        print(f"training run ({steps} steps, {args.threads} threads, 3 runs each, alternated):")
        print(
            f"  docker {', '.join(f'{t:.1f}' for t in docker_t)} s   plain {', '.join(f'{t:.1f}' for t in plain_t)} s"
        )
        print(
            f"  wall ratio docker/plain (medians) {d / p:.3f}  (target <= 1.05: {'ok' if d / p <= 1.05 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
