"""A campaign's cycles always make progress, and the graph's step limit follows its cycles.

Traced from hpobench_credit_g (bench/research_efficiency.py): its weight_decay choices
include `1`, an int on a float field. The run's config holds 1.0, the planner's candidate
1, so the tested config was not recognised as tested: the same hypothesis came back every
cycle, its trials were all reused (no run, no budget spent), and with max_cycles 10,000
the graph hit LangGraph's fixed recursion limit (GraphRecursionError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medloop.agents.graph import STEPS_PER_CYCLE, recursion_limit
from medloop.agents.runner import CampaignRunner
from medloop.agents.space import config_key
from medloop.core.specs import parse_campaign_spec
from medloop.core.store import open_store
from medloop.engine.replay import save_table, synthetic_table
from tests.unit.agents.test_replay_campaign import services

SPACE: dict[str, list[Any]] = {"loss": ["dice", "dicece"], "weight_decay": [0.001, 1]}


def test_an_int_choice_on_a_float_field_is_recognised_as_tested(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    save_table(synthetic_table(space=SPACE, effect=lambda c: 0.0, n_cases=12, rng_seed=1), path)
    spec = parse_campaign_spec(
        {
            "name": "intfloat",
            "goal": "Raise Dice",
            "dataset": {"path": str(tmp_path)},
            "baseline": {"loss": "dice", "weight_decay": 0.001},
            "search_space": SPACE,
            "validation": {"seeds_per_arm": 3, "reproduction_seeds": 3, "min_effect": 0.005},
            "budget": {"max_trials": 60, "max_cycles": 40, "patience": 40},
            "executor": {"kind": "table", "table": str(path)},
            "planner": {"hypotheses_per_cycle": 1},
        },
        source="test",
    )
    store = open_store(tmp_path / "m.db")
    runner = CampaignRunner(services(tmp_path, store))
    done = runner.run(runner.create(spec, owner="a").id)
    cycles = store.cycles.list(done.id)
    # Three configs besides the baseline: a few cycles test them all; before, the same
    # hypothesis came back every cycle (all its trials reused) until max_cycles.
    assert len(cycles) < 10, done.summary.get("stop_reason")
    assert "max_cycles" not in str(done.summary.get("stop_reason"))
    assert config_key({"weight_decay": 1}) == config_key({"weight_decay": 1.0})


def test_recursion_limit_covers_every_cycle_the_budget_allows() -> None:
    # Before: a fixed 10,000 steps, fewer than 10,000 cycles need.
    assert recursion_limit(10_000) >= STEPS_PER_CYCLE * 10_000
    assert recursion_limit(3) >= STEPS_PER_CYCLE * 3
