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


def _outcome(medloop: list[str], env: dict[str, str]) -> dict[str, object]:
    """What the demo's campaign did, from its own JSON (`campaign list/status --json`) and
    the store: cycles, trainings, whether the incumbent moved, the test split once."""
    listed = subprocess.run(
        [*medloop, "campaign", "list", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    campaign_id = json.loads(listed.stdout)[0]["id"]
    shown = subprocess.run(
        [*medloop, "campaign", "status", campaign_id, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    view = json.loads(shown.stdout)
    from medloop.core.settings import Settings
    from medloop.core.store import open_store

    store = open_store(Settings(workspace=Path(env["MEDLOOP_WORKSPACE"])).store_url)
    campaign = store.campaigns.get(campaign_id)
    metric = campaign.spec.objective.metric
    report = campaign.summary.get("test_report") or {}
    base = (report.get("baseline") or {}).get(metric, {}).get("overall")
    inc = (report.get("incumbent") or {}).get(metric, {}).get("overall")
    return {
        "cycles": view["cycles_done"],
        "trials": view["trials"],
        "incumbent_moved": campaign.incumbent != campaign.baseline,
        "metric": metric,
        "test_baseline": None if base is None else round(float(base), 4),
        "test_incumbent": None if inc is None else round(float(inc), 4),
        "stop_reason": view["stop_reason"],
    }


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
        outcome = _outcome(medloop, env)
    figures = {
        "synth_wall_s": round(synth_wall, 1),
        "synth_cpu_s": round(synth_cpu, 1),
        "campaign_wall_s": round(wall, 1),
        "campaign_cpu_s": round(cpu, 1),
        "cores": os.cpu_count(),
        "load_at_start": round(load, 2),
        **outcome,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"make demo: dataset {synth_wall:.0f} s + campaign {wall:.0f} s wall "
        f"({cpu:.0f} CPU s) on {os.cpu_count()} cores, load {load:.2f} at start"
    )
    print(
        f"campaign: {outcome['cycles']} cycle(s), {outcome['trials']} trainings, incumbent "
        f"{'moved' if outcome['incumbent_moved'] else 'unchanged'}; test {outcome['metric']} "
        f"{outcome['test_baseline']} -> {outcome['test_incumbent']}; stop: {outcome['stop_reason']}"
    )


if __name__ == "__main__":
    main()
