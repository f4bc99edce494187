"""Self-supervised pre-training (`task: pretrain`): the job pre-trains on unlabelled
volumes, then fine-tunes briefly on the labelled share of the training cases and predicts
the evaluation images. Pre-training has no labels to score, so the host scores what it can
recompute: the downstream segmentation (Dice, NSD, HD95 against labels the job never saw,
exactly as for segmentation). Besides, it checks the pre-trained checkpoint's provenance
against what it gave the job (method, seed, data checksum, weights digest) and that the
job recorded its pseudo-mask time; the checkpoint's sha256 is recorded with the scores so
a later `init: trial:<id>` can refuse a file changed since. The self-supervised loss curve
is informational (pretrain_curves.json). See docs/pretrain.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medloop.core.errors import DatasetError
from medloop.core.records import JobOutcome, SplitEvaluation, TrialSpec
from medloop.core.specs import DatasetRef, Objective, PretrainConfig
from medloop.engine.base import PreparedDataset
from medloop.engine.outputs import OutputTree
from medloop.engine.tasks.base import ScoringContext, TaskFamily
from medloop.engine.tasks.segmentation import FAMILY as SEGMENTATION
from medloop.experiments.dataset.pretrained import data_checksum, file_sha256, folder_checksum, provenance

CHECKPOINT = "checkpoints/pretrained.safetensors"
SETTINGS_KEY = "pretrained_checkpoint"  # in the eval SplitEvaluation's settings


def unlabelled_folder(config: PretrainConfig) -> Path | None:
    if config.unlabelled == "none":
        return None
    folder = Path(config.unlabelled).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"unlabelled: {folder} is not a folder")
    return folder.resolve()


def check_checkpoint(ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree) -> dict[str, Any]:
    """The pre-trained checkpoint, checked against what the host gave the job; what is
    recorded with the trial. DatasetError (the trial fails) on any disagreement."""
    config = spec.config_as(PretrainConfig)
    copy = outputs.file(CHECKPOINT)
    if copy is None:
        raise DatasetError(f"the pre-training job wrote no {CHECKPOINT}")
    prov = provenance(copy)  # also: weights match their digest
    if prov is None:
        raise DatasetError(f"{CHECKPOINT} carries no provenance block")
    folder = unlabelled_folder(config)
    expected = data_checksum(
        spec.dataset.checksum, folder_checksum(folder, spec.dataset.file_ending) if folder else None
    )
    for key, want in (("method", config.method), ("seed", spec.seed), ("data_checksum", expected)):
        if prov[key] != want:
            raise DatasetError(f"{CHECKPOINT}: provenance {key} is {prov[key]!r}, the host expected {want!r}")
    return {**prov, "sha256": file_sha256(copy), "path": CHECKPOINT}


class PretrainFamily:
    name = "pretrain"

    def prepare(self, ref: DatasetRef, staging_dir: Path) -> PreparedDataset:
        return SEGMENTATION.prepare(ref, staging_dir)

    def extra_inputs(self, spec: TrialSpec) -> dict[str, Path]:
        folder = unlabelled_folder(spec.config_as(PretrainConfig))
        return {"unlabelled": folder} if folder is not None else {}

    def metrics(self, objective: Objective) -> tuple[str, ...]:
        return SEGMENTATION.metrics(objective)

    def score(
        self, ctx: ScoringContext, trial_id: str, spec: TrialSpec, outputs: OutputTree, split: str
    ) -> SplitEvaluation | None:
        evaluation = SEGMENTATION.score(ctx, trial_id, spec, outputs, split)
        config = spec.config_as(PretrainConfig)
        if evaluation is None or split != "eval" or config.method == "none":
            return evaluation
        record = check_checkpoint(ctx, spec, outputs)
        if config.method == "s2uniseg":
            record["pseudo_mask"] = _pseudo_mask_timing(outputs)
        return evaluation.model_copy(update={"settings": {**evaluation.settings, SETTINGS_KEY: record}})

    def tamper_gap(
        self, ctx: ScoringContext, spec: TrialSpec, outputs: OutputTree, outcome: JobOutcome
    ) -> float | None:
        return SEGMENTATION.tamper_gap(ctx, spec, outputs, outcome)


def _pseudo_mask_timing(outputs: OutputTree) -> dict[str, float]:
    """The job's pseudo-mask timing (it cannot be recomputed on the host): present, finite
    and positive, or the trial fails."""
    import json

    try:
        efficiency = json.loads(outputs.read_text("result.json")).get("efficiency", {})
    except (OSError, ValueError):
        efficiency = {}
    found = {
        k: float(v)
        for k, v in efficiency.items()
        if k.startswith("pseudo_mask_ms_per_") and isinstance(v, int | float) and not isinstance(v, bool)
    }
    if not found or not all(math.isfinite(v) and v > 0 for v in found.values()):
        raise DatasetError("the s2uniseg job recorded no valid pseudo-mask time (pseudo_mask_ms_per_*)")
    return found


def registered_checkpoint(evaluation: SplitEvaluation | None) -> dict[str, Any] | None:
    """What the host recorded about a pre-training trial's checkpoint (None if nothing)."""
    if evaluation is None:
        return None
    found = evaluation.settings.get(SETTINGS_KEY)
    return found if isinstance(found, dict) else None


FAMILY: TaskFamily = PretrainFamily()


def verify_init(path: Path, config: Any, *, in_channels: int) -> None:
    """Before a trial starts from `path` (`init:`): a checkpoint that carries medloop's
    pre-training provenance must still match its weights digest and come from the network
    the trial builds; DatasetError otherwise. Plain checkpoints pass unchanged."""
    from medloop.experiments.dataset.pretrained import check_compatible

    prov = provenance(path)
    if prov is None:
        return
    network = {
        "model": getattr(config, "model", None),
        "spatial_dims": getattr(config, "spatial_dims", None),
        "in_channels": in_channels,
        "base_features": getattr(config, "base_features", None),
        "depth": getattr(config, "depth", None),
        "res_units": getattr(config, "res_units", None),
    }
    check_compatible(path, prov, {k: v for k, v in network.items() if v is not None})


def check_registered(evaluation: SplitEvaluation | None, copy: Path, trial_id: str) -> None:
    """A pre-training trial's checkpoint must be the file the host registered when it
    scored the trial (its sha256); DatasetError when it changed since."""
    record = registered_checkpoint(evaluation)
    if record is None:
        return
    if file_sha256(copy) != record.get("sha256"):
        raise DatasetError(
            f"init: the checkpoint of trial {trial_id} changed after the host registered it; refusing it",
            hint="re-run the pre-training trial",
        )
