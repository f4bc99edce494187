"""Compare arms of hypotheses with paired statistics (wraps evaluation.stats for agents).

Per-case objective values are averaged over seeds within an arm, then arms are compared
case by case. Failed or tampered trials never enter a comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medloop.core.records import Hypothesis, Trial
from medloop.core.specs import Objective, ValidationPolicy
from medloop.core.store import Store
from medloop.engine.base import aggregate, case_objective
from medloop.evaluation import stats


class ArmData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    trial_ids: list[str]
    usable: list[str] = Field(description="Succeeded, untampered trials that enter the test")
    seeds: list[int]
    per_case: dict[str, float] = Field(description="case -> objective averaged over seeds")
    per_seed: list[dict[str, float]] = Field(description="One {case: objective} per usable trial")
    objective: float | None


class HypothesisAnalysis(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hypothesis_id: str
    control: ArmData
    treatment: ArmData
    comparison: stats.PairedComparison | None
    p_adjusted: float | None = None
    verdict: str = "inconclusive"
    note: str = ""
    by_group: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Subgroup (e.g. VQA category field=value) -> effect, CI, p, Holm p within the field",
    )


def arm_data(trials: Sequence[Trial], objective: Objective, *, split: str = "eval") -> ArmData:
    """Per-case objective of one arm on a split ("eval" for search, "test" at the end)."""
    usable = [t for t in trials if t.status == "succeeded" and t.result and split in t.result.evaluations]
    per_seed = [case_objective(t.result.evaluations[split], objective.metric) for t in usable if t.result]
    runs = [aggregate(list(run.values()), objective.aggregation) for run in per_seed]
    values = [v for v in runs if v is not None]
    return ArmData(
        trial_ids=[t.id for t in trials],
        usable=[t.id for t in usable],
        seeds=[t.spec.seed for t in usable],  # aligned with per_seed
        per_case=stats.seed_mean(per_seed),
        per_seed=per_seed,
        objective=sum(values) / len(values) if values else None,
    )


def compare_arms(
    control: ArmData,
    treatment: ArmData,
    policy: ValidationPolicy,
    *,
    seed: int = 0,
    pooled: tuple[float, int] | None = None,
) -> stats.PairedComparison | None:
    if not control.per_case or not treatment.per_case:
        return None
    return stats.compare_paired(
        control.per_seed,
        treatment.per_seed,
        test=policy.test,
        resamples=policy.bootstrap_resamples,
        seed=seed,
        control_seeds=control.seeds,
        treatment_seeds=treatment.seeds,
        pooled=pooled if control.seeds == treatment.seeds else None,
    )


def subgroup_metrics(trials: Sequence[Trial], metric: str, *, split: str = "eval") -> list[str]:
    """Metrics that break `metric` down by subgroup: `<metric>:<group>` keys of the trials'
    evaluation summaries (VQA categories such as `accuracy:modality=CT`). Segmentation
    evaluations have none."""
    keys: set[str] = set()
    for t in trials:
        if t.status == "succeeded" and t.result and split in t.result.evaluations:
            keys |= {k for k in t.result.evaluations[split].summary if k.startswith(f"{metric}:")}
    return sorted(keys)


def subgroup_effects(
    control: Sequence[Trial],
    treatment: Sequence[Trial],
    objective: Objective,
    policy: ValidationPolicy,
    *,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """The paired comparison within each subgroup, Holm-adjusted across the groups of one
    field (task=..., modality=...). Evidence beside the overall test, not separate claims."""
    out: dict[str, dict[str, Any]] = {}
    for metric in subgroup_metrics([*control, *treatment], objective.metric):
        sub = objective.model_copy(update={"metric": metric})
        c, t = arm_data(control, sub), arm_data(treatment, sub)
        comparison = compare_arms(c, t, policy, seed=seed)
        if comparison is None or comparison.n_cases == 0:
            continue
        out[metric.split(":", 1)[1]] = {
            "control_objective": c.objective,
            "treatment_objective": t.objective,
            **comparison.model_dump(exclude={"cases"}),
        }
    for field in sorted({k.split("=", 1)[0] for k in out}):
        keys = sorted(k for k in out if k.split("=", 1)[0] == field)
        for key, p in zip(keys, stats.holm([out[k]["p_value"] for k in keys]), strict=True):
            out[key]["p_holm_within_field"] = p
    return out


def analyze_hypotheses(
    store: Store,
    hypotheses: Sequence[Hypothesis],
    *,
    objective: Objective,
    policy: ValidationPolicy,
    seed: int = 0,
    history: Sequence[Hypothesis] = (),
) -> list[HypothesisAnalysis]:
    """Test every hypothesis of one cycle; Holm across those that could be tested.

    `history`: earlier comparisons of the same campaign (explore and reproduction arms),
    whose per-seed differences join the seed-variance pool. With one change per cycle and
    3 seeds a comparison alone has 2 degrees of freedom (t = 4.30 for p < 0.05); the
    campaign's earlier pairs, trained the same way, give the pool tens. A comparison
    noisier than the pool still keeps its own variance (stats.run_level_test)."""

    def arms_of(control: Sequence[str], treatment: Sequence[str]) -> tuple[ArmData, ArmData]:
        return (
            arm_data([store.trials.get(t) for t in control], objective),
            arm_data([store.trials.get(t) for t in treatment], objective),
        )

    arms = [arms_of(h.control_trials, h.treatment_trials) for h in hypotheses]
    earlier = [arms_of(h.control_trials, h.treatment_trials) for h in history] + [
        arms_of(h.reproduction_control, h.reproduction_treatment)
        for h in history
        if h.reproduction_control and h.reproduction_treatment
    ]
    # The seed-variance pool of each comparison: the cycle's other comparisons and the
    # history (paired arms only), less the unstable ones (stats.stable_pool).
    diffs = [
        stats.run_differences(c.per_seed, t.per_seed) if c.seeds == t.seeds else np.zeros(0)
        for c, t in [*arms, *earlier]
    ]
    drafts: list[HypothesisAnalysis] = []
    for i, (hyp, (control, treatment)) in enumerate(zip(hypotheses, arms, strict=True)):
        pooled = stats.stable_pool(diffs[i], diffs[:i] + diffs[i + 1 :])
        comparison = compare_arms(control, treatment, policy, seed=seed, pooled=pooled)
        by_group = (
            subgroup_effects(
                [store.trials.get(t) for t in hyp.control_trials],
                [store.trials.get(t) for t in hyp.treatment_trials],
                objective,
                policy,
                seed=seed,
            )
            if comparison is not None
            else {}
        )
        note = ""
        if comparison is None:
            failed = "treatment" if not treatment.usable else "control"
            note = f"no usable {failed} trials (failed, timed out or tampered)"
        drafts.append(
            HypothesisAnalysis(
                hypothesis_id=hyp.id,
                control=control,
                treatment=treatment,
                comparison=comparison,
                note=note,
                by_group=by_group,
            )
        )
    tested = [a for a in drafts if a.comparison is not None]
    raw = [a.comparison.p_value for a in tested if a.comparison is not None]
    adjusted = stats.holm(raw) if policy.correction == "holm" else raw
    p_by_id = {a.hypothesis_id: p for a, p in zip(tested, adjusted, strict=True)}
    out = []
    for a in drafts:
        if a.comparison is None:
            out.append(
                a.model_copy(update={"verdict": "failed" if not a.treatment.usable else "inconclusive"})
            )
            continue
        p_adj = p_by_id[a.hypothesis_id]
        c = a.comparison
        v, why = stats.decide(
            c,
            p_adj,
            direction=objective.direction,
            alpha=policy.alpha,
            min_effect=policy.min_effect,
            seeds=(len(a.control.usable), len(a.treatment.usable)),
        )
        note = "; ".join(part for part in (a.note, why) if part)
        out.append(a.model_copy(update={"p_adjusted": p_adj, "verdict": v, "note": note}))
    return out


def reproduction_agrees(original: dict[str, float], fresh_estimate: float, pooled_estimate: float) -> bool:
    """Does a reproduction agree with the original analysis: the fresh seeds' estimate has
    its sign, and the estimate pooled over original and fresh seeds lies in its CI?"""
    return stats.reproduction_agrees(
        float(original["estimate"]),
        (float(original["ci_low"]), float(original["ci_high"])),
        fresh_estimate,
        pooled_estimate,
    )


def pooled_estimate(
    store: Any,
    control: Sequence[str],
    treatment: Sequence[str],
    objective: Objective,
    policy: ValidationPolicy,
) -> float | None:
    """The paired effect over the original and the reproduction runs together (trial ids
    of both arms, all seeds); None if the arms cannot be compared."""
    c = arm_data([store.trials.get(t) for t in control], objective)
    t = arm_data([store.trials.get(t) for t in treatment], objective)
    comparison = compare_arms(c, t, policy)
    return None if comparison is None else comparison.estimate


def split_breakdown(trials: Sequence[Trial], split: str = "test") -> dict[str, Any]:
    """Per metric: the mean over an arm's runs and cases, overall, per class and per site
    (DSC/NSD/HD95 for segmentation), from host-recomputed evaluations."""
    evals = [t.result.evaluations[split] for t in trials if t.result and split in t.result.evaluations]
    out: dict[str, Any] = {}
    if not evals:
        return out
    metrics = sorted({m for e in evals for case in e.cases for m in case.metrics})
    for metric in metrics:
        per_class: dict[str, list[float]] = {}
        per_site: dict[str, list[float]] = {}
        overall: list[float] = []
        for e in evals:
            for case in e.cases:
                values = {k: v for k, v in case.metrics.get(metric, {}).items() if v is not None}
                for name, value in values.items():
                    per_class.setdefault(name, []).append(value)
                if values:
                    fg = sum(values.values()) / len(values)
                    overall.append(fg)
                    if case.site is not None:
                        per_site.setdefault(case.site, []).append(fg)
        out[metric] = {
            "overall": sum(overall) / len(overall) if overall else None,
            "per_class": {k: sum(v) / len(v) for k, v in sorted(per_class.items())},
            "per_site": {k: sum(v) / len(v) for k, v in sorted(per_site.items())},
            "runs": len(evals),
        }
    return out


def sequential_levels(
    fractions: Sequence[float], alpha: float, spending: str = "obrien_fleming"
) -> list[float]:
    """Nominal levels of a group-sequential test's looks (see evaluation.stats)."""
    return stats.sequential_levels(fractions, alpha, spending)
