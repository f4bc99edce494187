"""Paired comparison of two models scored on the same VQA items: accuracy difference
(second - first) with a paired bootstrap CI, McNemar's exact test overall and per category,
Holm-adjusted across the categories of each field, and a verdict by the same rule as
campaign claims (medloop.evaluation.stats.verdict).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pydantic import BaseModel, ConfigDict

from medloop.core.errors import SpecError
from medloop.evaluation.stats import holm, mcnemar_exact, verdict
from medloop.evaluation.vqa import ItemScore, VqaReport, group_keys


class PairedAccuracy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str  # "overall" or "field=value"
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # b - a
    ci_low: float
    ci_high: float
    only_a: int  # items only the first model got right
    only_b: int
    p_value: float  # McNemar exact, two-sided
    p_adjusted: float  # Holm within the field (overall: unadjusted)
    verdict: str


class VqaComparison(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark: str
    model_a: str
    model_b: str
    n_common: int
    only_in_a: int  # scored items the other report lacks (left out)
    only_in_b: int
    overall: PairedAccuracy
    groups: list[PairedAccuracy]
    ci_level: float
    resamples: int
    alpha: float
    test: str = "mcnemar-exact + paired bootstrap"


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of mean(b - a) resampling items. Differences take the values -1, 0, 1,
    so the counts of a resample are multinomial and are drawn directly."""
    diff = b.astype(int) - a.astype(int)
    n = diff.size
    if n == 0:
        return (float("nan"), float("nan"))
    probs = [float(np.mean(diff == v)) for v in (-1, 0, 1)]
    counts = np.random.default_rng(seed).multinomial(n, probs, size=resamples)  # (B, 3)
    means = (counts[:, 2] - counts[:, 0]) / n
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _paired(
    key: str,
    a: list[ItemScore],
    b: list[ItemScore],
    *,
    resamples: int,
    level: float,
    seed: int,
    alpha: float,
    p_adjusted: float | None = None,
) -> PairedAccuracy:
    ra = np.array([s.correct for s in a], dtype=bool)
    rb = np.array([s.correct for s in b], dtype=bool)
    only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    p = mcnemar_exact(only_a, only_b)
    low, high = paired_bootstrap(ra, rb, resamples=resamples, level=level, seed=seed)
    diff = float(rb.mean() - ra.mean())
    p_adj = p if p_adjusted is None else p_adjusted
    return PairedAccuracy(
        key=key,
        n=len(a),
        accuracy_a=float(ra.mean()),
        accuracy_b=float(rb.mean()),
        difference=diff,
        ci_low=low,
        ci_high=high,
        only_a=only_a,
        only_b=only_b,
        p_value=p,
        p_adjusted=p_adj,
        verdict=verdict(diff, low, high, p_adj, direction="maximize", alpha=alpha, min_effect=0.0),
    )


def compare_reports(
    a: VqaReport,
    b: VqaReport,
    *,
    resamples: int = 10_000,
    level: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
) -> VqaComparison:
    """Compare report `b` against report `a` on the items both scored."""
    items_a = {s.index: s for s in a.items}
    items_b = {s.index: s for s in b.items}
    common = sorted(set(items_a) & set(items_b), key=lambda i: (len(i), i))
    if not common:
        raise SpecError(f"{a.model} and {b.model} share no scored items", hint="score both on the same TSV")
    mismatch = [i for i in common if items_a[i].answer != items_b[i].answer]
    if mismatch:
        raise SpecError(
            f"the two reports disagree on the answers of {len(mismatch)} item(s), e.g. index {mismatch[0]}",
            hint="score both models against the same benchmark file",
        )
    pa = [items_a[i] for i in common]
    pb = [items_b[i] for i in common]
    overall = _paired("overall", pa, pb, resamples=resamples, level=level, seed=seed, alpha=alpha)
    by_key: dict[str, list[int]] = defaultdict(list)
    for pos, s in enumerate(pa):
        for key in group_keys(s):
            by_key[key].append(pos)
    # Holm within each category field: those are the families a reader scans together.
    raw: dict[str, float] = {}
    for key, positions in by_key.items():
        ra = [pa[i].correct for i in positions]
        rb = [pb[i].correct for i in positions]
        raw[key] = mcnemar_exact(
            sum(x and not y for x, y in zip(ra, rb, strict=True)),
            sum(y and not x for x, y in zip(ra, rb, strict=True)),
        )
    adjusted: dict[str, float] = {}
    for field in sorted({k.split("=", 1)[0] for k in raw}):
        keys = sorted(k for k in raw if k.split("=", 1)[0] == field)
        adjusted.update(zip(keys, holm([raw[k] for k in keys]), strict=True))
    groups = [
        _paired(
            key,
            [pa[i] for i in by_key[key]],
            [pb[i] for i in by_key[key]],
            resamples=resamples,
            level=level,
            seed=seed,
            alpha=alpha,
            p_adjusted=adjusted[key],
        )
        for key in sorted(by_key)
    ]
    return VqaComparison(
        benchmark=a.benchmark,
        model_a=a.model,
        model_b=b.model,
        n_common=len(common),
        only_in_a=len(set(items_a) - set(items_b)),
        only_in_b=len(set(items_b) - set(items_a)),
        overall=overall,
        groups=groups,
        ci_level=level,
        resamples=resamples,
        alpha=alpha,
    )
