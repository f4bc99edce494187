"""Sequential certification: seeds are added in looks under O'Brien-Fleming-type alpha
spending, so looking again does not inflate false claims, and an undecided real effect
gets the seeds it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from medloop.agents.runner import CampaignRunner
from medloop.core.store import open_store
from medloop.engine.replay import save_table, synthetic_table
from medloop.evaluation import stats
from tests.unit.agents.test_replay_campaign import LRS, SPACE, make_spec, services

SEEDS = (*range(12), 1000, 1001, 1002, 2000, 2001, 2002)


def test_spending_levels_match_lan_demets_obrien_fleming() -> None:
    assert stats.sequential_levels([1.0], 0.05) == pytest.approx([0.05])
    two = stats.sequential_levels([0.5, 1.0], 0.05)
    assert two == pytest.approx([0.0056, 0.0478], abs=3e-4)  # published LD-OBF boundaries
    three = stats.sequential_levels([1 / 3, 2 / 3, 1.0], 0.05)
    assert three[0] < 0.001 < three[1] < three[2] < 0.05


def test_pocock_levels_match_lan_demets_pocock() -> None:
    """alpha ln(1 + (e - 1) t): nearly even levels, the first look the loosest."""
    assert stats.sequential_levels([1.0], 0.05, "pocock") == pytest.approx([0.05])
    two = stats.sequential_levels([0.5, 1.0], 0.05, "pocock")
    assert two == pytest.approx([0.0310, 0.0277], abs=3e-4)  # published LD-Pocock boundaries
    three = stats.sequential_levels([1 / 3, 2 / 3, 1.0], 0.05, "pocock")
    assert three[0] > three[1] > three[2] > 0.015
    assert stats.sequential_levels([0.5, 1.0], 0.05) != pytest.approx(two, abs=1e-3)


def test_an_unknown_spending_function_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown alpha spending 'haybittle'"):
        stats.sequential_levels([0.5, 1.0], 0.05, "haybittle")


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_looking_again_at_the_spent_levels_keeps_the_error_at_alpha(spending: str) -> None:
    """Null z statistics of three looks (a Brownian motion at t = 1/3, 2/3, 1): rejecting at
    any look at the spent levels stays near 5%; at 0.05 every time it does not."""
    rng = np.random.default_rng(0)
    increments = rng.normal(size=(200_000, 3)) * np.sqrt(1 / 3)
    z = np.cumsum(increments, axis=1) / np.sqrt([1 / 3, 2 / 3, 1.0])
    p = 2 * norm.sf(np.abs(z))
    levels = np.array(stats.sequential_levels([1 / 3, 2 / 3, 1.0], 0.05, spending))
    spent = float(np.mean((p < levels).any(axis=1)))
    naive = float(np.mean((p < 0.05).any(axis=1)))
    assert 0.045 < spent < 0.055
    assert naive > 0.08


def _table(tmp_path: Path, gain: float, rng_seed: int) -> Path:
    path = tmp_path / f"t{rng_seed}.json"

    def effect(cfg: dict[str, Any]) -> float:
        return gain * (cfg["loss"] == "dicece")

    space = {**SPACE, "lr": LRS}
    save_table(
        synthetic_table(space=space, effect=effect, n_cases=24, rng_seed=rng_seed, seeds=SEEDS, seed_sd=0.01),
        path,
    )
    return path


def _campaign(tmp_path: Path, table: Path, **budget: Any) -> tuple[Any, Any]:
    store = open_store(tmp_path / f"{table.stem}.db")
    runner = CampaignRunner(services(tmp_path, store))
    spec = make_spec(table, **budget)
    spec = spec.model_copy(
        update={
            "validation": spec.validation.model_copy(update={"stages": 3, "bootstrap_resamples": 1000}),
        }
    )
    done = runner.run(runner.create(spec, owner="a").id)
    return done, store


def test_no_false_reproduced_claims_on_a_null_table(tmp_path: Path) -> None:
    """Six whole campaigns (every look, every cycle) on tables where nothing matters."""
    reproduced = 0
    looks = 0
    for rng_seed in range(6):
        table = _table(tmp_path, 0.0, rng_seed)
        done, store = _campaign(tmp_path, table, max_trials=90, max_cycles=100, patience=100)
        reproduced += len(store.claims.list(campaign_id=done.id, tiers=["reproduced"]).items)
        looks += sum(h.analysis.get("looks", {}).get("look", 1) > 1 for h in store.cycles.hypotheses(done.id))
        assert "budget" in done.summary["stop_reason"]
    assert reproduced == 0
    assert looks > 0  # undecided changes did get more seeds


def test_power_at_a_planted_effect(tmp_path: Path) -> None:
    found = 0
    for rng_seed in range(3):
        done, store = _campaign(
            tmp_path, _table(tmp_path, 0.01, 10 + rng_seed), max_trials=90, max_cycles=100
        )
        found += done.incumbent["loss"] == "dicece" and bool(
            store.claims.list(campaign_id=done.id, tiers=["reproduced"]).items
        )
    assert found >= 2
