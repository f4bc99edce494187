"""Calibration of the validation policy on simulated campaigns (replay tables).

Null campaigns: every config has the same true mean (no effect), with realistic case
and seed variance. Family-wise false positives are counted per cycle (the family Holm
corrects over) and per campaign (any `supported` claim; any claim that survived
reproduction). Planted campaigns: one change carries a true effect of the pre-registered
minimum size; power is the share of campaigns that support it (and reproduce it).

The campaigns run on the research-efficiency harness (bench/efficiency_runs.py). Without
--budget they are the historic 2-cycle campaigns; with --budget N only that many training
runs end them (the issue-13 target counts campaigns that run their whole budget; see also
`bench/research_efficiency.py --mode calibration`).

    python bench/calibration.py --null 1000 --planted 300
    python bench/calibration.py --null 200 --planted 100 --budget 120
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/ is on sys.path, the repository root is not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.efficiency_runs import CAL_MIN_EFFECT, calibration_run

_BUDGET: list[int | None] = [None]


def one(args: tuple[str, int]) -> dict[str, Any]:
    kind, seed = args
    # the historic calibration planner: one-factor moves without the surrogate model
    return calibration_run(kind, seed, _BUDGET[0], planner={"model_based": False}, screening=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null", type=int, default=1000)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--budget", type=int, help="training runs per campaign (default: 2 cycles)")
    args = ap.parse_args()
    _BUDGET[0] = args.budget
    jobs = [("null", i) for i in range(args.null)] + [("planted", 10_000 + i) for i in range(args.planted)]
    start = time.monotonic()
    with mp.get_context("fork").Pool(args.procs) as pool:
        rows = pool.map(one, jobs, chunksize=4)
    null = [r for r in rows if r["kind"] == "null"]
    planted = [r for r in rows if r["kind"] == "planted"]
    n_cycles = sum(r["cycles"] for r in null)
    report = {
        "null_campaigns": len(null),
        "null_fwer_per_cycle": round(sum(r["cycle_fp"] for r in null) / max(1, n_cycles), 4),
        "null_any_supported_per_campaign": round(
            sum(r["any_supported"] for r in null) / max(1, len(null)), 4
        ),
        "null_any_reproduced_per_campaign": round(
            sum(r["any_reproduced"] for r in null) / max(1, len(null)), 4
        ),
        "null_full_budget": sum(args.budget is not None and r["trials"] >= args.budget for r in null),
        "planted_campaigns": len(planted),
        "planted_effect": CAL_MIN_EFFECT,
        "power_supported": round(sum(r["planted_supported"] for r in planted) / max(1, len(planted)), 4),
        "power_reproduced": round(sum(r["planted_reproduced"] for r in planted) / max(1, len(planted)), 4),
        "planted_other_false_supported": round(
            sum(r["other_supported"] for r in planted) / max(1, len(planted)), 4
        ),
        "wall_s": round(time.monotonic() - start, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
