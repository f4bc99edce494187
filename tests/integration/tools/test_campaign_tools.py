"""campaign_start launches `medloop campaign resume` as its own process; campaign_status
follows it through the store until it completes (a replay-table campaign: real graph,
statistics and knowledge, no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medloop import bootstrap
from medloop.core.errors import BudgetExhausted, SpecError
from medloop.core.settings import Settings
from medloop.tools.catalog import default_registry
from medloop.tools.context import Caller
from tests.unit.tools.helpers import replay_table

pytestmark = pytest.mark.slow


def spec(table: Path, **budget: Any) -> dict[str, Any]:
    return {
        "name": "loss study via tools",
        "goal": "Find out whether Dice+CE beats Dice",
        "dataset": {"path": str(table.parent)},
        "baseline": {"loss": "dice", "lr": 0.001, "augmentation": "none"},
        "search_space": {"loss": ["dice", "dicece"]},
        "validation": {"seeds_per_arm": 3, "reproduction_seeds": 3, "min_effect": 0.005},
        "budget": {"max_cycles": 2, "patience": 1, **budget},
        "executor": {"kind": "table", "table": str(table)},
    }


def test_a_campaign_started_by_a_tool_runs_in_its_own_process(
    server_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDLOOP_TOOLS_MAX_CAMPAIGNS", "1")
    table = replay_table(tmp_path / "replay")
    ctx = bootstrap.tool_context(Settings(), Caller("planner-bot"))
    registry = default_registry()
    with pytest.raises(SpecError, match=r"budget\.max_trials: required"):
        registry.call("campaign_start", ctx, {"spec": spec(table)})
    started = registry.call("campaign_start", ctx, {"spec": spec(table, max_trials=30)})
    cid = started.campaign_id  # type: ignore[attr-defined]
    assert started.pid and Path(started.log).name == f"{cid}.log"  # type: ignore[attr-defined]
    assert started.budget.trials_used == 30 and started.budget.campaigns_used == 1  # type: ignore[attr-defined]
    with pytest.raises(BudgetExhausted, match="started 1 of 1 campaigns"):
        registry.call("campaign_start", ctx, {"spec": spec(table, max_trials=30)})

    progress: list[tuple[float, float | None]] = []
    watcher = ctx.with_progress(lambda done, total, msg: progress.append((done, total)))
    for _ in range(10):
        status = registry.call("campaign_status", watcher, {"campaign_id": cid, "wait_s": 60})
        if status.status in ("completed", "failed", "stopped") or status.process_running is False:  # type: ignore[attr-defined]
            break
    assert status.status == "completed", Path(started.log).read_text()[-2000:]  # type: ignore[attr-defined]
    assert status.owner == "planner-bot" and status.cycles_done >= 1  # type: ignore[attr-defined]
    loss = [h for h in status.hypotheses if "loss" in h.statement or h.verdict == "supported"]  # type: ignore[attr-defined]
    assert any(h.verdict == "supported" and h.claim_id for h in loss), status.hypotheses  # type: ignore[attr-defined]
    assert status.test is not None and "effect" in status.test  # type: ignore[attr-defined]
    assert progress and all(total == 2 for _, total in progress)
    # the reservation is settled to the trials the campaign actually ran
    ran = sum(status.trials.values())  # type: ignore[attr-defined]
    assert ctx.ledger.usage("planner-bot")["trials"] == ran < 30
    claim = registry.call("get_claim", ctx, {"claim_id": next(h.claim_id for h in loss if h.claim_id)})
    assert claim.claim.campaign_id == cid  # type: ignore[attr-defined]
