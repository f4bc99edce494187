"""A campaign plans from its seed and what it asks for, never from how its files are
spelled; and a later cycle sees the claims its campaign recorded earlier."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from medloop.agents.node_base import NodeBase
from medloop.agents.planners.offline import OfflinePlanner
from medloop.agents.runner import CampaignRunner
from medloop.agents.seeds import planning_seed
from medloop.agents.space import config_key, grid
from medloop.core.specs import FloatRange, make_config
from medloop.core.store import open_store
from medloop.engine.replay import save_table, synthetic_table
from tests.unit.agents.test_replay_campaign import SPACE, make_spec, services
from tests.unit.agents.test_replay_campaign import table as table


def _plan(tmp_path: Path, table_path: Path, name: str) -> list[list[tuple[str, Any]]]:
    ws = tmp_path / name
    ws.mkdir()
    store = open_store(ws / "m.db")
    runner = CampaignRunner(services(ws, store))
    done = runner.run(runner.create(make_spec(table_path), owner="a").id)
    plan: dict[int, list[tuple[str, Any]]] = {}
    for h in store.cycles.hypotheses(done.id):
        plan.setdefault(h.cycle, []).extend((c.factor, c.to_value) for c in h.changes)
    return [sorted(plan[c], key=str) for c in sorted(plan)]


def test_absolute_and_relative_paths_plan_the_same_campaign(
    tmp_path: Path, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = _plan(tmp_path, table.resolve(), "abs")
    monkeypatch.chdir(table.parent.parent)
    relative = Path(os.path.relpath(table, table.parent.parent))
    assert not relative.is_absolute()
    assert _plan(tmp_path, relative, "rel") == absolute
    assert len(absolute) >= 2  # more than one cycle was planned, so tie-breaks mattered


def test_planning_seed_ignores_paths_but_not_the_seed(table: Path, tmp_path: Path) -> None:
    spec = make_spec(table.resolve())
    moved = spec.model_copy(
        update={"dataset": spec.dataset.model_copy(update={"path": Path("elsewhere/data")})}
    )
    assert planning_seed(spec, 0, "x") == planning_seed(moved, 0, "x")
    assert planning_seed(spec, 0, "x") != planning_seed(spec, 1, "x")


def test_later_cycles_see_earlier_cycles_claims(tmp_path: Path, table: Path) -> None:
    store = open_store(tmp_path / "m.db")
    events: list[tuple[str, dict[str, Any]]] = []
    runner = CampaignRunner(services(tmp_path, store), on_event=lambda k, p: events.append((k, p)))
    done = runner.run(runner.create(make_spec(table), owner="a").id)
    recorded = [c for k, p in events if k == "claims" and p["cycle"] == 1 for c in p["ids"]]
    assert recorded, "cycle 1 recorded no claim"
    cycle2 = [p for k, p in events if k == "retrieved" and p["cycle"] == 2]
    assert cycle2, "the campaign stopped after one cycle"
    shown = {c["id"] for c in cycle2[0]["claims"] if c["role"] == "campaign"}
    assert set(recorded) <= shown
    assert set(recorded) <= set(store.cycles.list(done.id)[1]["retrieved"])


def test_every_supported_change_is_reproduced(tmp_path: Path) -> None:
    """Every factor helps, so the first cycle supports both of its changes: both are
    reproduced (before, only the best one was)."""
    path = tmp_path / "all_help.json"
    lrs = grid(FloatRange(type="float", low=0.0003, high=0.003, log=True))

    def effect(cfg: dict[str, Any]) -> float:
        gain = 0.04 * (cfg["loss"] == "dicece") + 0.04 * (cfg["augmentation"] == "light")
        return gain + 0.04 * math.log10(cfg["lr"] / 0.0003)

    save_table(synthetic_table(space={**SPACE, "lr": lrs}, effect=effect, n_cases=24, rng_seed=5), path)
    store = open_store(tmp_path / "m.db")
    svc = services(tmp_path, store)
    svc.make_planner = lambda spec: OfflinePlanner(model_based=False)  # two one-factor moves
    runner = CampaignRunner(svc)
    done = runner.run(runner.create(make_spec(path, max_cycles=1), owner="a").id)
    first = store.cycles.hypotheses(done.id, 1)
    assert len(first) == 2 and all(h.verdict == "supported" for h in first)
    assert all(h.reproduction == "agreed" for h in first)


def test_campaign_uses_its_whole_trial_budget(tmp_path: Path, table: Path) -> None:
    """With cycles and patience out of the way, only the trial budget ends the campaign;
    the planner never runs out of moves (the space has 28 configs, the budget pays ~15)."""
    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(services(tmp_path, store))
    spec = make_spec(table, max_trials=60, max_cycles=100, patience=100)
    done = runner.run(runner.create(spec, owner="a").id)
    used = len(store.trials.list(campaign_id=done.id, limit=1000).items)
    assert "budget" in done.summary["stop_reason"], done.summary["stop_reason"]
    assert 60 - 2 * spec.validation.seeds_per_arm <= used <= 60
    screened = done.summary["best_screened"]
    # The best config by the mean of its explore runs before the final test-split runs, the
    # incumbent among them (its certified value also counts its reproduction runs, so that
    # one may be higher).
    explore = [t for t in store.trials.list(campaign_id=done.id).items if t.arm != "final"]
    means = {config_key(c): v for c, v in NodeBase.measured(explore)}
    assert screened["objective"] == pytest.approx(max(v for v in means.values() if v is not None))
    assert (
        screened["objective"]
        >= means[config_key(make_config(spec.task, done.incumbent).model_dump(mode="json"))] - 1e-9
    )
    assert set(screened["config"]) == set(spec.search_space)


def test_patience_counts_trials_without_a_better_screened_value(tmp_path: Path, table: Path) -> None:
    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(services(tmp_path, store))
    spec = make_spec(table, max_trials=200, max_cycles=100, patience=1, patience_trials=30)
    done = runner.run(runner.create(spec, owner="a").id)
    reason = done.summary["stop_reason"]
    assert reason.startswith("converged: no better screened value in"), reason
    cycles = store.cycles.list(done.id)
    assert len(cycles) > 1  # `patience: 1` (cycles) was replaced by the trial rule


def test_the_console_renders_every_event_of_a_sequential_campaign(tmp_path: Path, table: Path) -> None:
    """The CLI's progress printer takes every event a campaign emits (new ones included:
    best screened, certification looks), so `medloop campaign run` cannot trip on them."""
    from io import StringIO

    from rich.console import Console

    from medloop.cli.progress import CampaignConsole

    out = StringIO()
    console = CampaignConsole(Console(file=out, width=200))
    kinds: set[str] = set()

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        kinds.add(kind)
        console(kind, payload)

    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(services(tmp_path, store), on_event=on_event)
    spec = make_spec(table, max_trials=60)
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"stages": 3})})
    runner.run(runner.create(spec, owner="a").id)
    assert "cycle_end" in kinds
    assert "best screened" in out.getvalue()
