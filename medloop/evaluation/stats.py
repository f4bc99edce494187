"""Statistics that turn per-case metrics into verdicts.

Arms are compared on the same cases. Two tests must both reject (an intersection-union
test, so the larger p-value is reported):
- case level: the per-case metric is averaged over seeds within each arm and the paired
  differences (treatment - control) are tested with a Wilcoxon signed-rank test or an
  exact/Monte-Carlo sign-flip permutation test;
- run level: a seed moves every case of a run together (initialisation, data order),
  which no case-level test can see. The mean over cases of each run is compared across
  arms with a t-test (paired by seed when both arms ran the same seeds, Welch otherwise).
The reported CI is the union of the paired case bootstrap CI (10k resamples) and the
run-level t CI, and Holm's step-down procedure controls the family-wise error rate
across the hypotheses of one cycle. A scalar objective (one value per run, no cases)
is decided by the run-level test alone, and the test's name says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Direction = Literal["maximize", "minimize"]
Verdict = Literal["supported", "refuted", "inconclusive"]

# Above this many cases the sign-flip test samples instead of enumerating 2^n flips.
_EXACT_PERMUTATION_MAX_N = 16


class PairedComparison(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    estimate: float  # mean of (treatment - control) over cases
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float  # two-sided, uncorrected; max of the case- and run-level p
    p_case: float
    p_run: float | None
    test: str
    n_cases: int
    cases: list[str]


def seed_mean(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average a per-case metric over seeds; only cases present in every seed are kept."""
    if not per_seed:
        return {}
    common = set(per_seed[0])
    for run in per_seed[1:]:
        common &= set(run)
    return {case: float(np.mean([run[case] for run in per_seed])) for case in sorted(common)}


def run_differences(
    control: Sequence[Mapping[str, float]], treatment: Sequence[Mapping[str, float]]
) -> np.ndarray:
    """Per-seed differences of run means over the cases both arms share (paired runs)."""
    cases = (
        sorted(set.intersection(*(set(r) for r in [*control, *treatment]))) if control and treatment else []
    )
    if not cases or len(control) != len(treatment):
        return np.zeros(0)
    return np.array([np.mean([t[c] - k[c] for c in cases]) for k, t in zip(control, treatment, strict=True)])


def paired_differences(
    control: Mapping[str, float], treatment: Mapping[str, float]
) -> tuple[list[str], np.ndarray]:
    cases = sorted(set(control) & set(treatment))
    diff = np.array([treatment[c] - control[c] for c in cases], dtype=np.float64)
    return cases, diff


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    if diff.size == 0 or np.allclose(diff, 0.0):
        return 1.0
    result = wilcoxon(diff, zero_method="wilcox", alternative="two-sided", method="auto")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on discordant pairs: b items only the first model got
    right, c only the second. Under no difference b ~ Binomial(b + c, 1/2)."""
    from scipy.stats import binom

    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def sign_test_p(diff: np.ndarray) -> float:
    """Exact two-sided sign test on paired differences (zeros dropped). On 0/1 outcomes, such
    as per-item correctness, it is McNemar's exact test."""
    return mcnemar_exact(int(np.sum(diff < 0)), int(np.sum(diff > 0)))


def permutation_p(diff: np.ndarray, *, resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation test on the mean difference."""
    n = diff.size
    if n == 0 or np.allclose(diff, 0.0):
        return 1.0
    observed = abs(diff.mean())
    if n <= _EXACT_PERMUTATION_MAX_N:
        # Every sign pattern: rows of a (2^n, n) matrix of +-1.
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        means = np.abs((signs * diff).mean(axis=1))
        return float(np.mean(means >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(resamples, n))
    means = np.abs((signs * diff).mean(axis=1))
    # +1 in numerator and denominator: the observed assignment is one of the permutations.
    return float((np.sum(means >= observed - 1e-12) + 1) / (resamples + 1))


def bootstrap_ci(
    diff: np.ndarray, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of the mean paired difference, resampling cases with replacement."""
    if diff.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(resamples, diff.size))  # (B, n)
    means = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def pooled_seed_variance(differences: Sequence[np.ndarray]) -> tuple[float, int] | None:
    """Pooled variance (and its degrees of freedom) of per-seed run-mean differences
    across several paired comparisons, as in an ANOVA error term. With 3 seeds one
    comparison has 2 df; a cycle of hypotheses shares one estimate with many more."""
    usable = [d for d in differences if d.size >= 2]
    df = sum(d.size - 1 for d in usable)
    if df == 0:
        return None
    ss = sum(float(((d - d.mean()) ** 2).sum()) for d in usable)
    return ss / df, df


# An arm whose seed-to-seed variance exceeds the pool's at this level keeps its own.
HETEROGENEITY_ALPHA = 0.10
# An earlier comparison whose seed variance exceeds the rest of the pool's at this level is
# left out of the pool (design note 8). Low, so that a homogeneous pool loses almost nothing
# from its upper tail (trimming at 0.10 biased it ~25% low and lifted the false-positive rate
# to 0.07 in a simulation; at 0.01 it stays at 0.05).
POOL_EXCLUDE_ALPHA = 0.01


def stable_pool(
    own: np.ndarray, others: Sequence[np.ndarray], *, alpha: float = POOL_EXCLUDE_ALPHA
) -> tuple[float, int] | None:
    """The seed-variance pool for one comparison: its own per-seed differences and the
    others', less those others the F-test finds noisier than the rest (removed one at a
    time, the noisiest first, until none is).

    An unstable configuration (a learning rate near divergence) run in an earlier
    comparison would otherwise widen the pool, and with it the interval of every stable
    comparison after it: on the per-case surface1080 table the campaign-wide pool cost more
    than it gave (issue 13). The comparison itself is not screened here: run_level_test
    decides whether it may borrow the pool at all."""
    from scipy import stats as st

    keep = [d for d in others if d.size >= 2]
    while len(keep) > 2:
        p_values = []
        for i, d in enumerate(keep):
            rest = pooled_seed_variance(keep[:i] + keep[i + 1 :])
            if rest is None or rest[0] <= 0:
                p_values.append(0.0 if float(d.var(ddof=1)) > 0 else 1.0)
                continue
            p_values.append(float(st.f.sf(float(d.var(ddof=1)) / rest[0], d.size - 1, rest[1])))
        worst = int(np.argmin(p_values))
        if p_values[worst] >= alpha:
            break
        keep.pop(worst)
    return pooled_seed_variance([own, *keep])


def _noisier_than_pool(own: float, own_df: int, pooled: tuple[float, int]) -> bool:
    """One-sided F-test of this comparison's variance against the pool of the others.

    The pool includes this comparison, so the others' variance is recovered first. An
    unstable arm (e.g. a learning rate near divergence) must not borrow the stable arms'
    small variance; stable arms keep the pool's degrees of freedom (and their power)."""
    from scipy import stats as st

    var, df = pooled
    other_df = df - own_df
    if other_df <= 0:
        return True
    other = (var * df - own * own_df) / other_df
    if other <= 0:
        return own > 0
    return float(st.f.sf(own / other, own_df, other_df)) < HETEROGENEITY_ALPHA


def borrows_pool(differences: np.ndarray, pooled: tuple[float, int] | None) -> bool:
    """Does a paired comparison with these per-seed differences take the pool's variance
    (there is a pool, and the comparison is not significantly noisier than it)?"""
    if pooled is None or differences.size < 2:
        return False
    return not _noisier_than_pool(float(differences.var(ddof=1)), differences.size - 1, pooled)


def run_level_test(
    control: np.ndarray,
    treatment: np.ndarray,
    *,
    paired: bool,
    level: float = 0.95,
    pooled: tuple[float, int] | None = None,
) -> tuple[float, float, float]:
    """t-test on run means (arrays of shape (S, n) -> S means). Returns (p, ci_low, ci_high)
    for mean(treatment) - mean(control); p = 1 and an infinite CI when it cannot be run.
    `pooled` = (variance of a per-seed difference, df) replaces this comparison's own
    variance estimate in the paired case unless the comparison is significantly noisier
    than the pool (borrows_pool)."""
    from scipy import stats as st

    r_c, r_t = control.mean(axis=1), treatment.mean(axis=1)
    df: float
    if paired and r_c.size == r_t.size and r_c.size >= 2:
        d = r_t - r_c
        if pooled is not None and borrows_pool(d, pooled):
            est, se, df = float(d.mean()), math.sqrt(pooled[0] / d.size), pooled[1]
        else:
            est, se, df = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size - 1
    elif r_c.size >= 2 and r_t.size >= 2:
        v_c, v_t = r_c.var(ddof=1) / r_c.size, r_t.var(ddof=1) / r_t.size
        est, se = float(r_t.mean() - r_c.mean()), float(math.sqrt(v_c + v_t))
        # Welch-Satterthwaite degrees of freedom
        denom = v_c**2 / (r_c.size - 1) + v_t**2 / (r_t.size - 1)
        df = float((v_c + v_t) ** 2 / denom) if denom > 0 else float(r_c.size + r_t.size - 2)
    else:
        return 1.0, -math.inf, math.inf
    if se == 0.0:
        return (1.0 if est == 0.0 else 0.0), est, est
    t = est / se
    p = float(2 * st.t.sf(abs(t), df))
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    return p, est - half, est + half


def compare_paired(
    control: Mapping[str, float] | Sequence[Mapping[str, float]],
    treatment: Mapping[str, float] | Sequence[Mapping[str, float]],
    *,
    test: Literal["wilcoxon", "permutation", "mcnemar"] = "wilcoxon",
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    control_seeds: Sequence[int] | None = None,
    treatment_seeds: Sequence[int] | None = None,
    pooled: tuple[float, int] | None = None,
) -> PairedComparison:
    """Compare two arms on common cases. Each arm is one {case: value} mapping (already
    averaged) or a list of them, one per seed; with two or more runs per arm the
    run-level test joins the case-level one."""
    runs_c = [control] if isinstance(control, Mapping) else list(control)
    runs_t = [treatment] if isinstance(treatment, Mapping) else list(treatment)
    mean_c, mean_t = seed_mean(runs_c), seed_mean(runs_t)
    cases, diff = paired_differences(mean_c, mean_t)
    if test == "wilcoxon":
        p_case = wilcoxon_p(diff)
    elif test == "mcnemar":
        p_case = sign_test_p(diff)
    else:
        p_case = permutation_p(diff, seed=seed)
    low, high = bootstrap_ci(diff, resamples=resamples, level=level, seed=seed)
    p, name = p_case, str(test)
    p_run: float | None = None
    if len(runs_c) >= 2 and len(runs_t) >= 2 and cases:
        arr_c = np.array([[run[c] for c in cases] for run in runs_c], dtype=np.float64)
        arr_t = np.array([[run[c] for c in cases] for run in runs_t], dtype=np.float64)
        paired = control_seeds is not None and list(control_seeds) == list(treatment_seeds or [])
        p_run, run_low, run_high = run_level_test(arr_c, arr_t, paired=paired, level=level, pooled=pooled)
        pooled_used = paired and borrows_pool(arr_t.mean(axis=1) - arr_c.mean(axis=1), pooled)
        kind = ("-paired-pooled" if pooled_used else "-paired") if paired else "-welch"
        if len(cases) == 1:
            # A scalar objective (one number per run, e.g. accuracy of a tabular model):
            # there are no cases to pair, so the run-level test over seeds alone decides.
            p, name, low, high = p_run, f"run-t{kind} (scalar objective: run level only)", run_low, run_high
        else:
            p, name = max(p_case, p_run), f"{test}+run-t{kind}"
            low, high = min(low, run_low), max(high, run_high)
    return PairedComparison(
        estimate=float(diff.mean()) if diff.size else math.nan,
        ci_low=low,
        ci_high=high,
        ci_level=level,
        p_value=p,
        p_case=p_case,
        p_run=p_run,
        test=name,
        n_cases=len(cases),
        cases=cases,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(
    estimate: float,
    ci_low: float,
    ci_high: float,
    p_adjusted: float,
    *,
    direction: Direction,
    alpha: float,
    min_effect: float,
) -> Verdict:
    """Pre-registered decision rule (alpha and min_effect are fixed before the data).

    supported: significant after correction, the CI lies above zero on the side of
               improvement, and the CI still reaches min_effect (the data do not rule
               out a gain of the size that matters). Requiring the *point estimate* to
               reach min_effect instead would give only ~50% power at a true effect of
               exactly min_effect.
    refuted: significantly worse, or the whole CI lies below min_effect (the gain that
             matters is ruled out).
    inconclusive: anything else.
    """
    if math.isnan(estimate):
        return "inconclusive"
    sign = 1.0 if direction == "maximize" else -1.0
    gain = sign * estimate
    gain_low = min(sign * ci_low, sign * ci_high)
    gain_high = max(sign * ci_low, sign * ci_high)
    if p_adjusted < alpha and gain > 0 and gain_low > 0 and gain_high >= min_effect:
        return "supported"
    if p_adjusted < alpha and gain < 0:
        return "refuted"
    if min_effect > 0 and gain_high < min_effect:
        return "refuted"
    return "inconclusive"


# Fewer runs than this in an arm: the run-level test cannot run, and seed luck moves every
# case of a run together, which a case-level p-value cannot see (issue 14: seed 0 vs seed 1
# of the same arms gave p = 0.00012 on cases alone).
MIN_SEEDS = 2


def decide(
    comparison: PairedComparison,
    p_adjusted: float,
    *,
    direction: Direction,
    alpha: float,
    min_effect: float,
    seeds: tuple[int, int] | None = None,
    min_seeds: int = MIN_SEEDS,
) -> tuple[Verdict, str]:
    """The one decision every caller (agents, tools) applies: (verdict, reason).

    A comparison whose run-level test did not run (fewer than `min_seeds` usable runs in
    an arm) is `inconclusive`, whatever the case-level test says; `seeds` = (control,
    treatment) usable runs, for the reason. Otherwise `verdict`'s pre-registered rule."""
    if comparison.n_cases and (comparison.p_run is None or (seeds is not None and min(seeds) < min_seeds)):
        counts = f" ({seeds[1]} treatment vs {seeds[0]} control)" if seeds is not None else ""
        return "inconclusive", (
            f"too few seeds{counts}: the run-level test needs at least {min_seeds} usable runs per arm; "
            "a case-level p-value alone cannot tell an effect from one seed's luck"
        )
    chosen = verdict(
        comparison.estimate,
        comparison.ci_low,
        comparison.ci_high,
        p_adjusted,
        direction=direction,
        alpha=alpha,
        min_effect=min_effect,
    )
    return chosen, ""


def reproduction_agrees(
    original_estimate: float,
    original_ci: tuple[float, float],
    fresh_estimate: float,
    pooled_estimate: float,
) -> bool:
    """A reproduction agrees when the estimate pooled over the original and the fresh seeds
    lies inside the original CI and the fresh seeds alone point the same way as the
    original (REFERENCE.md, 'Reproduction').

    Pooling, rather than asking the fresh estimate alone to land inside the original CI:
    with the same true effect, a fresh estimate falls outside a 95% CI about one time in
    six (the two estimates' difference has sqrt(2) times the standard error), so about
    one real effect in six would fail on size alone, a fresh estimate *larger* than the
    original's upper bound included. A null effect is caught as before: its fresh
    estimate takes the original's sign only half the time."""
    if any(math.isnan(x) for x in (fresh_estimate, pooled_estimate)) or fresh_estimate == 0:
        return False
    same_sign = (fresh_estimate > 0) == (original_estimate > 0)
    return same_sign and original_ci[0] <= pooled_estimate <= original_ci[1]


def obrien_fleming_spent(fraction: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type alpha spending, two-sided: the type I error a
    group-sequential test may have spent once a fraction t of its information (seeds) is
    in, alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)). Little is spent early, nearly all
    of alpha is left for the last look."""
    from scipy.stats import norm

    if fraction <= 0:
        return 0.0
    t = min(1.0, fraction)
    return float(2.0 - 2.0 * norm.cdf(norm.ppf(1.0 - alpha / 2.0) / math.sqrt(t)))


def pocock_spent(fraction: float, alpha: float) -> float:
    """Lan-DeMets Pocock-type alpha spending, alpha(t) = alpha ln(1 + (e - 1) t): spends
    alpha nearly evenly over the looks, so an early look has a level close to the last
    one's (two equally spaced looks at 0.05: 0.0310 and 0.0277), against O'Brien-Fleming's
    0.0056 and 0.0478. A large effect is decided sooner; one that needs every seed pays a
    little at the last look."""
    if fraction <= 0:
        return 0.0
    return alpha * math.log(1.0 + (math.e - 1.0) * min(1.0, fraction))


SPENDING: dict[str, Callable[[float, float], float]] = {
    "obrien_fleming": obrien_fleming_spent,
    "pocock": pocock_spent,
}


def sequential_levels(
    fractions: Sequence[float], alpha: float, spending: str = "obrien_fleming"
) -> list[float]:
    """Nominal two-sided p-value thresholds of a group-sequential test at looks with the
    given information fractions (increasing, last = 1), so that the chance of rejecting a
    true null at *any* look is alpha, spent over the looks by the named Lan-DeMets
    function (SPENDING). Exact for the canonical joint distribution of the looks' z
    statistics (corr(Z_i, Z_j) = sqrt(t_i / t_j)); a t statistic with few seeds is
    treated through its p-value."""
    from scipy.optimize import brentq
    from scipy.stats import multivariate_normal, norm

    t = [float(f) for f in fractions]
    if not t or any(b <= a for a, b in itertools.pairwise(t)) or not 0 < t[0] <= t[-1] <= 1:
        raise ValueError(f"information fractions must increase within (0, 1]: {fractions}")
    if spending not in SPENDING:
        raise ValueError(f"unknown alpha spending {spending!r}: one of {sorted(SPENDING)}")
    spent = SPENDING[spending]
    bounds: list[float] = []
    levels: list[float] = []
    for k in range(len(t)):
        target = 1.0 - spent(t[k], alpha)  # P(no rejection through look k)
        if k == 0:
            c = float(norm.ppf(1.0 - (1.0 - target) / 2.0))
        else:
            cov = np.array([[math.sqrt(min(a, b) / max(a, b)) for b in t[: k + 1]] for a in t[: k + 1]])

            def stay(c: float, k: int = k, cov: np.ndarray = cov, target: float = target) -> float:
                lim = np.array([*bounds, c])
                p = multivariate_normal.cdf(lim, mean=np.zeros(k + 1), cov=cov, lower_limit=-lim)
                return float(p) - target

            c = float(brentq(stay, 0.5, 10.0, xtol=1e-6))
        bounds.append(c)
        levels.append(float(2.0 * norm.sf(c)))
    return levels
