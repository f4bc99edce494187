"""Cost figures of a trial and the constraints an objective puts on them.

The host adds what it measured itself to the figures a job reports (`efficiency`): the
job's wall time, its GPUs, GPU-hours, job-hours (GPU-hours, or wall-hours for a CPU job)
and the cost per Dice point (job-hours / (100 x mean Dice)); a job cannot overwrite
these. Per-case inference time and peak memory are the job's own report (the host cannot
time cases inside a sandbox).

A constraint-violating trial is still data for the search; it never becomes the
incumbent (agents/decision_nodes.py asks `arm_violations`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medloop.core.records import CaseEvaluation, JobResult, SplitEvaluation, Trial, TrialResult
from medloop.core.specs import Objective

COST_METRIC = "cost_per_dice_point"
_MIN_DICE_POINTS = 1.0  # a case under 1 Dice point costs as if it had 1 (no division by zero)

HOST_FIGURES = ("job_wall_s", "gpus", "gpu_hours", "job_hours", COST_METRIC, "cost_unit")


def host_figures(job: JobResult, evaluation: SplitEvaluation | None) -> dict[str, Any]:
    """What the host measured about a finished job, and the cost per Dice point."""
    gpus = len(job.provenance.gpu_ids)
    hours = job.wall_s / 3600.0
    job_hours = hours * gpus if gpus else hours
    out: dict[str, Any] = {
        "job_wall_s": round(job.wall_s, 3),
        "gpus": gpus,
        "gpu_hours": hours * gpus,
        "job_hours": job_hours,
        "cost_unit": "GPU-hours per Dice point" if gpus else "CPU job-hours per Dice point",
    }
    dice = evaluation.summary.get("dice") if evaluation is not None else None
    if dice is not None and math.isfinite(dice):
        out[COST_METRIC] = job_hours / max(100.0 * dice, _MIN_DICE_POINTS)
    return out


def with_cost_per_case(evaluation: SplitEvaluation, job_hours: float) -> SplitEvaluation:
    """The evaluation with a per-case, per-class `cost_per_dice_point` (job-hours over the
    case's Dice points), so the cost can be an objective with paired per-case tests."""
    cases = []
    for case in evaluation.cases:
        dice = case.metrics.get("dice", {})
        cost = {
            name: (None if v is None else job_hours / max(100.0 * v, _MIN_DICE_POINTS))
            for name, v in dice.items()
        }
        cases.append(
            CaseEvaluation(
                case=case.case, site=case.site, metrics={**case.metrics, COST_METRIC: cost}, error=case.error
            )
        )
    summary = dict(evaluation.summary)
    if cases:
        means = []
        for case in cases:
            kept = [v for v in case.metrics[COST_METRIC].values() if v is not None]
            if kept:
                means.append(sum(kept) / len(kept))
        summary[COST_METRIC] = sum(means) / len(means) if means else None
    return evaluation.model_copy(update={"cases": cases, "summary": summary})


def figure(result: TrialResult, metric: str, *, split: str = "eval") -> float | None:
    """A trial's value of an efficiency figure, else of a recomputed metric's summary."""
    value = result.efficiency.get(metric)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    evaluation = result.evaluations.get(split)
    if evaluation is not None:
        summary = evaluation.summary.get(metric)
        if summary is not None:
            return float(summary)
    return None


def violations(result: TrialResult | None, objective: Objective) -> list[str]:
    """Every constraint of `objective` this trial breaks (a missing figure breaks it)."""
    if not objective.constraints:
        return []
    if result is None:
        return ["no result"]
    out = []
    for constraint in objective.constraints:
        why = constraint.violation(figure(result, constraint.metric))
        if why is not None:
            out.append(why)
    return out


def arm_violations(trials: Sequence[Trial], objective: Objective) -> list[str]:
    """Constraint breaches over the succeeded runs of an arm: a configuration becomes the
    incumbent only if every one of its runs meets every constraint."""
    out: list[str] = []
    for trial in trials:
        if trial.status != "succeeded":
            continue
        out.extend(f"{trial.id}: {why}" for why in violations(trial.result, objective))
    return out
