from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from medloop.evaluation import stats


def test_holm_matches_hand_computed_values() -> None:
    # Sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04): monotone step-down.
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_exact_permutation_p_for_small_n() -> None:
    # 4 positive differences: only the all-plus and all-minus flips reach |mean| -> 2/16.
    assert stats.permutation_p(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(2 / 16)


def test_wilcoxon_all_zero_is_p_one() -> None:
    assert stats.wilcoxon_p(np.zeros(10)) == 1.0


def test_bootstrap_ci_contains_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.05, 0.02, size=10)
    large = rng.normal(0.05, 0.02, size=200)
    lo_s, hi_s = stats.bootstrap_ci(small, resamples=10_000)
    lo_l, hi_l = stats.bootstrap_ci(large, resamples=10_000)
    assert lo_s < small.mean() < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s)


def test_seed_mean_keeps_common_cases() -> None:
    runs = [{"a": 0.5, "b": 0.7}, {"a": 0.7, "b": 0.9, "c": 1.0}]
    assert stats.seed_mean(runs) == pytest.approx({"a": 0.6, "b": 0.8})


@pytest.mark.parametrize(
    ("estimate", "ci", "p", "direction", "expected"),
    [
        (0.03, (0.01, 0.05), 0.001, "maximize", "supported"),
        (0.03, (0.01, 0.05), 0.2, "maximize", "inconclusive"),
        (-0.03, (-0.05, -0.01), 0.001, "maximize", "refuted"),
        (-0.03, (-0.05, -0.01), 0.001, "minimize", "supported"),
        (0.002, (-0.001, 0.004), 0.3, "maximize", "refuted"),  # CI rules out min_effect 0.01
        (0.004, (0.001, 0.012), 0.001, "maximize", "supported"),  # CI above 0 and reaches min
        (0.004, (-0.001, 0.012), 0.001, "maximize", "inconclusive"),  # CI includes 0
        (0.004, (0.003, 0.005), 0.001, "maximize", "refuted"),  # real but smaller than min
    ],
)
def test_verdict_rule(
    estimate: float, ci: tuple[float, float], p: float, direction: stats.Direction, expected: str
) -> None:
    got = stats.verdict(estimate, ci[0], ci[1], p, direction=direction, alpha=0.05, min_effect=0.01)
    assert got == expected


def _arm(
    rng: np.random.Generator, case_fx: np.ndarray, mu: float, shifts: np.ndarray
) -> list[dict[str, float]]:
    """Per-seed runs: every case moved by its run's shift, plus per-case noise."""
    return [
        {f"c{i}": float(mu + case_fx[i] + shift + e) for i, e in enumerate(rng.normal(0, 0.02, case_fx.size))}
        for shift in shifts
    ]


def _cycle_supported(rng: np.random.Generator, effect: float, seed_sd: float, n_hyp: int = 3) -> bool:
    """Both arms run seeds 0-2; a seed's shift is shared by the arms (same initialisation
    and data order) plus an arm-specific part of a third of its size."""
    comps = []
    for _ in range(n_hyp):
        case_fx = rng.normal(0, 0.05, 24)
        shared = rng.normal(0, seed_sd, 3)
        control = _arm(rng, case_fx, 0.7, shared + rng.normal(0, seed_sd / 3, 3))
        treatment = _arm(rng, case_fx, 0.7 + effect, shared + rng.normal(0, seed_sd / 3, 3))
        comps.append(
            stats.compare_paired(
                control,
                treatment,
                resamples=2000,
                seed=int(rng.integers(1_000_000)),
                control_seeds=[0, 1, 2],
                treatment_seeds=[0, 1, 2],
            )
        )
    adj = stats.holm([c.p_value for c in comps])
    return any(
        stats.verdict(c.estimate, c.ci_low, c.ci_high, p, direction="maximize", alpha=0.05, min_effect=0.005)
        == "supported"
        for c, p in zip(comps, adj, strict=True)
    )


def test_null_family_wise_false_positive_rate_is_controlled_despite_seed_effects() -> None:
    """Cycles of 3 hypotheses with no true effect but seed-to-seed shifts of a whole run:
    the family-wise rate of 'supported' stays <= alpha (a case-only test would not)."""
    rng = np.random.default_rng(42)
    cycles = 200
    hits = sum(_cycle_supported(rng, 0.0, seed_sd=0.01) for _ in range(cycles))
    assert hits / cycles <= 0.05


def test_power_at_a_planted_effect() -> None:
    rng = np.random.default_rng(7)
    runs = 100
    hits = sum(_cycle_supported(rng, 0.03, seed_sd=0.01, n_hyp=1) for _ in range(runs))
    assert hits / runs >= 0.8


def test_run_level_test_widens_the_ci_when_seeds_vary() -> None:
    rng = np.random.default_rng(1)
    case_fx = rng.normal(0, 0.05, 24)
    control = _arm(rng, case_fx, 0.7, rng.normal(0, 0.02, 3))
    treatment = _arm(rng, case_fx, 0.7, rng.normal(0, 0.02, 3))
    both = stats.compare_paired(control, treatment, control_seeds=[0, 1, 2], treatment_seeds=[0, 1, 2])
    flat = stats.compare_paired(stats.seed_mean(control), stats.seed_mean(treatment))
    assert both.p_run is not None and both.p_value == max(both.p_case, both.p_run)
    assert (both.ci_high - both.ci_low) > 1.5 * (flat.ci_high - flat.ci_low)


def test_run_level_paired_t_by_hand() -> None:
    # run means: control [0.5, 0.6, 0.7], treatment [0.6, 0.7, 0.9] -> d = [0.1, 0.1, 0.2]
    c = np.array([[0.5], [0.6], [0.7]])
    t = np.array([[0.6], [0.7], [0.9]])
    p, lo, hi = stats.run_level_test(c, t, paired=True)
    d_mean, d_se = 0.4 / 3, np.std([0.1, 0.1, 0.2], ddof=1) / np.sqrt(3)
    from scipy.stats import t as tdist

    assert p == pytest.approx(2 * tdist.sf(d_mean / d_se, 2))
    assert (lo + hi) / 2 == pytest.approx(d_mean)


def test_reproduction_agreement() -> None:
    # fresh 0.02, pooled with the original 0.025: same sign, inside [0.01, 0.05]
    assert stats.reproduction_agrees(0.03, (0.01, 0.05), 0.02, 0.025)
    # a larger fresh effect is not held against the claim: pooled 0.045 is inside
    assert stats.reproduction_agrees(0.03, (0.01, 0.05), 0.06, 0.045)
    # pooled outside the CI, on either side
    assert not stats.reproduction_agrees(0.03, (0.01, 0.05), 0.15, 0.09)
    assert not stats.reproduction_agrees(0.03, (0.02, 0.05), 0.001, 0.0155)
    # the fresh seeds point the other way: never agrees, even if pooling lands inside
    assert not stats.reproduction_agrees(0.03, (0.001, 0.05), -0.02, 0.005)
    assert not stats.reproduction_agrees(0.03, (0.01, 0.05), 0.0, 0.015)
    assert not stats.reproduction_agrees(0.03, (0.01, 0.05), float("nan"), 0.02)


def test_pooled_variance_does_not_lend_stability_to_an_unstable_arm() -> None:
    """One unstable treatment (seed sd 15x the others) among stable ones, all null: the
    cycle's pooled seed variance must not make its seed luck look like an effect."""
    rng = np.random.default_rng(1)
    seeds = [0, 1, 2]
    case_fx = rng.normal(0, 0.05, 24)

    def arm(sd: float, shared: np.ndarray) -> list[dict[str, float]]:
        return [
            {f"c{i}": float(0.7 + case_fx[i] + shared[s] + shift + rng.normal(0, 0.01)) for i in range(24)}
            for s, shift in enumerate(rng.normal(0, sd, 3))
        ]

    cycles, hits = 400, 0
    for k in range(cycles):
        shared = rng.normal(0, 0.003, 3)
        control = arm(0.002, shared)
        treatments = [arm(0.03, shared), arm(0.002, shared), arm(0.002, shared)]
        pooled = stats.pooled_seed_variance([stats.run_differences(control, t) for t in treatments])
        comps = [
            stats.compare_paired(
                control, t, resamples=500, seed=k, control_seeds=seeds, treatment_seeds=seeds, pooled=pooled
            )
            for t in treatments
        ]
        adj = stats.holm([c.p_value for c in comps])
        hits += any(
            stats.verdict(
                c.estimate, c.ci_low, c.ci_high, p, direction="maximize", alpha=0.05, min_effect=0.005
            )
            == "supported"
            for c, p in zip(comps, adj, strict=True)
        )
    assert hits / cycles <= 0.05


def test_decide_needs_the_run_level_test() -> None:
    """One run per arm: a case-level p of ~1e-6 is still inconclusive, with the reason;
    with runs in both arms decide() agrees with verdict()."""
    rng = np.random.default_rng(3)
    cases = [f"c{i}" for i in range(30)]
    control = {c: float(v) for c, v in zip(cases, rng.normal(0.7, 0.05, 30), strict=True)}
    treatment = {c: v + 0.05 for c, v in control.items()}
    single = stats.compare_paired(control, treatment)
    assert single.p_case < 1e-4 and single.p_run is None
    assert (
        stats.verdict(
            single.estimate,
            single.ci_low,
            single.ci_high,
            single.p_value,
            direction="maximize",
            alpha=0.05,
            min_effect=0.0,
        )
        == "supported"
    )  # the old rule, case test only
    v, why = stats.decide(
        single, single.p_value, direction="maximize", alpha=0.05, min_effect=0.0, seeds=(1, 1)
    )
    assert v == "inconclusive" and "too few seeds (1 treatment vs 1 control)" in why
    runs_c = [{c: v + d for c, v in control.items()} for d in (0.0, 0.01, -0.01)]
    runs_t = [{c: v + 0.05 + d for c, v in control.items()} for d in (0.0, 0.012, -0.008)]
    multi = stats.compare_paired(runs_c, runs_t, control_seeds=[0, 1, 2], treatment_seeds=[0, 1, 2])
    v, why = stats.decide(
        multi, multi.p_value, direction="maximize", alpha=0.05, min_effect=0.0, seeds=(3, 3)
    )
    assert (v, why) == ("supported", "")


def test_scalar_objective_is_decided_by_the_run_level_test_alone() -> None:
    """One number per run (no cases): the case-level test has nothing to pair (a single
    difference), so the run-level paired t-test over seeds decides and the test says so."""
    seeds = list(range(6))
    control = [{"run": 0.80 + 0.002 * s} for s in seeds]
    treatment = [{"run": 0.83 + 0.002 * s + 0.001 * (-1) ** s} for s in seeds]
    c = stats.compare_paired(control, treatment, control_seeds=seeds, treatment_seeds=seeds)
    assert c.n_cases == 1
    assert "scalar objective" in c.test and c.test.startswith("run-t-paired")
    assert c.p_run is not None and c.p_value == c.p_run < 0.001
    assert c.ci_low > 0.02 and c.ci_high < 0.04
    v = stats.verdict(
        c.estimate, c.ci_low, c.ci_high, c.p_value, direction="maximize", alpha=0.05, min_effect=0.01
    )
    assert v == "supported"


def _null_rate(
    rng: np.random.Generator, unstable: float, reps: int, pool: Callable[..., Any]
) -> tuple[float, float]:
    """(false-positive rate at 5%, power at an effect of 2 seed sds) of a stable paired
    comparison with 3 seeds and 16 earlier comparisons, a share of them unstable (sd 3x)."""
    hits = {0.0: 0, 2.0: 0}
    for _ in range(reps):
        sds = np.where(rng.random(16) < unstable, 3.0, 1.0)
        others = [rng.normal(0.0, s, 3) for s in sds]
        for effect in hits:
            d = rng.normal(effect, 1.0, 3)
            p, _, _ = stats.run_level_test(np.zeros((3, 1)), d[:, None], paired=True, pooled=pool(d, others))
            hits[effect] += p < 0.05
    return hits[0.0] / reps, hits[2.0] / reps


def test_unstable_earlier_comparisons_stay_out_of_the_pool() -> None:
    """Design note 8: a campaign-wide pool took in the seed noise of unstable configs, and
    every stable comparison after them lost power (surface1080). The stable pool leaves the
    noisy ones out and stays calibrated when every comparison is alike."""
    rng = np.random.default_rng(7)
    whole = lambda d, others: stats.pooled_seed_variance([d, *others])  # noqa: E731
    null_rate, power = _null_rate(rng, 0.0, 1000, stats.stable_pool)
    assert null_rate <= 0.065 and power >= 0.75
    _, power_whole = _null_rate(rng, 0.3, 1000, whole)
    null_stable, power_stable = _null_rate(rng, 0.3, 1000, stats.stable_pool)
    assert null_stable <= 0.05
    assert power_stable >= power_whole + 0.1
    # The unstable one is dropped; alike comparisons are all kept.
    alike = [np.array([0.1, -0.2, 0.1]), np.array([0.0, 0.15, -0.1]), np.array([-0.1, 0.1, 0.05])]
    assert stats.stable_pool(alike[0], alike[1:]) == stats.pooled_seed_variance(alike)
    noisy = np.array([-9.0, 0.0, 9.0])
    assert stats.stable_pool(alike[0], [*alike[1:], noisy, *alike]) == stats.pooled_seed_variance(alike * 2)
