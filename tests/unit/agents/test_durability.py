"""Kill the orchestrator (SIGKILL) at every node boundary and in the middle of execute;
`resume` must reach the same hypotheses, claims and trial ledger as an uninterrupted run,
with no duplicate trials or claims."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.services import CampaignServices
from medloop.bootstrap import local_checkpoints
from medloop.core.store import SqlStore, open_store
from medloop.engine.replay import ReplayTrials
from tests.fakes import FakeKnowledge
from tests.unit.agents.test_replay_campaign import make_spec, table  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def _runner(ws: Path, on_event: Any = None) -> tuple[CampaignRunner, SqlStore]:
    store = open_store(ws / "m.db")
    services = CampaignServices(
        store=store,
        knowledge=FakeKnowledge(store),
        make_trials=lambda spec, _cid: ReplayTrials(store, spec, table=spec.executor.table),  # type: ignore[arg-type]
        make_planner=lambda spec: OfflinePlanner(),
        checkpoints=local_checkpoints(ws / "ck.sqlite"),
    )
    return CampaignRunner(services, on_event), store


def _spec(table_path: Path) -> Any:
    return make_spec(table_path, max_trials=40).model_copy(
        update={"budget": make_spec(table_path).budget.model_copy(update={"max_cycles": 2})}
    )


def _ledger(store: SqlStore, campaign_id: str) -> dict[str, Any]:
    trials = store.trials.list(campaign_id=campaign_id).items
    claims = store.claims.list(campaign_id=campaign_id).items
    return {
        # Seeds carry a per-campaign base (agents/seeds.py); compare what they stand for.
        "trials": sorted(
            (
                t.spec.config.model_dump_json(),
                t.spec.seed % 10_000,
                t.arm,
                t.status,
                t.result.objective if t.result else None,
            )
            for t in trials
        ),
        "hypotheses": [
            (h.cycle, [c.to_value for c in h.changes], h.verdict, h.reproduction)
            for h in store.cycles.hypotheses(campaign_id)
        ],
        "claims": sorted((c.statement, c.tier) for c in claims),
        "n_trials": len(trials),
        "n_claims": len(claims),
        "incumbent": store.campaigns.get(campaign_id).incumbent,
    }


def _crash_child(ws: Path, campaign_id: str, kind: str, index: int) -> None:
    """Runs in a forked process: run the campaign and SIGKILL itself at the index-th
    event of `kind` ('node' = just after a node returned, before its checkpoint is
    final; 'trial' = mid-execute, after some trials were stored)."""
    seen = 0

    def on_event(event: str, payload: dict[str, Any]) -> None:
        nonlocal seen
        if event == kind:
            seen += 1
            if seen == index:
                os.kill(os.getpid(), signal.SIGKILL)

    runner, _ = _runner(ws, on_event)
    runner.run(campaign_id)
    os._exit(0)


def test_kill_anywhere_then_resume_matches_uninterrupted_run(tmp_path: Path, table: Path) -> None:  # noqa: F811
    ref_ws = tmp_path / "ref"
    ref_ws.mkdir()
    events: list[tuple[str, dict[str, Any]]] = []
    runner, store = _runner(ref_ws, lambda k, p: events.append((k, p)))
    ref = runner.run(runner.create(_spec(table), owner="a").id)
    reference = _ledger(store, ref.id)
    n_nodes = sum(1 for k, _ in events if k == "node")
    n_trials = sum(1 for k, _ in events if k == "trial")
    assert n_nodes > 15 and n_trials > 10

    kill_points = [("node", i) for i in range(1, n_nodes + 1)] + [("trial", 1), ("trial", n_trials // 2)]
    ctx = mp.get_context("fork")
    for kind, index in kill_points:
        ws = tmp_path / f"{kind}{index}"
        ws.mkdir()
        runner, store = _runner(ws)
        campaign = runner.create(_spec(table), owner="a")
        child = ctx.Process(target=_crash_child, args=(ws, campaign.id, kind, index))
        child.start()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL, f"{kind} {index}: child exit {child.exitcode}"
        done = runner.resume(campaign.id)
        assert done.status == "completed", f"{kind} {index}"
        assert _ledger(store, campaign.id) == reference, f"diverged after a kill at {kind} #{index}"
