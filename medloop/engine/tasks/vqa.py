"""Visual question answering: the job writes raw answers per item; the host extracts the
chosen option and scores accuracy overall and per category against answers it kept."""

from __future__ import annotations

from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective, VqaConfig
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import ScoringContext, TaskFamily
from medloop.evaluation.vqa import evaluate_split as evaluate_vqa_split
from medloop.experiments.vlm.manifest import (
    build_vqa_manifest,
    ensure_vqa_folder,
    stage_vqa_inputs,
    vqa_fingerprint,
)
from medloop.experiments.vlm.manifest import held_out_items as vqa_items


class VqaFamily:
    name = "vqa"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        """A VQA folder (or an nnU-Net dataset, converted once) split by case and staged
        with the answers of evaluation and test items left out."""
        root = ensure_vqa_folder(ref.path, staging_dir, seed=ref.split_seed)
        manifest = build_vqa_manifest(root, eval_fraction=ref.eval_fraction, split_seed=ref.split_seed)
        staged = stage_vqa_inputs(root, manifest, staging_dir)
        return PreparedDataset(root.resolve(), manifest, staged, vqa_fingerprint(root, manifest))

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        config = spec.config
        if isinstance(config, VqaConfig) and config.model_path != "tiny":
            # real weights are mounted read-only at /in/model
            return {"model": Path(config.model_path).expanduser().resolve()}
        return {}

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        return (objective.metric,)

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        """Host scoring of the job's raw answers (the path is fixed, never the job's word)."""
        if split == "test" and not spec.dataset.test_cases:
            return None
        name = f"predictions/{split}.jsonl"
        try:
            snapshot = outputs.file(name)
            if snapshot is None:
                raise DatasetError(f"{name}: predictions file not found")
            return evaluate_vqa_split(
                vqa_items(ctx.dataset.path, spec.dataset, split),
                snapshot,
                split=split,
                model=trial_id,
                report_path=ctx.workspace / "vqa_scores" / trial_id / f"{split}.json",
            )
        except DatasetError as exc:
            raise DatasetError(f"VQA predictions unusable: {exc.message}") from None

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        return None  # a VQA job reports no metrics about itself


FAMILY: TaskFamily = VqaFamily()  # typed: mypy checks the family against the protocol
