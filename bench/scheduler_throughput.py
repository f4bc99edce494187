"""Scheduler throughput: 20 short trials on 2 slots vs the same trials serially.

Each trial is a CPU-bound Python loop (~1 s on one core; `--work sleep` makes it idle
instead). Both schedules run in this process, one after the other, on the same runtime.
Target (issue 4): 2 slots finish in <= 0.55x the serial time.

Usage: python bench/scheduler_throughput.py [--trials 20] [--runtime local|docker] [--work cpu|sleep]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from medloop.core.records import JobLimits, JobSpec
from medloop.core.settings import Settings
from medloop.core.specs import SandboxSpec
from medloop.sandbox.factory import make_runtime
from medloop.sandbox.scheduler import Scheduler

CPU = "import time\nend = time.perf_counter() + {s}\nn = 0\nwhile time.perf_counter() < end:\n    n += 1\nprint(n)"
SLEEP = "import time; time.sleep({s}); print('slept')"


def run(runtime_name: str, workspace: Path, slots: int, trials: int, code: str) -> float:
    settings = Settings(workspace=workspace)
    runtime = make_runtime(settings, SandboxSpec(runtime=runtime_name))  # type: ignore[arg-type]
    jobs = [
        JobSpec(
            key=f"t{i}", command=["python", "-c", code], inputs={}, limits=JobLimits(timeout_s=120, cpus=1)
        )
        for i in range(trials)
    ]
    start = time.perf_counter()
    results = Scheduler(runtime, slots=slots).run(jobs)
    wall = time.perf_counter() - start
    bad = [r for r in results if r.status != "succeeded"]
    if bad:
        raise SystemExit(f"{bad[0].key}: {bad[0].status} {bad[0].reason}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0, help="Work per trial")
    parser.add_argument("--runtime", default="local", choices=["local", "docker"])
    parser.add_argument("--work", default="cpu", choices=["cpu", "sleep"])
    args = parser.parse_args()
    code = (CPU if args.work == "cpu" else SLEEP).format(s=args.seconds)
    with tempfile.TemporaryDirectory(prefix="medloop-bench-") as tmp:
        serial = run(args.runtime, Path(tmp) / "serial", 1, args.trials, code)
        parallel = run(args.runtime, Path(tmp) / "parallel", 2, args.trials, code)
    ratio = parallel / serial
    print(f"{args.trials} trials x {args.seconds:g} s ({args.work}) on the {args.runtime} runtime:")
    print(f"  serial (1 slot) {serial:.1f} s   2 slots {parallel:.1f} s")
    print(f"  ratio 2 slots / serial {ratio:.3f}  (target <= 0.55: {'ok' if ratio <= 0.55 else 'MISSED'})")


if __name__ == "__main__":
    main()
