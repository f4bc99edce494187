"""Evaluation tools: score predictions on the host (evaluate_predictions) and test two
arms of trials against each other with paired statistics (compare_trials)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from medloop.core.errors import ConflictError, PermissionDenied, SpecError
from medloop.core.records import DatasetManifest, SplitEvaluation, Trial
from medloop.core.specs import Objective, ValidationPolicy
from medloop.engine.analysis import ArmData, arm_data, compare_arms
from medloop.engine.base import FINAL_STATUSES
from medloop.engine.outputs import OutputTree, UnsafeOutput
from medloop.evaluation import stats
from medloop.evaluation.metrics import HIGHER_IS_BETTER, evaluate_split
from medloop.experiments.dataset import held_out_labels, read_dataset
from medloop.tools.common import resolve_path
from medloop.tools.context import READ, TEST_SPLIT, ToolContext
from medloop.tools.datasets import EXAMPLE_DATASET
from medloop.tools.registry import ToolModel, tool

Metric = Literal["dice", "nsd", "hd95"]

# ---------------------------------------------------------------- evaluate_predictions


class EvaluateInput(ToolModel):
    predictions_dir: str | None = Field(
        default=None,
        description="Folder with one integer label map per case, named like the reference "
        "label ({case}.nii.gz); give dataset_path with it",
    )
    dataset_path: str | None = Field(
        default=None, description="The nnU-Net v2 raw dataset the labels come from"
    )
    split: Literal["train", "test"] = Field(
        default="train",
        description="References: labelsTr (train) or labelsTs (test: reviewers and admins only)",
    )
    trial_handle: str | None = Field(
        default=None,
        description="Instead of a folder: re-score a finished trial's evaluation-split predictions",
    )
    cases: list[str] | None = Field(
        default=None, description="Cases to score; default: every reference case that has a prediction file"
    )
    metrics: list[Metric] = Field(default_factory=lambda: list[Metric](["dice"]), min_length=1)
    empty_rule: Literal["both_empty_one", "both_empty_nan"] = Field(
        default="both_empty_one",
        description="Both masks empty: score 1 (FLARE rule) or skip the value (nnU-Net)",
    )
    nsd_tolerance_mm: dict[str, float] | None = Field(
        default=None,
        description="Per-class NSD tolerance in mm by label name (default: FLARE23 values, else 2)",
    )
    nsd_variant: Literal["surface_area", "voxel_count"] = Field(
        default="surface_area",
        description="NSD definition: surface_area (DeepMind surface-distance, challenge evaluations) "
        "or voxel_count (MONAI's default)",
    )
    include_cases: bool = Field(default=False, description="Return per-case values too")

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateInput:
        if (self.predictions_dir is None) == (self.trial_handle is None):
            raise ValueError("give exactly one of predictions_dir (with dataset_path) or trial_handle")
        if self.predictions_dir is not None and self.dataset_path is None:
            raise ValueError("predictions_dir needs dataset_path (the references come from it)")
        return self


class EvaluateOutput(ToolModel):
    split: str
    n_cases: int
    summary: dict[str, float | None] = Field(
        description="metric -> mean over cases of the foreground-class mean"
    )
    by_site: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    per_case: dict[str, dict[str, dict[str, float | None]]] | None = Field(
        default=None, description="case -> metric -> class -> value"
    )
    case_errors: dict[str, str] = Field(
        default_factory=dict, description="Cases whose prediction was missing or unreadable (scored worst)"
    )
    implementation: str = Field(description="Metric code and versions used")
    empty_rule: str
    settings: dict[str, object] = Field(
        default_factory=dict, description="NSD tolerances and variant, HD95 worst value"
    )


def _trial_dataset(ctx: ToolContext, trial: Trial) -> Path:
    return ctx.store.campaigns.get(trial.campaign_id).spec.dataset.path


@tool(
    name="evaluate_predictions",
    roles=READ,
    read_only=True,
    example={
        "predictions_dir": "/work/predictions/fold0",
        "dataset_path": EXAMPLE_DATASET,
        "metrics": ["dice", "nsd", "hd95"],
    },
)
def evaluate_predictions(ctx: ToolContext, args: EvaluateInput) -> EvaluateOutput:
    """Score segmentation predictions against reference labels on the host.

    Per case and foreground class: Dice, normalised surface Dice (NSD, tolerance in mm)
    and HD95 in mm (MONAI's implementation, spacing from the label headers). A missing,
    unreadable or wrong-shape prediction scores the worst values and is listed in
    case_errors. Either point at a folder of predictions, or re-score a finished trial
    (e.g. with NSD and HD95, which trials do not compute by default).

    Use when: you produced predictions yourself and want medloop's metrics on them, or
    want more metrics for a trial.
    Cost: about 35 ms per case for Dice, ~100 ms more per case for NSD/HD95 on a 128^3
    volume with 3 classes; no GPU.
    Limits: labelsTs (split test) only for reviewers and admins: the test split is touched
    once per campaign, not searched on. Predictions must match the reference geometry.
    """
    with contextlib.ExitStack() as stack:
        return _evaluate(ctx, args, stack)


def _evaluate(ctx: ToolContext, args: EvaluateInput, stack: contextlib.ExitStack) -> EvaluateOutput:
    if args.trial_handle is not None:
        trial = ctx.store.trials.get(args.trial_handle)
        if trial.status not in FINAL_STATUSES or trial.result is None or trial.result.job is None:
            raise ConflictError(
                f"trial {trial.id} has no predictions to score ({trial.status})",
                hint="wait for it with trial_status; failed trials have no predictions",
            )
        dataset = resolve_path(ctx, str(_trial_dataset(ctx, trial)), what="trial dataset")
        # The job wrote that folder: score a private snapshot, never a link out of it.
        outputs = stack.enter_context(OutputTree(trial.result.job.out_dir, ctx.workspace / "scratch"))
        try:
            pred_dir = outputs.folder("predictions/eval") or outputs.empty_folder()
        except UnsafeOutput as exc:
            raise ConflictError(f"trial {trial.id}: {exc.message}") from None
        refs = held_out_labels(dataset, trial.spec.dataset, "eval")
        labels, sites, split = trial.spec.dataset.labels, trial.spec.dataset.sites, "eval"
    else:
        assert args.predictions_dir is not None and args.dataset_path is not None
        if args.split == "test" and ctx.caller.role not in TEST_SPLIT:
            raise PermissionDenied(
                f"scoring on the test split needs role {' or '.join(TEST_SPLIT)}; {ctx.caller.name} acts as "
                f"{ctx.caller.role}",
                hint="score on split train (cases you held out yourself), or on a trial's evaluation split",
            )
        pred_dir = resolve_path(ctx, args.predictions_dir, what="predictions_dir")
        ds = read_dataset(resolve_path(ctx, args.dataset_path, what="dataset_path"))
        refs = {
            c.id: c.label for c in (ds.training if args.split == "train" else ds.test) if c.label is not None
        }
        labels, sites, split = ds.labels, ds.sites, args.split
    if args.cases is not None:
        unknown = sorted(set(args.cases) - set(refs))
        if unknown:
            raise SpecError(
                f"evaluate_predictions: cases without a reference label in split {split}: {', '.join(unknown[:5])}",
                hint=f"{len(refs)} cases have one, e.g. {', '.join(sorted(refs)[:3])}",
            )
        refs = {c: refs[c] for c in args.cases}
    elif args.trial_handle is None:
        refs = {c: p for c, p in refs.items() if (pred_dir / p.name).is_file()}
        if not refs:
            raise SpecError(
                f"evaluate_predictions: no file in {pred_dir} is named like a {split} reference label",
                hint="name each prediction like its reference, e.g. case_001.nii.gz",
            )
    ev: SplitEvaluation = evaluate_split(
        pred_dir,
        refs,
        labels=labels,
        sites=sites,
        split=split,
        metrics=tuple(dict.fromkeys(args.metrics)),
        empty_rule=args.empty_rule,
        tolerances=args.nsd_tolerance_mm,
        nsd_variant=args.nsd_variant,
    )
    return EvaluateOutput(
        split=split,
        n_cases=len(ev.cases),
        summary=ev.summary,
        by_site=ev.by_site,
        per_case={c.case: c.metrics for c in ev.cases} if args.include_cases else None,
        case_errors={c.case: c.error for c in ev.cases if c.error},
        implementation=ev.implementation,
        empty_rule=ev.empty_rule,
        settings=ev.settings,
    )


# ---------------------------------------------------------------- compare_trials


class CompareInput(ToolModel):
    control: list[str] = Field(
        min_length=1, max_length=50, description="Handles of the control arm (one per seed)"
    )
    treatment: list[str] = Field(min_length=1, max_length=50, description="Handles of the treatment arm")
    split: Literal["eval", "test"] = Field(default="eval", description="test: reviewers and admins only")
    metric: Metric = "dice"
    test: Literal["wilcoxon", "permutation"] = "wilcoxon"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_effect: float = Field(
        default=0.0, ge=0, description="Smallest improvement that counts (pre-registered)"
    )
    resamples: int = Field(default=10_000, ge=1000, le=200_000, description="Bootstrap resamples for the CI")
    seed: int = 0


class ArmSummary(ToolModel):
    trials: list[str]
    usable: list[str] = Field(description="Finished, untampered trials scored on this split")
    excluded: dict[str, str] = Field(default_factory=dict, description="handle -> why it was left out")
    seeds: list[int]
    objective: float | None = Field(description="Mean over usable trials of the mean per-case metric")


class CompareOutput(ToolModel):
    metric: str
    direction: Literal["maximize", "minimize"]
    control: ArmSummary
    treatment: ArmSummary
    comparison: stats.PairedComparison | None = Field(
        description="estimate = mean paired difference treatment - control over cases; CI; p-values"
    )
    verdict: Literal["supported", "refuted", "inconclusive"]
    interpretation: str


def _arm(
    ctx: ToolContext, handles: list[str], objective: Objective, split: str
) -> tuple[ArmSummary, ArmData, list[Trial]]:
    trials = [ctx.store.trials.get(h) for h in handles]
    data = arm_data(trials, objective, split=split)
    excluded = {}
    for t in trials:
        if t.id in data.usable:
            continue
        if t.status != "succeeded":
            excluded[t.id] = f"status {t.status}"
        else:
            excluded[t.id] = f"not scored on split {split}"
    summary = ArmSummary(
        trials=handles, usable=data.usable, excluded=excluded, seeds=data.seeds, objective=data.objective
    )
    return summary, data, trials


def _same_split(manifests: list[DatasetManifest], split: str) -> None:
    def key(m: DatasetManifest) -> tuple[str, tuple[str, ...]]:
        return m.checksum, tuple(m.eval_cases if split == "eval" else m.test_cases)

    if len({key(m) for m in manifests}) > 1:
        raise SpecError(
            f"compare_trials: the trials were not evaluated on the same dataset and {split} cases",
            hint="compare trials submitted with the same dataset_path, eval_fraction and split_seed",
        )


@tool(
    name="compare_trials",
    roles=READ,
    read_only=True,
    example={
        "control": ["trl_control_seed0", "trl_control_seed1", "trl_control_seed2"],
        "treatment": ["trl_treatment_seed0", "trl_treatment_seed1", "trl_treatment_seed2"],
        "min_effect": 0.005,
    },
)
def compare_trials(ctx: ToolContext, args: CompareInput) -> CompareOutput:
    """Test whether a treatment arm beats a control arm, case by case, with statistics.

    Per-case metric values are averaged over seeds within each arm, then the arms are
    compared on the cases they share: a paired Wilcoxon signed-rank (or sign-flip
    permutation) test, a paired bootstrap CI of the mean difference, and with two or more
    seeds per arm also a run-level t-test (the larger p-value is reported). The verdict
    applies the pre-registered rule: supported needs significance, an improvement of at
    least min_effect and a CI that excludes zero. With fewer than two usable seeds in an
    arm the run-level test cannot run and the verdict is inconclusive (the reason says so).

    Use when: you ran the same seeds on two configurations (run_trial) and want to know if
    the difference is real. Three or more seeds per arm are advised.
    Cost: milliseconds to a second (bootstrap resamples). No GPU.
    Limits: no multiple-testing correction across separate calls (apply Holm yourself when
    testing several hypotheses); failed or tampered trials are left out and listed.
    """
    if args.split == "test" and ctx.caller.role not in TEST_SPLIT:
        raise PermissionDenied(
            f"comparing on the test split needs role {' or '.join(TEST_SPLIT)}; {ctx.caller.name} acts as "
            f"{ctx.caller.role}",
            hint="compare on split eval (the split searches use)",
        )
    direction: Literal["maximize", "minimize"] = "maximize" if HIGHER_IS_BETTER[args.metric] else "minimize"
    objective = Objective(metric=args.metric, direction=direction)
    control, c_data, c_trials = _arm(ctx, args.control, objective, args.split)
    treatment, t_data, t_trials = _arm(ctx, args.treatment, objective, args.split)
    overlap = sorted(set(args.control) & set(args.treatment))
    if overlap:
        raise SpecError(f"compare_trials: handles in both arms: {', '.join(overlap[:5])}")
    _same_split([t.spec.dataset for t in (*c_trials, *t_trials)], args.split)
    policy = ValidationPolicy(
        test=args.test, alpha=args.alpha, min_effect=args.min_effect, bootstrap_resamples=args.resamples
    )
    comparison = compare_arms(c_data, t_data, policy, seed=args.seed)
    if comparison is None or comparison.n_cases == 0:
        return CompareOutput(
            metric=args.metric,
            direction=direction,
            control=control,
            treatment=treatment,
            comparison=None,
            verdict="inconclusive",
            interpretation="nothing to compare: an arm has no usable trial scored with this metric on this split",
        )
    verdict, why = stats.decide(
        comparison,
        comparison.p_value,
        direction=direction,
        alpha=args.alpha,
        min_effect=args.min_effect,
        seeds=(len(control.seeds), len(treatment.seeds)),
    )
    text = (
        f"treatment - control = {comparison.estimate:+.4f} {args.metric} "
        f"({comparison.ci_level:.0%} CI {comparison.ci_low:+.4f} to {comparison.ci_high:+.4f}, p = {comparison.p_value:.3g}, "
        f"{comparison.n_cases} cases, {len(treatment.seeds)} vs {len(control.seeds)} seeds): {verdict}"
        + (f" ({why})" if why else "")
    )
    return CompareOutput(
        metric=args.metric,
        direction=direction,
        control=control,
        treatment=treatment,
        comparison=comparison,
        verdict=verdict,
        interpretation=text,
    )
