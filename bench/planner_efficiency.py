"""Research efficiency: how many trials until the recommended config is within 0.5% of the
best in a table of real trial outcomes, for medloop's offline planner, random search and
Optuna TPE (20 seeds each), plus a second campaign on a related dataset with and without
the first campaign's knowledge.

The tables come from bench/build_replay_table.py (a grid of real CPU trainings on phantom
datasets). Every method evaluates a config with the same seeds (0, 1, 2); medloop also
pays for its controls and for fresh-seed reproductions. A method's recommendation is the
config it would hand to a user: medloop's incumbent, the best observed mean for random
search and TPE. Its quality is the config's true mean in the table (all seeds and cases).

    python bench/planner_efficiency.py --table bench/data/phantom_a.json \
        --related bench/data/phantom_b.json --seeds 20
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.settings import Settings
from medloop.core.specs import CampaignSpec, parse_campaign_spec
from medloop.core.store import SqlStore, open_store
from medloop.engine.replay import ReplayTable, ReplayTrials, config_signature, load_table
from medloop.knowledge.base import KnowledgeBase
from medloop.knowledge.factory import make_knowledge_base

SEEDS = (0, 1, 2)
BUDGETS = (15, 30, 60, 90)
MAX_TRIALS = 150
STAGES = [1]  # validation.stages of medloop's campaigns (--stages)


def true_values(table: ReplayTable) -> dict[tuple[Any, ...], float]:
    sums: dict[tuple[Any, ...], list[float]] = {}
    for o in table.outcomes:
        sums.setdefault(config_signature(o.config, table.factors), []).extend(o.eval.values())
    return {k: sum(v) / len(v) for k, v in sums.items()}


def observed(table: ReplayTable, sig: tuple[Any, ...]) -> float:
    vals = [
        v
        for o in table.outcomes
        if o.seed in SEEDS and config_signature(o.config, table.factors) == sig
        for v in o.eval.values()
    ]
    return sum(vals) / len(vals)


LOOSE = 0.98  # a second, looser target: within 2% of the best


def curve_stats(curve: list[tuple[int, float]], target: float) -> tuple[int | None, dict[Any, Any]]:
    """(trials to reach target, quality at each budget) from (trials used, quality) steps;
    `at["loose"]` holds the trials to reach the looser target (within 2%)."""
    hit = next((n for n, q in curve if q >= target), None)
    at: dict[Any, Any] = {"loose": next((n for n, q in curve if q >= target / 0.995 * LOOSE), None)}
    for b in BUDGETS:
        qs = [q for n, q in curve if n <= b]
        at[b] = qs[-1] if qs else curve[0][1]
    return hit, at


def search_baseline(
    table: ReplayTable, truth: dict[tuple[Any, ...], float], seed: int, kind: str, start: tuple[Any, ...]
) -> list[tuple[int, float]]:
    """Random search or TPE over the table's grid; each config costs len(SEEDS) trials."""
    grid = sorted(truth)
    rng = random.Random(seed)
    best_sig, best_obs = start, observed(table, start)
    curve = [(len(SEEDS), truth[start])]
    seen = {start}
    if kind == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        choices = {f: sorted({s[i] for s in grid}, key=str) for i, f in enumerate(table.factors)}
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.enqueue_trial(dict(zip(table.factors, start, strict=True)))
    while len(seen) < len(grid) and curve[-1][0] < MAX_TRIALS:
        if kind == "random":
            sig = rng.choice([g for g in grid if g not in seen])
        else:
            trial = study.ask(
                {f: optuna.distributions.CategoricalDistribution(c) for f, c in choices.items()}
            )
            sig = tuple(trial.params[f] for f in table.factors)
            if sig == start and len(seen) == 1:
                study.tell(trial, best_obs)
                continue
        value = observed(table, sig)
        if kind == "tpe":
            study.tell(trial, value)
            if sig in seen:  # TPE may resample a config; a repeat costs nothing new
                continue
        seen.add(sig)
        if value > best_obs:
            best_sig, best_obs = sig, value
        curve.append((curve[-1][0] + len(SEEDS), truth[best_sig]))
    return curve


def spec_for(table_path: Path, table: ReplayTable, baseline: dict[str, Any], name: str) -> CampaignSpec:
    lrs = sorted({o.config["lr"] for o in table.outcomes})
    return parse_campaign_spec(
        {
            "name": name,
            "goal": "Raise mean Dice",
            "dataset": {"path": str(table_path.parent)},
            "baseline": {
                "model": "unet",
                "base_features": 16,
                "iterations": 150,
                "batch_size": 8,
                **baseline,
            },
            "search_space": {
                "loss": ["dice", "dicece"],
                "augmentation": ["none", "light"],
                # The table is a grid of recorded runs: its lr values are the choices (a float
                # range would propose learning rates the table never ran).
                "lr": lrs,
            },
            "validation": {
                "seeds_per_arm": 3,
                "reproduction_seeds": 3,
                "min_effect": 0.005,
                "bootstrap_resamples": 2000,
                "stages": STAGES[0],
            },
            # Only the trial budget ends a campaign: no cycle cap, no cycle patience.
            "budget": {"max_trials": MAX_TRIALS, "max_cycles": 1000, "patience": 1000},
            "executor": {"kind": "table", "table": str(table_path)},
            "planner": {"hypotheses_per_cycle": 2},
        },
        source=name,
    )


def medloop_run(
    table_path: Path,
    table: ReplayTable,
    truth: dict[tuple[Any, ...], float],
    seed: int,
    baseline: dict[str, Any],
    ws: Path,
    knowledge: KnowledgeBase | None = None,
    store: SqlStore | None = None,
) -> list[tuple[int, float]]:
    store = store or open_store(ws / "m.db")
    kb = knowledge or make_knowledge_base(
        Settings(workspace=ws, embedder="hash", vector_index="memory"), store
    )
    trials_seen: list[int] = [0]

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        if kind == "trial":
            trials_seen[0] += 1

    curve: list[tuple[int, float]] = []
    services = CampaignServices(
        store=store,
        knowledge=kb,
        make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=table_path),
        make_planner=lambda spec: OfflinePlanner(seed=seed),
        checkpoints=local_checkpoints(ws / f"ck-{seed}.sqlite"),
    )

    def track(kind: str, payload: dict[str, Any]) -> None:
        on_event(kind, payload)
        if kind in ("cycle_end", "trial"):
            campaign = store.campaigns.get(cid[0])
            curve.append((trials_seen[0], truth[config_signature(campaign.incumbent, table.factors)]))

    runner = CampaignRunner(services, on_event=track)
    cid = [runner.create(spec_for(table_path, table, baseline, f"bench-{seed}"), owner="bench").id]
    start = truth[config_signature({**runner.s.store.campaigns.get(cid[0]).incumbent}, table.factors)]
    curve.insert(0, (0, start))
    runner.run(cid[0])
    return curve


def summarise(name: str, runs: list[tuple[int | None, dict[Any, Any]]], best: float) -> dict[str, Any]:
    """Runs that never reach the target count as 2 x MAX_TRIALS (a censored value)."""
    hits = [h if h is not None else MAX_TRIALS * 2 for h, _ in runs]
    loose = [at["loose"] if at["loose"] is not None else MAX_TRIALS * 2 for _, at in runs]
    return {
        "method": name,
        "median_trials_to_target": statistics.median(hits),
        "median_trials_to_2pct": statistics.median(loose),
        "reached_target": sum(h is not None for h, _ in runs),
        "runs": len(runs),
        **{f"regret_at_{b}": round(best - statistics.median(at[b] for _, at in runs), 4) for b in BUDGETS},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, required=True)
    ap.add_argument("--related", type=Path)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--stages", type=int, default=1, help="looks of medloop's sequential test")
    args = ap.parse_args()
    STAGES[0] = args.stages
    table = load_table(args.table)
    truth = true_values(table)
    best = max(truth.values())
    target = 0.995 * best
    baseline = {"loss": "dice", "augmentation": "none", "lr": min(o.config["lr"] for o in table.outcomes)}
    start = config_signature(baseline, table.factors)
    results: dict[str, list[tuple[int | None, dict[Any, Any]]]] = {"medloop": [], "random": [], "tpe": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            ws = Path(tmp) / f"a{seed}"
            ws.mkdir()
            results["medloop"].append(
                curve_stats(medloop_run(args.table, table, truth, seed, baseline, ws), target)
            )
            for kind in ("random", "tpe"):
                results[kind].append(curve_stats(search_baseline(table, truth, seed, kind, start), target))
        report: dict[str, Any] = {
            "table": str(args.table),
            "configs": len(truth),
            "best": round(best, 4),
            "target": round(target, 4),
            "start": round(truth[start], 4),
            "methods": [summarise(k, v, best) for k, v in results.items()],
        }
        med = report["methods"][0]["median_trials_to_target"]
        report["ratio_vs_random"] = round(med / report["methods"][1]["median_trials_to_target"], 3)
        report["ratio_vs_tpe"] = round(med / report["methods"][2]["median_trials_to_target"], 3)
        loose = report["methods"][0]["median_trials_to_2pct"]
        report["ratio_vs_random_2pct"] = round(loose / report["methods"][1]["median_trials_to_2pct"], 3)
        report["ratio_vs_tpe_2pct"] = round(loose / report["methods"][2]["median_trials_to_2pct"], 3)
        if args.related:
            rel = load_table(args.related)
            rtruth = true_values(rel)
            rtarget = 0.995 * max(rtruth.values())
            cold, warm = [], []
            for seed in range(args.seeds):
                ws = Path(tmp) / f"b{seed}"
                ws.mkdir()
                cold.append(
                    curve_stats(medloop_run(args.related, rel, rtruth, seed, baseline, ws / "cold"), rtarget)
                )
                # warm: the same store and knowledge base first ran a campaign on the first table
                (ws / "warm").mkdir()
                store = open_store(ws / "warm" / "m.db")
                kb = make_knowledge_base(
                    Settings(workspace=ws / "warm", embedder="hash", vector_index="memory"), store
                )
                medloop_run(args.table, table, truth, seed, baseline, ws / "warm", kb, store)
                warm.append(
                    curve_stats(
                        medloop_run(args.related, rel, rtruth, seed, baseline, ws / "warm", kb, store),
                        rtarget,
                    )
                )
            c = summarise("medloop cold", cold, max(rtruth.values()))
            w = summarise("medloop with prior knowledge", warm, max(rtruth.values()))
            report["transfer"] = {
                "cold": c,
                "warm": w,
                "ratio_warm_vs_cold": round(w["median_trials_to_target"] / c["median_trials_to_target"], 3),
            }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
