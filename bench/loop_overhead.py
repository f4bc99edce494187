"""Per-trial overhead of the research loop, as a ratio to the trainer's own run time.

Runs one small real campaign serially (1 slot, so times add up) on a phantom dataset and
splits each trial's wall time into:
  trainer   - what the trainer itself reports (training + inference, inside the job)
  job start - the rest of the job's wall time (interpreter, torch/monai import, I/O)
  loop      - everything else the orchestrator spends per trial (planning, staging,
              host-side metric recomputation, statistics, knowledge writes, checkpoints)
and prints the ratios loop/trainer and (job start + loop)/trainer side by side.

    python bench/loop_overhead.py [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from medloop import bootstrap
from medloop.core.settings import Settings
from medloop.core.specs import parse_campaign_spec
from medloop.experiments.dataset import synth_phantom


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=Path(".medloop-bench/loop"))
    ap.add_argument("--iterations", type=int, default=150)
    args = ap.parse_args()
    shutil.rmtree(args.workspace, ignore_errors=True)
    data = synth_phantom(args.workspace / "data" / "Dataset950_Loop", cases=32, seed=3)
    settings = Settings(workspace=args.workspace, embedder="minilm")
    spec = parse_campaign_spec(
        {
            "name": "loop-overhead",
            "goal": "measure the loop",
            "dataset": {"path": str(data)},
            "baseline": {"loss": "dicece", "lr": 0.003, "iterations": args.iterations},
            "search_space": {"augmentation": ["none", "light"], "loss": ["dice", "dicece"]},
            "validation": {"seeds_per_arm": 2, "reproduction_seeds": 3},
            "budget": {"max_cycles": 1},
            "executor": {"kind": "local", "slots": 1},
            "planner": {"hypotheses_per_cycle": 2},
        },
        source="loop_overhead",
    )
    runner = bootstrap.campaign_runner(settings)
    start = time.monotonic()
    campaign = runner.run(runner.create(spec, owner="bench").id)
    wall = time.monotonic() - start
    trials = [
        t for t in runner.s.store.trials.list(campaign_id=campaign.id).items if t.result and t.result.job
    ]
    trainer = sum(float(t.result.efficiency.get("total_seconds", 0.0)) for t in trials if t.result)
    job_wall = sum(t.result.job.wall_s for t in trials if t.result and t.result.job)
    n = len(trials)
    loop = wall - job_wall
    report = {
        "trials": n,
        "campaign_wall_s": round(wall, 2),
        "trainer_s_per_trial": round(trainer / n, 3),
        "job_start_s_per_trial": round((job_wall - trainer) / n, 3),
        "loop_s_per_trial": round(loop / n, 3),
        "ratio_loop_to_trainer": round(loop / trainer, 3),
        "ratio_job_start_plus_loop_to_trainer": round((job_wall - trainer + loop) / trainer, 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
