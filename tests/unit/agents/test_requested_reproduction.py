"""A reviewer's reproduction request, end to end through the CLI on a replay table: the
claim's arms re-run on fresh seeds, evidence and tier follow, the request closes, and
running it again repeats nothing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medloop.agents.seeds import REQUESTED_OFFSET, SEED_STRIDE
from medloop.agents.space import grid
from medloop.bootstrap import local_checkpoints
from medloop.core.accounts import ReproductionRequest
from medloop.core.ids import new_id
from medloop.core.specs import FloatRange
from medloop.core.store import open_store
from medloop.engine.replay import save_table, synthetic_table

CAMPAIGN = """\
name: replay
goal: Raise Dice
dataset: {path: DIR}
baseline: {loss: dice, augmentation: none, lr: 0.0003}
search_space:
  loss: [dice, dicece]
  augmentation: [none, light]
  lr: LRS
validation: {seeds_per_arm: 3, reproduction_seeds: 3, min_effect: 0.005}
budget: {max_cycles: 2, patience: 2}
executor: {kind: table, table: TABLE}
planner: {hypotheses_per_cycle: 2}
"""
SEEDS = (0, 1, 2, 1000, 1001, 1002, 2000, 2001, 2002, 3000, 3001, 3002, 3020, 3021, 3022)


def effect(cfg: dict[str, Any]) -> float:
    return 0.04 * (cfg["loss"] == "dicece") + 0.03 - 0.03 * abs(math.log10(cfg["lr"] / 0.001))


def medloop(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEDLOOP_WORKSPACE": str(ws / ".medloop"),
        "MEDLOOP_EMBEDDER": "hash",
        "MEDLOOP_VECTOR_INDEX": "memory",
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "medloop", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"medloop {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return out


def test_requested_reproduction_runs_once_and_moves_evidence_and_tier(tmp_path: Path) -> None:
    lrs = grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))
    space = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": lrs}
    table = tmp_path / "table.json"
    save_table(synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3, seeds=SEEDS), table)
    (tmp_path / "c.yaml").write_text(
        CAMPAIGN.replace("DIR", str(tmp_path)).replace("TABLE", str(table)).replace("LRS", str(lrs))
    )
    medloop(tmp_path, "campaign", "run", "c.yaml")

    store = open_store(tmp_path / ".medloop" / "medloop.db")
    claims = [c for c in store.claims.list(limit=100) if c.tier in ("supported", "reproduced")]
    assert claims, "the planted effects give at least one supported claim"
    target = claims[0]
    before_seeds = {t.spec.seed for t in store.trials.list(campaign_id=target.campaign_id)}
    request = ReproductionRequest(
        id=new_id("rrq"), claim_id=target.id, actor="rita", rationale="check on fresh seeds"
    )
    store.reviews.add(request)
    store.close()

    listed = json.loads(medloop(tmp_path, "claims", "requests", "--json").stdout)
    assert [r["id"] for r in listed] == [request.id]

    [result] = json.loads(medloop(tmp_path, "claims", "reproduce", "--json").stdout)
    assert result["request_id"] == request.id and result["claim_id"] == target.id
    # The planted effect is 0.04 against seed noise of 0.01: the reproduction agrees.
    assert result["outcome"] == "agreed"
    assert result["tier_before"] == target.tier
    assert result["tier_after"] == "reproduced"
    # Fresh seeds, in the first requested block, never used by the campaign before.
    assert [s % SEED_STRIDE for s in result["seeds"]] == [REQUESTED_OFFSET + i for i in range(3)]
    assert not set(result["seeds"]) & before_seeds

    store = open_store(tmp_path / ".medloop" / "medloop.db")
    evidence = [e for e in store.evidence.list(target.id) if e.detail.get("request") == request.id]
    trials = [e for e in evidence if e.kind == "trial"]
    stat = [e for e in evidence if e.kind == "statistic"]
    assert len(trials) == 6 and {e.detail["arm"] for e in trials} == {"control", "treatment"}
    assert len(stat) == 1 and stat[0].ref_id == request.id
    assert abs(stat[0].detail["estimate"] - result["estimate"]) < 1e-12
    for e in trials:
        trial = store.trials.get(e.ref_id)
        assert trial.status == "succeeded" and trial.spec.seed in result["seeds"]
    assert store.reviews.get(request.id).status == "done"
    runs = [a for a in store.audit.list(object_id=target.id) if a.action == "claim.reproduction_run"]
    assert len(runs) == 1 and runs[0].detail["outcome"] == "agreed"
    n_trials = len(store.trials.list(campaign_id=target.campaign_id))
    store.close()

    # Nothing open any more; the closed request cannot run twice.
    again = medloop(tmp_path, "claims", "reproduce")
    assert "no open reproduction requests" in again.stdout
    twice = medloop(tmp_path, "claims", "reproduce", request.id, check=False)
    assert twice.returncode != 0 and "is done, not open" in twice.stderr + twice.stdout
    assert "Traceback" not in twice.stderr
    store = open_store(tmp_path / ".medloop" / "medloop.db")
    assert len(store.trials.list(campaign_id=target.campaign_id)) == n_trials
    assert len([e for e in store.evidence.list(target.id) if e.detail.get("request") == request.id]) == 7
    store.close()


def test_running_campaign_runs_requests_between_cycles(tmp_path: Path) -> None:
    from medloop.agents.planners.offline import OfflinePlanner
    from medloop.agents.runner import CampaignRunner
    from medloop.agents.services import CampaignServices
    from medloop.core.settings import Settings
    from medloop.engine.replay import ReplayTrials
    from medloop.knowledge.factory import make_knowledge_base
    from tests.unit.agents.test_replay_campaign import make_spec

    lrs = grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))
    space = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"], "lr": lrs}
    table = tmp_path / "table.json"
    save_table(synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=3, seeds=SEEDS), table)
    store = open_store(tmp_path / "m.db")
    settings = Settings(workspace=tmp_path, embedder="hash", vector_index="memory")
    events: list[tuple[str, dict[str, Any]]] = []
    services = CampaignServices(
        store=store,
        knowledge=make_knowledge_base(settings, store),
        make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=spec.executor.table),  # type: ignore[arg-type]
        make_planner=lambda spec: OfflinePlanner(),
        checkpoints=local_checkpoints(tmp_path / "ck.sqlite"),
    )
    runner = CampaignRunner(services, on_event=lambda k, p: events.append((k, p)))
    spec = make_spec(table)
    spec = spec.model_copy(
        update={"validation": spec.validation.model_copy(update={"human_review": True, "reproduce": "best"})}
    )
    campaign = runner.run(runner.create(spec, owner="alice").id)
    pending = runner.pending_interrupt(campaign.id)
    assert campaign.status == "paused" and pending is not None
    # Every supported change is reproduced; the largest is the one that moves the incumbent.
    claim_id = max(
        (c for c in pending["claims"] if store.claims.get(c).tier == "reproduced"),
        key=lambda c: store.claims.get(c).effect.estimate,  # type: ignore[union-attr]
    )

    # While the campaign waits, a reviewer asks for another reproduction of the claim.
    request = ReproductionRequest(id=new_id("rrq"), claim_id=claim_id, actor="rita", rationale="fresh seeds")
    store.reviews.add(request)
    decision = {"action": "validate", "reviewer": "bob", "reason": "checked the per-case table"}
    runner.review(campaign.id, {claim_id: decision})

    ran = [p for k, p in events if k == "reproduction_request" and p["request"] == request.id]
    assert len(ran) == 1 and ran[0]["outcome"].startswith("agreed")
    assert store.reviews.get(request.id).status == "done"
    # A validated claim gains the evidence; its tier stays a reviewer's decision.
    assert store.claims.get(claim_id).tier == "validated"
    stat = [e for e in store.evidence.list(claim_id) if e.kind == "statistic" and e.ref_id == request.id]
    assert len(stat) == 1 and stat[0].detail["outcome"] == "agreed"
    requested = [
        t
        for t in store.trials.list(campaign_id=campaign.id, limit=10_000).items
        if t.spec.seed % SEED_STRIDE >= REQUESTED_OFFSET
    ]
    assert len(requested) == 6 and all(t.status == "succeeded" for t in requested)
