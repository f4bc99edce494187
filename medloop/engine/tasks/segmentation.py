"""Segmentation (nnU-Net v2 raw datasets): label maps per case, scored with DSC, NSD and
HD95 in mm per case, class and site against labels the job never saw."""

from __future__ import annotations

import math
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import ScoringContext, TaskFamily
from medloop.evaluation.metrics import evaluate_split, tamper_gap
from medloop.experiments.dataset import build_manifest, fingerprint_summary, held_out_labels, stage_inputs


class SegmentationFamily:
    name = "segmentation"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        if not (ref.path / "dataset.json").is_file():
            raise DatasetError(f"{ref.path}: no dataset.json", hint="is this an nnU-Net raw dataset?")
        manifest = build_manifest(
            ref.path,
            eval_fraction=ref.eval_fraction,
            split_seed=ref.split_seed,
            method=ref.split,
            k=ref.folds,
            fold=ref.fold,
            site=ref.held_out_site,
        )
        staged = stage_inputs(ref.path, manifest, staging_dir)
        return PreparedDataset(ref.path.resolve(), manifest, staged, fingerprint_summary(ref.path))

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        return {}

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        """DSC, NSD and HD95 (mm), per case, class and site: what challenges report and
        what the objective may name."""
        derived = ("cost_per_dice_point",)  # from Dice and the job's hours (engine/efficiency.py)
        return tuple(m for m in dict.fromkeys(("dice", "nsd", "hd95", objective.metric)) if m not in derived)

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        labels = held_out_labels(ctx.dataset.path, spec.dataset, split)
        snapshot = outputs.folder(f"predictions/{split}")
        if split != "eval" and (not labels or snapshot is None):
            return None
        return evaluate_split(
            snapshot or outputs.empty_folder(),
            labels,
            labels=spec.dataset.labels,
            sites=spec.dataset.sites,
            split=split,
            metrics=self.metrics(ctx.objective),
        )

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        """Internal-validation metrics the job reported, recomputed on its own train cases."""
        dataset = ctx.dataset
        train_cases = set(dataset.manifest.train_cases)
        worst = 0.0
        for reported in outcome.reported:
            cases = set(reported.per_case)
            if not cases <= train_cases or reported.split not in outcome.predictions:
                return math.inf  # claims metrics on cases whose labels it never had
            labels = held_out_labels(dataset.path, dataset.manifest, "train")
            recomputed = evaluate_split(
                outputs.folder(f"predictions/{reported.split}") or outputs.empty_folder(),
                {case: labels[case] for case in cases},
                labels=dataset.manifest.labels,
                sites=dataset.manifest.sites,
                split=reported.split,
                metrics=(reported.metric,),
            )
            worst = max(worst, tamper_gap(reported, recomputed))
        return worst


FAMILY: TaskFamily = SegmentationFamily()  # typed: mypy checks the family against the protocol
