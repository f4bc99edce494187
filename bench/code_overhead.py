"""Overhead of a code hypothesis over a config hypothesis of the same training length.

One campaign's trial service (real local sandbox, one slot) runs the same trial config
alternately without and with a shipped post-processing module (`small_blob_removal`),
each on fresh seeds so no run is reused. The per-trial wall time (submit to scored
result) is compared side by side: ratio code / config (target <= 1.10). The module's
host checks and its smoke trial are timed separately (they happen once per module).

    PYTHONPATH=. .venv/bin/python bench/code_overhead.py [--iterations 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medloop.core.records import Campaign  # noqa: E402
from medloop.core.settings import Settings  # noqa: E402
from medloop.core.specs import CampaignSpec, SegConfig  # noqa: E402
from medloop.core.store import open_store  # noqa: E402
from medloop.engine.base import TrialRequest, trial_id_for  # noqa: E402
from medloop.engine.code import check_source, library, register  # noqa: E402
from medloop.engine.trials import SandboxTrials  # noqa: E402
from medloop.experiments.dataset import synth_phantom  # noqa: E402
from medloop.sandbox.factory import make_executor  # noqa: E402

TARGET = 1.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        ds = synth_phantom(ws / "data" / "Dataset993_CodeBench", cases=16, seed=0, test_cases=2, size=48)
        spec = CampaignSpec.model_validate(
            {
                "name": "code-bench",
                "goal": "overhead",
                "dataset": {"path": ds},
                "search_space": {"lr": [1e-3, 1e-2]},
                "sandbox": {"runtime": "local", "timeout": 600},
                "code": {"points": ["postprocess"]},
            }
        )
        store = open_store(ws / "medloop.db")
        store.campaigns.add(Campaign(id="cmp_bench", name="b", owner="bench", spec=spec))
        trials = SandboxTrials(
            store,
            spec,
            executor=make_executor(Settings(workspace=ws), spec.sandbox, spec.executor),
            workspace=ws,
            staging_dir=ws / "staging",
        )
        source = library()["small_blob_removal"]
        t0 = time.perf_counter()
        check_source(source)
        module = register(store, source, name="small_blob_removal", author="medloop-library")
        check_s = time.perf_counter() - t0
        base = SegConfig(iterations=args.iterations, epoch_iterations=args.iterations, batch_size=4)
        code = base.model_copy(update={"code_postprocess": module.sha256})

        def run(config: SegConfig, seed: int) -> float:
            tspec = trials.spec_for(config, seed)
            tic = time.perf_counter()
            [trial] = trials.run(
                "cmp_bench", [TrialRequest(trial_id_for("cmp_bench", tspec), None, "control", tspec)]
            )
            wall = time.perf_counter() - tic
            if trial.status != "succeeded":
                raise SystemExit(f"trial failed: {trial.result.error if trial.result else trial.status}")
            return wall

        # the first code trial pays the smoke trial: timed separately, then excluded
        smoke_s = run(code, 100) - run(code, 101)
        plain, coded = [], []
        for r in range(args.repeats):
            plain.append(run(base, r))
            coded.append(run(code, 200 + r))
        trials.close()
    p, c = statistics.median(plain), statistics.median(coded)
    ratio = c / p
    print(f"{'':28}{'config':>10}{'code':>10}")
    print(f"{'trial wall s (median of ' + str(args.repeats) + ')':28}{p:10.2f}{c:10.2f}")
    print(f"ratio code / config: {ratio:.3f} (target <= {TARGET})")
    print(f"host checks + store, once per module: {check_s * 1000:.1f} ms")
    print(f"smoke trial, once per module (first trial minus a second one): {smoke_s:.2f} s")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
