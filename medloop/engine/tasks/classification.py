"""Volume-level classification (3D images, labels from labels.csv): the job writes one
probability per evaluation case; the host averages them per patient and scores AUROC,
accuracy and balanced accuracy with bootstrap CIs over patients against labels the job
never saw (eval/test labels stay in labels.csv on the host)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import ScoringContext, TaskFamily
from medloop.evaluation.classification import METRICS, evaluate_classification_split
from medloop.experiments.dataset.cls_manifest import (
    LABELS_CSV,
    build_cls_manifest,
    held_out_cls_labels,
    stage_cls_inputs,
)


def parse_case_probs(text: str, where: str, cases: set[str]) -> dict[str, float]:
    """`case,prob` rows of a job's prediction file; DatasetError naming the line otherwise."""
    reader = csv.DictReader(io.StringIO(text))
    if not {"case", "prob"} <= set(reader.fieldnames or []):
        raise DatasetError(f"{where}: expected columns case,prob")
    out: dict[str, float] = {}
    for line, row in enumerate(reader, start=2):
        case = row.get("case") or ""
        if case not in cases:
            raise DatasetError(f"{where} line {line}: {case!r} is not a case of this split")
        if case in out:
            raise DatasetError(f"{where} line {line}: case {case} is listed twice")
        try:
            prob = float(row.get("prob") or "")
        except ValueError:
            raise DatasetError(f"{where} line {line}: prob {row.get('prob')!r} is not a number") from None
        if not (math.isfinite(prob) and 0.0 <= prob <= 1.0):
            raise DatasetError(f"{where} line {line}: prob {prob} outside [0, 1]")
        out[case] = prob
    return out


class ClassificationFamily:
    name = "classification"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        if not (ref.path / LABELS_CSV).is_file():
            raise DatasetError(
                f"{ref.path}: no {LABELS_CSV}", hint="see docs/classification.md for the dataset format"
            )
        manifest = build_cls_manifest(
            ref.path,
            eval_fraction=ref.eval_fraction,
            split_seed=ref.split_seed,
            method=ref.split,
            k=ref.folds,
            fold=ref.fold,
            site=ref.held_out_site,
        )
        staged = stage_cls_inputs(ref.path, manifest, staging_dir)
        fingerprint = {
            "n_train_cases": float(len(manifest.train_cases)),
            "n_eval_cases": float(len(manifest.eval_cases)),
            "n_channels": float(len(manifest.channel_names)),
        }
        return PreparedDataset(ref.path.resolve(), manifest, staged, fingerprint)

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        return {}

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        return tuple(dict.fromkeys((objective.metric, *METRICS)))

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        manifest = ctx.dataset.manifest
        if split == "test" and not manifest.test_cases:
            return None
        labels, patients = held_out_cls_labels(ctx.dataset.path, manifest, split)
        rel = f"predictions/{split}.csv"
        try:  # no links, no FIFOs, size-capped (engine/outputs.py); UnsafeOutput fails the trial
            text = outputs.read_text(rel)
        except FileNotFoundError:
            if split == "eval":
                raise DatasetError(f"the job wrote no {rel}") from None
            return None
        except UnicodeDecodeError:
            raise DatasetError(f"job output {rel} is not UTF-8 text") from None
        probs = parse_case_probs(text, rel, set(labels))
        return evaluate_classification_split(
            probs, labels, patients, split=split, seed=spec.seed, sites=manifest.sites
        )

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        return None  # a classification job reports no metrics about itself


FAMILY: TaskFamily = ClassificationFamily()  # typed: mypy checks the family against the protocol
