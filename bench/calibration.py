"""Calibration of the validation policy on simulated campaigns (replay tables).

Null campaigns: every config has the same true mean (no effect), with realistic case
and seed variance. Family-wise false positives are counted per cycle (the family Holm
corrects over) and per campaign (any `supported` claim; any claim that survived
reproduction). Planted campaigns: one change carries a true effect of the pre-registered
minimum size; power is the share of campaigns that support it (and reproduce it).

    python bench/calibration.py --null 1000 --planted 300
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.specs import CampaignSpec, parse_campaign_spec
from medloop.core.store import SqlStore, open_store
from medloop.engine.replay import ReplayTrials, save_table, synthetic_table

SPACE: dict[str, list[Any]] = {
    "loss": ["dice", "dicece"],
    "augmentation": ["none", "light"],
    "optimizer": ["adamw", "sgd"],
}
MIN_EFFECT = 0.02


class _NoKnowledge:
    """Calibration runs are independent: no claim may leak from one campaign to the next."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def add_claim(self, claim: Any, evidence: Any, *, actor: str) -> Any:
        self.store.claims.put([(claim, evidence)])
        return self.store.claims.get(claim.id)

    def add_evidence(self, claim_id: str, evidence: Any, *, actor: str) -> Any:
        self.store.evidence.add(evidence)
        return self.store.claims.get(claim_id)

    def retrieve(self, query: Any) -> list[Any]:
        return []

    def transition(self, claim_id: str, tier: Any, *, actor: str, role: str, reason: str) -> Any:
        return self.store.claims.set_tier(claim_id, tier)

    def reconcile(self) -> dict[str, int]:
        return {}


def spec_for(table: Path) -> CampaignSpec:
    return parse_campaign_spec(
        {
            "name": "calibration",
            "goal": "calibration",
            "dataset": {"path": str(table.parent)},
            "baseline": {"loss": "dice", "augmentation": "none", "optimizer": "adamw"},
            "search_space": SPACE,
            "validation": {
                "seeds_per_arm": 3,
                "reproduction_seeds": 3,
                "min_effect": MIN_EFFECT,
                "bootstrap_resamples": 2000,
            },
            "budget": {"max_cycles": 2, "patience": 2},
            "executor": {"kind": "table", "table": str(table)},
            "planner": {"hypotheses_per_cycle": 3},
        },
        source="calibration",
    )


def one(args: tuple[str, int]) -> dict[str, Any]:
    kind, seed = args
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)

        def effect(cfg: dict[str, Any]) -> float:
            return MIN_EFFECT if kind == "planted" and cfg["loss"] == "dicece" else 0.0

        table = ws / "table.json"
        save_table(
            synthetic_table(
                space=SPACE, effect=effect, n_cases=24, rng_seed=seed, seed_sd=0.005, noise_sd=0.01
            ),
            table,
        )
        store = open_store(ws / "m.db")
        services = CampaignServices(
            store=store,
            knowledge=_NoKnowledge(store),  # type: ignore[arg-type]
            make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=table),
            make_planner=lambda spec: OfflinePlanner(seed=seed, model_based=False),
            checkpoints=local_checkpoints(ws / "ck.sqlite"),
        )
        runner = CampaignRunner(services)
        campaign = runner.run(runner.create(spec_for(table), owner="calibration").id)
        hyps = store.cycles.hypotheses(campaign.id)
        cycles: dict[int, bool] = {}
        for h in hyps:
            cycles[h.cycle] = cycles.get(h.cycle, False) or h.verdict == "supported"
        planted = [h for h in hyps if h.changes[0].factor == "loss" and h.changes[0].to_value == "dicece"]
        return {
            "kind": kind,
            "cycles": len(cycles),
            "cycle_fp": sum(cycles.values()),
            "any_supported": any(h.verdict == "supported" for h in hyps),
            "any_reproduced": any(h.reproduction == "agreed" for h in hyps),
            "planted_supported": any(h.verdict == "supported" for h in planted),
            "planted_reproduced": any(h.reproduction == "agreed" for h in planted),
            "other_supported": any(h.verdict == "supported" for h in hyps if h not in planted),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null", type=int, default=1000)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
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
        "planted_campaigns": len(planted),
        "planted_effect": MIN_EFFECT,
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
