"""Summaries of recomputed segmentation metrics as challenges report them: mean +- SD with
bootstrap confidence intervals (overall, per class), and rank-then-aggregate across
trials (rank the trials on every case and class, then average the ranks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medloop.core.errors import SpecError
from medloop.core.records import CaseEvaluation, SplitEvaluation
from medloop.evaluation.metrics import HIGHER_IS_BETTER


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over cases (resampling cases with replacement)."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _case_value(case: CaseEvaluation, metric: str, cls: str | None) -> float | None:
    values = case.metrics.get(metric, {})
    if cls is not None:
        return values.get(cls)
    kept = [v for v in values.values() if v is not None]
    return float(np.mean(kept)) if kept else None


def describe(
    cases: Sequence[CaseEvaluation],
    metric: str,
    *,
    cls: str | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Mean, SD, median, bootstrap 95% CI and n over cases of one metric: the foreground
    mean per case, or one class with `cls`. Undefined values (None) are left out."""
    values = [v for v in (_case_value(c, metric, cls) for c in cases) if v is not None]
    if not values:
        return {"mean": None, "sd": None, "median": None, "ci_low": None, "ci_high": None, "n": 0}
    low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "median": float(np.median(values)),
        "ci_low": low,
        "ci_high": high,
        "n": len(values),
    }


def split_report(evaluation: SplitEvaluation, *, resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Every metric of a split: overall and per class (mean, SD, CI), per site."""
    metrics = list(evaluation.summary)
    classes = (
        sorted({name for c in evaluation.cases for name in c.metrics.get(metrics[0], {})}) if metrics else []
    )
    sites = sorted({c.site for c in evaluation.cases if c.site is not None})
    return {
        "split": evaluation.split,
        "n_cases": len(evaluation.cases),
        "implementation": evaluation.implementation,
        "empty_rule": evaluation.empty_rule,
        "metrics": {
            m: {
                "overall": describe(evaluation.cases, m, resamples=resamples, seed=seed),
                "per_class": {
                    k: describe(evaluation.cases, m, cls=k, resamples=resamples, seed=seed) for k in classes
                },
                "per_site": {
                    s: describe(
                        [c for c in evaluation.cases if c.site == s], m, resamples=resamples, seed=seed
                    )
                    for s in sites
                },
            }
            for m in metrics
        },
    }


def _ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks 1..n (1 = best) with ties sharing their mean rank; NaN ranks last."""
    keyed = np.where(np.isnan(values), -np.inf if higher_is_better else np.inf, values)
    order_values = -keyed if higher_is_better else keyed
    ranks = np.empty(len(values))
    sorted_idx = np.argsort(order_values, kind="stable")
    sorted_vals = order_values[sorted_idx]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[sorted_idx[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_then_aggregate(
    evaluations: Mapping[str, SplitEvaluation], metric: str = "dice", *, higher_is_better: bool | None = None
) -> list[tuple[str, float]]:
    """Challenge-style ranking: on every (case, class) all trials are ranked (a missing or
    undefined value ranks last, ties share the mean rank), then each trial's ranks are
    averaged. Returns (trial, mean rank) from best to worst. Only cases scored for every
    trial count."""
    if not evaluations:
        return []
    better = HIGHER_IS_BETTER.get(metric, True) if higher_is_better is None else higher_is_better
    trials = sorted(evaluations)
    by_trial = {t: {c.case: c.metrics.get(metric, {}) for c in evaluations[t].cases} for t in trials}
    common = set.intersection(*(set(v) for v in by_trial.values()))
    if not common:
        raise SpecError("rank_then_aggregate: the trials share no evaluated case")
    totals = np.zeros(len(trials))
    n = 0
    for case in sorted(common):
        classes = sorted({k for t in trials for k in by_trial[t][case]})
        for cls in classes:
            values = [by_trial[t][case].get(cls) for t in trials]
            column = np.array([np.nan if v is None else float(v) for v in values])
            totals += _ranks(column, better)
            n += 1
    means = totals / max(n, 1)
    return sorted(zip(trials, (float(m) for m in means), strict=True), key=lambda item: (item[1], item[0]))
