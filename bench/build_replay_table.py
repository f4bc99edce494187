"""Build a replay table of REAL trial outcomes: a grid of small CPU trainings on a phantom
dataset, run through the production path (local sandbox jobs, metrics recomputed on the
host). The planner benchmark replays campaigns on it.

    python bench/build_replay_table.py --name phantom_a --seed 7 --out bench/data/phantom_a.json
    python bench/build_replay_table.py --name phantom_b --seed 8 --sites related \
        --out bench/data/phantom_b.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from medloop import bootstrap
from medloop.agents.space import grid
from medloop.core.settings import Settings
from medloop.core.specs import FloatRange, make_config, parse_campaign_spec
from medloop.engine.base import TrialRequest, case_objective, trial_id_for
from medloop.engine.replay import ReplayOutcome, ReplayTable, save_table
from medloop.engine.trials import SandboxTrials
from medloop.experiments.dataset import synth_phantom
from medloop.experiments.dataset.phantom import SiteStyle

# The search space the planner benchmark uses; lr on the planners' own grid.
LR_RANGE = FloatRange(type="float", low=0.0003, high=0.01, log=True)
SPACE = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": grid(LR_RANGE)}
BASE = {"model": "unet", "base_features": 16, "iterations": 150, "batch_size": 8}
SEEDS = (0, 1, 2, 1000, 1001, 1002)
RELATED_SITES = (
    SiteStyle("site_c", shift=-20.0, contrast=1.1, noise=26.0, blur=0.4, spacing=0.9, bias=10.0),
    SiteStyle("site_d", shift=50.0, contrast=0.75, noise=38.0, blur=1.0, spacing=1.3, bias=30.0),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cases", type=int, default=48)
    ap.add_argument("--sites", choices=["default", "related"], default="default")
    ap.add_argument("--workspace", type=Path, default=Path(".medloop-bench"))
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    data = args.workspace / "data" / f"Dataset9{args.seed:02d}_{args.name}"
    sites = RELATED_SITES if args.sites == "related" else None
    synth_phantom(data, cases=args.cases, seed=args.seed, **({"sites": sites} if sites else {}))
    settings = Settings(workspace=args.workspace, embedder="hash")
    store = bootstrap.store(settings)
    spec = parse_campaign_spec(
        {
            "name": f"grid-{args.name}",
            "goal": "build a replay table",
            "dataset": {"path": str(data)},
            "baseline": BASE,
            "search_space": {
                "loss": SPACE["loss"],
                "augmentation": SPACE["augmentation"],
                "lr": LR_RANGE.model_dump(),
            },
            "executor": {"kind": "local", "slots": args.slots},
            "sandbox": {"timeout": "10m"},
        },
        source="build_replay_table",
    )
    campaign = bootstrap.campaign_runner(settings).create(spec, owner="bench")
    trials = SandboxTrials(
        store,
        spec,
        executor=bootstrap.executor_factory(settings)(spec),
        workspace=settings.workspace_dir,
        staging_dir=settings.staging_dir,
    )
    requests, keys = [], []
    for values in itertools.product(*SPACE.values()):
        factors = dict(zip(SPACE, values, strict=True))
        config = make_config("segmentation", {**BASE, **factors})
        for seed in SEEDS:
            trial_spec = trials.spec_for(config, seed)
            requests.append(TrialRequest(trial_id_for(campaign.id, trial_spec), None, "baseline", trial_spec))
            keys.append((factors, seed))
    start = time.monotonic()
    done = trials.run(
        campaign.id,
        requests,
        on_trial=lambda t: print(
            f"{t.status} {t.id} {t.result.objective if t.result else None}", file=sys.stderr, flush=True
        ),
    )
    outcomes = []
    for (factors, seed), trial in zip(keys, done, strict=True):
        if trial.status != "succeeded" or trial.result is None:
            print(f"skipping {factors} seed {seed}: {trial.status}", file=sys.stderr)
            continue
        test = trials.evaluate_test(trial)
        outcomes.append(
            ReplayOutcome(
                config=factors,
                seed=seed,
                eval=case_objective(trial.result.evaluations["eval"], "dice"),
                test=case_objective(test, "dice") if test else {},
            )
        )
    table = ReplayTable(
        schema="medloop.replay/1",
        dataset=trials.dataset.manifest,
        fingerprint=trials.dataset.fingerprint,
        metric="dice",
        factors=list(SPACE),
        outcomes=outcomes,
    )
    save_table(table, args.out)
    print(
        json.dumps(
            {"table": str(args.out), "outcomes": len(outcomes), "wall_s": round(time.monotonic() - start)}
        )
    )
    trials.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
