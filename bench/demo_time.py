"""The figure the README quotes for `make demo`: wall and CPU time of the demo's campaign
(the same two commands as the Makefile target, after the install), in a fresh workspace.

    python bench/demo_time.py [--json]

Prints the dataset synthesis and campaign wall time, the CPU seconds of the campaign
(its process and everything it started: children's user+sys), the core count and the
load average at the start (other work on the machine slows the demo down)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the command and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="medloop-demo-") as tmp:
        data = Path(tmp) / "data" / "Dataset901_Phantom"
        env = {**os.environ, "MEDLOOP_WORKSPACE": str(Path(tmp) / "ws"), "MEDLOOP_DEMO_DATA": str(data)}
        medloop = [sys.executable, "-m", "medloop"]
        synth_wall, synth_cpu = timed(
            [*medloop, "dataset", "synth", str(data), "--cases", "48", "--seed", "7"], env
        )
        spec = (ROOT / "examples" / "quickstart.yaml").read_text()
        spec_file = Path(tmp) / "quickstart.yaml"
        # The example names the Makefile's DEMO_DATA path relative to the repository.
        spec_file.write_text(spec.replace(".medloop/data/Dataset901_Phantom", str(data)))
        wall, cpu = timed([*medloop, "campaign", "run", str(spec_file)], env)
    figures = {
        "synth_wall_s": round(synth_wall, 1),
        "synth_cpu_s": round(synth_cpu, 1),
        "campaign_wall_s": round(wall, 1),
        "campaign_cpu_s": round(cpu, 1),
        "cores": os.cpu_count(),
        "load_at_start": round(load, 2),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"make demo: dataset {synth_wall:.0f} s + campaign {wall:.0f} s wall "
        f"({cpu:.0f} CPU s) on {os.cpu_count()} cores, load {load:.2f} at start"
    )


if __name__ == "__main__":
    main()
