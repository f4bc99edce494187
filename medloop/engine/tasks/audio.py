"""Audio biomarkers (e.g. depression from speech): the job writes per-segment
probabilities for every evaluation recording under every noise condition; the host
aggregates them per subject and scores them against subject labels it kept.

Noisy copies (white, pink, babble at 20/10/5/0 dB) are mixed here, once per dataset
split, from a noise bank seeded by the split seed: every arm sees the same copies.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import AudioConfig, DatasetRef, Objective
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import ScoringContext, TaskFamily
from medloop.evaluation.audio import evaluate_audio_split, subject_scores
from medloop.experiments.dataset.audio_manifest import (
    build_audio_manifest,
    held_out_subjects,
    split_recordings,
    stage_audio_inputs,
)
from medloop.experiments.dataset.audio_noise import CONDITIONS, stage_noisy


def _segment_probs(text: str, where: str, path_subject: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    reader = csv.DictReader(io.StringIO(text))
    if not {"path", "prob"} <= set(reader.fieldnames or []):
        raise DatasetError(f"{where}: expected columns path,segment,prob")
    for line, row in enumerate(reader, start=2):
        subject = path_subject.get(row["path"] or "")
        if subject is None:
            raise DatasetError(f"{where} line {line}: {row['path']!r} is not a recording of this split")
        try:
            prob = float(row["prob"])
        except (TypeError, ValueError):
            raise DatasetError(f"{where} line {line}: prob {row['prob']!r} is not a number") from None
        if not 0.0 <= prob <= 1.0:
            raise DatasetError(f"{where} line {line}: prob {prob} outside [0, 1]")
        out[subject].append(prob)
    return dict(out)


class AudioFamily:
    name = "audio"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        if not (ref.path / "manifest.csv").is_file():
            raise DatasetError(
                f"{ref.path}: no manifest.csv", hint="see docs/audio.md for the audio dataset format"
            )
        manifest = build_audio_manifest(
            ref.path,
            eval_fraction=ref.eval_fraction,
            split_seed=ref.split_seed,
            method=ref.split,
            k=ref.folds,
            fold=ref.fold,
            site=ref.held_out_site,
        )
        staged = stage_audio_inputs(ref.path, manifest, staging_dir)
        for split, cases in (("eval", manifest.eval_cases), ("test", manifest.test_cases)):
            if cases:
                staged[f"noisy_{split}"] = stage_noisy(
                    staged[split], split, staging_dir, seed=ref.split_seed, conditions=CONDITIONS
                )
        recs = split_recordings(ref.path, manifest, "train")
        fingerprint = {
            "n_subjects": float(
                len(manifest.train_cases) + len(manifest.eval_cases) + len(manifest.test_cases)
            ),
            "n_train_recordings": float(len(recs)),
        }
        return PreparedDataset(ref.path.resolve(), manifest, staged, fingerprint)

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        return {}  # the noisy copies are staged with the dataset (the same for every arm)

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        return tuple(dict.fromkeys((objective.metric, "f1@clean", "f1@5db", "f1_auc")))

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        manifest = ctx.dataset.manifest
        if split == "test" and not manifest.test_cases:
            return None
        labels = held_out_subjects(ctx.dataset.path, manifest, split)
        path_subject = {
            f"audio/{r.path}": r.subject for r in split_recordings(ctx.dataset.path, manifest, split)
        }
        conditions = CONDITIONS if f"noisy_{split}" in ctx.dataset.staged else ("clean",)
        config = spec.config
        aggregation = config.aggregation if isinstance(config, AudioConfig) else "mean"
        scores: dict[str, dict[str, float]] = {}
        for cond in conditions:
            rel = f"predictions/{split}/{cond}.csv"
            try:  # no links, no FIFOs, size-capped (engine/outputs.py); UnsafeOutput fails the trial
                text = outputs.read_text(rel)
            except FileNotFoundError:
                if split == "eval":
                    raise DatasetError(f"the job wrote no {rel}") from None
                return None
            except UnicodeDecodeError:
                raise DatasetError(f"job output {rel} is not UTF-8 text") from None
            scores[cond] = subject_scores(_segment_probs(text, rel, path_subject), aggregation)
        return evaluate_audio_split(
            scores, labels, split=split, aggregation=aggregation, seed=spec.seed, sites=manifest.sites
        )

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        return None  # an audio job reports no metrics about itself


FAMILY: TaskFamily = AudioFamily()  # typed: mypy checks the family against the protocol
