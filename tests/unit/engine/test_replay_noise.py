"""A replay table that records fewer seeds than a campaign asks for: an unrecorded seed is
drawn from the table's noise model (docs/replay.md), deterministically, instead of failing."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from medloop.core.ids import new_id
from medloop.core.records import Campaign
from medloop.core.specs import CampaignSpec, make_config, parse_campaign_spec
from medloop.core.store import SqlStore, open_store
from medloop.engine.base import TrialRequest
from medloop.engine.replay import ReplayTrials, load_table, save_table, synthetic_table

SPACE: dict[str, list[Any]] = {"loss": ["dice", "dicece"], "augmentation": ["none", "light"]}


def _effect(cfg: dict[str, Any]) -> float:
    return 0.05 * (cfg["loss"] == "dicece")


def _spec(table: Path) -> CampaignSpec:
    return parse_campaign_spec(
        {
            "name": "noise",
            "goal": "noise",
            "dataset": {"path": str(table.parent)},
            "baseline": {"loss": "dice", "augmentation": "none"},
            "search_space": SPACE,
            "executor": {"kind": "table", "table": str(table)},
        },
        source="test",
    )


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "t.json"
    save_table(
        synthetic_table(space=SPACE, effect=_effect, n_cases=12, seeds=(0, 1, 2), seed_sd=0.02, rng_seed=3),
        path,
    )
    return path


def _trials(db: Path, table: Path) -> ReplayTrials:
    store: SqlStore = open_store(db)
    spec = _spec(table)
    store.campaigns.add(Campaign(id="c1", name="noise", spec=spec))
    return ReplayTrials(store, spec, table=table)


def _run(trials: ReplayTrials, config: dict[str, Any], seeds: list[int]) -> list[Any]:
    requests = []
    for seed in seeds:
        spec = trials.spec_for(make_config("segmentation", config), seed)
        requests.append(TrialRequest(new_id("t"), None, "baseline", spec))
    return trials.run("c1", requests)


def test_unrecorded_seed_is_drawn_not_failed(tmp_path: Path, table: Path) -> None:
    trials = _trials(tmp_path / "a.db", table)
    config = {"loss": "dicece", "augmentation": "none"}
    done = _run(trials, config, [0, 1, 2, 1000, 1001, 1002, 20_007])
    assert [t.status for t in done] == ["succeeded"] * 7
    kinds = [t.result.efficiency["replay_seed"] for t in done]
    assert kinds == ["recorded"] * 3 + ["drawn"] * 4
    recorded = [t.result.objective for t in done[:3]]
    drawn = [t.result.objective for t in done[3:]]
    # Recorded seeds return exactly what the table holds.
    rows = [o for o in load_table(table).outcomes if o.config == config]
    assert recorded == [
        pytest.approx(statistics.fmean(o.eval.values())) for o in sorted(rows, key=lambda o: o.seed)
    ]
    # Drawn seeds differ from each other (seed noise) and stay near the config's mean.
    mean = statistics.fmean(recorded)
    assert len(set(drawn)) == len(drawn)
    assert all(abs(v - mean) < 0.2 for v in drawn)
    # Every case is shifted by the same residual: the case pattern is the config's case means
    # (a value is clipped to the range the table records).
    evals = done[3].result.evaluations["eval"]
    case_means = {c: statistics.fmean(o.eval[c] for o in rows) for c in rows[0].eval}
    everything = [v for o in load_table(table).outcomes for v in [*o.eval.values(), *o.test.values()]]
    inside = [c for c in evals.cases if min(everything) < c.metrics["dice"]["foreground"] < max(everything)]
    shifts = {round(c.metrics["dice"]["foreground"] - case_means[c.case], 9) for c in inside}
    assert len(inside) >= 6 and len(shifts) == 1


def test_drawn_outcomes_are_deterministic_and_test_split_follows(tmp_path: Path, table: Path) -> None:
    config = {"loss": "dice", "augmentation": "light"}
    first = _run(_trials(tmp_path / "a.db", table), config, [1000, 1001])
    again = _trials(tmp_path / "b.db", table)
    second = _run(again, config, [1000, 1001])
    assert [t.result.objective for t in first] == [t.result.objective for t in second]
    assert first[0].result.objective != first[1].result.objective
    test = again.evaluate_test(second[0])
    assert test is not None and len(test.cases) == 12


def test_drawn_noise_matches_the_recorded_spread(tmp_path: Path) -> None:
    """Over many drawn seeds, the run-level SD is the within-config SD of the recorded runs."""
    path = tmp_path / "wide.json"
    seeds = tuple(range(8))
    save_table(
        synthetic_table(space=SPACE, effect=_effect, n_cases=6, seeds=seeds, seed_sd=0.03, rng_seed=5), path
    )
    trials = _trials(tmp_path / "a.db", path)
    config = {"loss": "dicece", "augmentation": "light"}
    drawn = [t.result.objective for t in _run(trials, config, list(range(100, 400)))]
    rows = load_table(path).outcomes
    within = []
    for values in ({"loss": a, "augmentation": b} for a in SPACE["loss"] for b in SPACE["augmentation"]):
        within.append(
            statistics.variance(statistics.fmean(o.eval.values()) for o in rows if o.config == values)
        )
    pooled_sd = statistics.fmean(within) ** 0.5
    assert 0.6 * pooled_sd < statistics.stdev(drawn) < 1.5 * pooled_sd
    true_mean = statistics.fmean(statistics.fmean(o.eval.values()) for o in rows if o.config == config)
    assert abs(statistics.fmean(drawn) - true_mean) < 0.5 * pooled_sd


def test_unknown_config_or_single_seed_table_still_fails(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    save_table(synthetic_table(space=SPACE, effect=_effect, n_cases=4, seeds=(0,), rng_seed=1), path)
    trials = _trials(tmp_path / "a.db", path)
    done = _run(trials, {"loss": "dice", "augmentation": "none"}, [0, 1])
    assert [t.status for t in done] == ["succeeded", "failed"]
    assert "one seed per config" in (done[1].result.error or "")
    missing = _run(trials, {"loss": "dicefocal", "augmentation": "none"}, [0])
    assert missing[0].status == "failed"
    assert "no run of this config" in (missing[0].result.error or "")


def test_a_rewritten_table_is_read_again(tmp_path: Path) -> None:
    """Parses are shared between campaigns on the same file, but never outlive a change."""
    path = tmp_path / "t.json"
    save_table(synthetic_table(space=SPACE, effect=_effect, n_cases=4, seeds=(0, 1), rng_seed=1), path)
    first = _trials(tmp_path / "a.db", path)
    assert _trials(tmp_path / "b.db", path).table is first.table
    save_table(synthetic_table(space=SPACE, effect=_effect, n_cases=4, seeds=(0, 1, 2), rng_seed=2), path)
    again = _trials(tmp_path / "c.db", path)
    assert again.table is not first.table and len(again.table.outcomes) == 12
    assert again.table_hash != first.table_hash
