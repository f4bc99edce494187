"""The prepared GPU check (run by bench/gpu_check.sh when a GPU machine is lent; CI never
depends on it). Under 8 minutes, every step under its own timeout, writes one JSON:

1. a 3D phantom in nnU-Net v2 raw format, planned by nnU-Net v2 (when `nnunetv2` is
   installed: `nnUNetv2_plan_and_preprocess -c 3d_fullres`) and by medloop;
2. nnU-Net v2's own trainer for one epoch (250 iterations, `nnUNetTrainer_1epoch`) on
   that 3d_fullres plan: s/iteration from its "Epoch time" log line;
3. medloop's trainer (the real job entry point, DynUNet, AMP) on the same plan's patch and
   batch: s/iteration, torch's peak memory;
   both with the GPU busy % and the peak memory.used sampled by nvidia-smi every 0.5 s;
4. a promptable and a pre-training smoke campaign, if those tasks and their example
   campaigns exist in this checkout (else recorded as "absent").

    python bench/gpu_check.py [--out bench/results/gpu_check.json] [--iterations 250] [--smoke]

--smoke runs the medloop side on the CPU with a few iterations (checks the script only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASET = "Dataset611_GpuCheck"


class GpuSampler:
    """nvidia-smi's utilisation % and memory.used (MiB) every 0.5 s while in a `with`."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
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
                ).stdout.strip()
                util, mem = (float(v) for v in line.split(",")[:2])
                self.samples.append((util, mem))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.5)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=6)

    def summary(self) -> dict[str, float | None]:
        busy = [u for u, _ in self.samples]
        return {
            "gpu_busy_pct_mean": round(statistics.fmean(busy), 1) if busy else None,
            "gpu_memory_used_mb_max": max((m for _, m in self.samples), default=None),
        }


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """(exit code, stdout+stderr tail, seconds); 124 when it ran past `timeout`."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return proc.returncode, (proc.stdout + proc.stderr)[-4000:], time.monotonic() - t0
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return 124, text[-4000:], time.monotonic() - t0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def nnunet_side(raw: Path, work: Path, timeout: float) -> dict[str, Any]:
    """nnU-Net v2's plan and one epoch of its own trainer on it."""
    if not _has("nnunetv2"):
        return {"status": "absent", "why": "nnunetv2 is not installed (pip install 'medloop[nnunet]')"}
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(work / "pre"),
        "nnUNet_results": str(work / "res"),
    }
    bindir = Path(sys.executable).parent
    dataset_id = DATASET[7:10]
    rc, log, secs = _run(
        [str(bindir / "nnUNetv2_plan_and_preprocess"), "-d", dataset_id, "-c", "3d_fullres", "-np", "4"],
        timeout / 3,
        env,
    )
    out: dict[str, Any] = {"plan_rc": rc, "plan_seconds": round(secs, 1)}
    plans_file = work / "pre" / DATASET / "nnUNetPlans.json"
    if rc != 0 or not plans_file.is_file():
        return {**out, "status": "plan failed", "log_tail": log[-1500:]}
    plan = json.loads(plans_file.read_text())["configurations"]["3d_fullres"]
    out["plan"] = {
        "patch_size": plan["patch_size"],
        "batch_size": plan["batch_size"],
        "spacing": plan["spacing"],
    }
    with GpuSampler() as gpu:
        rc, log, secs = _run(
            [str(bindir / "nnUNetv2_train"), dataset_id, "3d_fullres", "0", "-tr", "nnUNetTrainer_1epoch"],
            timeout * 2 / 3,
            env,
        )
    epoch = re.findall(r"Epoch time: ([0-9.]+) s", log)
    out.update(train_rc=rc, train_seconds=round(secs, 1), **gpu.summary())
    if not epoch:
        return {**out, "status": "no epoch finished", "log_tail": log[-1500:]}
    # nnU-Net trains with AMP on CUDA; one epoch is 250 iterations
    return {**out, "status": "ok", "amp": True, "s_per_iteration": float(epoch[0]) / 250.0}


def medloop_side(
    ds: Path, plan: dict[str, Any] | None, iterations: int, smoke: bool, work: Path
) -> dict[str, Any]:
    """medloop's trainer through the job entry point on the same patch and batch."""
    from medloop.core.records import JobOutcome, TrialSpec
    from medloop.core.specs import SegConfig
    from medloop.experiments.dataset import build_manifest, stage_inputs
    from medloop.experiments.dataset.plans import plan_baseline

    base = plan_baseline(ds)
    if plan is not None:  # nnU-Net's plan is in its (z, y, x) order; medloop's is (x, y, z)
        base = {**base, "patch_size": "x".join(str(p) for p in plan["patch_size"][::-1])}
        base["batch_size"] = int(plan["batch_size"])
    if smoke:
        base = {**base, "patch_size": "32x32x16", "batch_size": 2, "base_features": 8, "depth": 3}
    config = SegConfig.model_validate(
        {
            **base,
            "iterations": iterations,
            "epoch_iterations": iterations,
            "amp": True,
            "internal_val_fraction": 0.2,
        }
    )
    manifest = build_manifest(ds, eval_fraction=0.25, split_seed=1)
    parts = stage_inputs(ds, manifest, work / "staging")
    in_dir = work / "in"
    in_dir.mkdir(parents=True, exist_ok=True)
    for name, path in parts.items():
        (in_dir / name).symlink_to(path)
    (in_dir / "spec.json").write_text(TrialSpec(dataset=manifest, config=config, seed=0).model_dump_json())
    out_dir = work / "out"
    with GpuSampler() as gpu:
        rc, log, secs = _run(
            [
                sys.executable,
                "-m",
                "medloop.experiments",
                "run",
                "--spec",
                str(in_dir / "spec.json"),
                "--out",
                str(out_dir),
            ],
            140,
        )
    result: dict[str, Any] = {
        "rc": rc,
        "seconds": round(secs, 1),
        "patch_size": config.patch_size,
        **gpu.summary(),
    }
    if rc != 0 or not (out_dir / "result.json").is_file():
        return {**result, "status": "failed", "log_tail": log[-1500:]}
    eff = JobOutcome.model_validate_json((out_dir / "result.json").read_text()).efficiency
    keep = (
        "device",
        "amp",
        "s_per_iteration",
        "peak_memory_mb",
        "inference_s_per_case",
        "parameters",
        "flops_per_patch",
    )
    return {**result, "status": "ok", "batch_size": config.batch_size, **{k: eff.get(k) for k in keep}}


def smoke_campaign(task: str, example: str, timeout: float, work: Path) -> dict[str, Any]:
    """A CI-sized example campaign of a task family, if this checkout has it."""
    from medloop.core.specs import CampaignSpec

    tasks = CampaignSpec.model_fields["task"].annotation
    known = task in str(tasks)
    path = ROOT / "examples" / example
    if not known or not path.is_file():
        return {
            "status": "absent",
            "why": f"task {task!r} known: {known}; {path.name} present: {path.is_file()}",
        }
    env = {**os.environ, "MEDLOOP_WORKSPACE": str(work / f"ws-{task}")}
    with GpuSampler() as gpu:
        rc, log, secs = _run([sys.executable, "-m", "medloop", "campaign", "run", str(path)], timeout, env)
    status = "ok" if rc == 0 else ("timed out" if rc == 124 else "failed")
    return {"status": status, "rc": rc, "seconds": round(secs, 1), **gpu.summary(), "log_tail": log[-800:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    import torch

    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not torch.cuda.is_available() and not args.smoke:
        report["status"] = "skipped: no CUDA device"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report))
        return 0
    report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (smoke)"
    report["versions"] = {"torch": torch.__version__}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        from medloop.experiments.dataset.phantom3d import synth_phantom3d

        raw = work / "raw"
        ds = synth_phantom3d(raw / DATASET, cases=8 if args.smoke else 16, seed=0, test_cases=2)
        if args.smoke:
            report["nnunet"] = {"status": "skipped in --smoke"}
        else:
            report["nnunet"] = nnunet_side(raw, work / "nn", timeout=220)
        plan = report["nnunet"].get("plan")
        iterations = 5 if args.smoke else args.iterations
        report["medloop"] = medloop_side(ds, plan, iterations, args.smoke, work / "ml")
        theirs = report["nnunet"].get("s_per_iteration")
        ours = report["medloop"].get("s_per_iteration")
        if theirs and ours:
            report["throughput_medloop_over_nnunet"] = round(theirs / ours, 3)
        for task, example in (("promptable", "promptable.yaml"), ("pretrain", "pretrain_lowlabel.yaml")):
            report[f"{task}_smoke"] = smoke_campaign(task, example, 60 if args.smoke else 45, work)
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    report["status"] = "done"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
