"""The campaign's seed-variance pool, as analyze_hypotheses builds it (design note 8)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from medloop.core.specs import Objective, ValidationPolicy
from medloop.engine import analysis
from medloop.evaluation import stats

STABLE = [(0.003, -0.003, 0.0), (0.0, 0.002, -0.002), (-0.0025, 0.0, 0.0025), (0.002, -0.001, -0.001)]
UNSTABLE = [(0.04, -0.04, 0.0), (-0.03, 0.045, -0.015)]


def _arms(diffs: tuple[float, ...]) -> tuple[analysis.ArmData, analysis.ArmData]:
    """A scalar objective (one value per run): the run-level paired test alone decides."""

    def arm(values: list[float]) -> analysis.ArmData:
        per_seed = [{"score": v} for v in values]
        return analysis.ArmData(
            trial_ids=["r0", "r1", "r2"],
            usable=["r0", "r1", "r2"],
            seeds=[0, 1, 2],
            per_case=stats.seed_mean(per_seed),
            per_seed=per_seed,
            objective=sum(values) / len(values),
        )

    control = [0.70, 0.71, 0.69]
    return arm(control), arm([c + d for c, d in zip(control, diffs, strict=True)])


@pytest.fixture
def compare(monkeypatch: pytest.MonkeyPatch) -> Any:
    """analyze_hypotheses over synthetic arms: hypothesis `h` has per-seed differences
    `arms[h]` (no store, no trials)."""
    arms: dict[str, tuple[analysis.ArmData, analysis.ArmData]] = {}

    def arm_data(ids: list[str], _objective: Objective, **_kw: Any) -> analysis.ArmData:
        hyp, side = ids[0].rsplit("-", 1)
        return arms[hyp][0 if side == "c" else 1]

    monkeypatch.setattr(analysis, "arm_data", arm_data)
    monkeypatch.setattr(analysis, "subgroup_effects", lambda *a, **k: {})
    store: Any = SimpleNamespace(trials=SimpleNamespace(get=lambda t: t))

    def hyp(name: str, diffs: tuple[float, ...]) -> Any:
        arms[name] = _arms(diffs)
        return SimpleNamespace(
            id=name,
            control_trials=[f"{name}-c"],
            treatment_trials=[f"{name}-t"],
            reproduction_control=[],
            reproduction_treatment=[],
        )

    def run(current: tuple[float, ...], history: list[tuple[float, ...]]) -> analysis.HypothesisAnalysis:
        earlier = [hyp(f"e{i}", d) for i, d in enumerate(history)]
        return analysis.analyze_hypotheses(
            store,
            [hyp("now", current)],
            objective=Objective(metric="score"),
            policy=ValidationPolicy(min_effect=0.005),
            history=earlier,
        )[0]

    return run


def test_an_unstable_earlier_comparison_does_not_widen_a_stable_ones_interval(compare: Any) -> None:
    """surface1080's regression: two comparisons of a config near divergence sat in the
    campaign-wide pool, and a stable, clear gain (+0.012, seed sd 0.002) after them took
    the pool's variance, 60x its own, and stayed inconclusive."""
    gain = (0.014, 0.010, 0.012)
    clean = compare(gain, STABLE * 2)
    mixed = compare(gain, STABLE * 2 + UNSTABLE)
    assert clean.verdict == "supported"
    assert mixed.verdict == "supported", mixed.note
    width = lambda a: a.comparison.ci_high - a.comparison.ci_low  # noqa: E731
    assert width(mixed) == pytest.approx(width(clean), rel=0.05)


def test_an_unstable_comparison_still_keeps_its_own_variance(compare: Any) -> None:
    """The other side of the guard: a comparison as noisy as the excluded ones does not
    borrow the stable pool (its own 2 degrees of freedom decide)."""
    noisy = compare((0.05, -0.02, 0.03), STABLE * 2 + UNSTABLE)
    assert noisy.comparison is not None and "pooled" not in noisy.comparison.test
    assert noisy.verdict == "inconclusive"
