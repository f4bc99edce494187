"""The metrics each task family's host scoring recomputes, with the better direction, and
the efficiency figures a trial records (the catalogue `core/specs.py` validates against)."""

from __future__ import annotations

from medloop.core.spec_base import Direction

# Metrics a campaign can optimise, per task, with the direction that is better. The host
# recomputes exactly these from raw predictions (a typo must not become an empty campaign).
# Audio: subject-level metrics at one noise level (`f1@5db`, pooled over the noise kinds)
# or the normalised area under the robustness curve over all levels (`f1_auc`).
AUDIO_BASE_METRICS = ("accuracy", "precision", "recall", "f1", "auroc")
AUDIO_SNRS = ("clean", "20db", "10db", "5db", "0db")
METRICS: dict[str, dict[str, Direction]] = {
    "segmentation": {
        "dice": "maximize",
        "nsd": "maximize",
        "hd95": "minimize",
        # the trial's accelerator-hours (CPU job-hours without a GPU) per Dice point, per case
        "cost_per_dice_point": "minimize",
    },
    # pre-training is scored by the downstream segmentation of its short fine-tune
    "pretrain": {"dice": "maximize", "nsd": "maximize", "hd95": "minimize"},
    "audio": {
        **{f"{m}@{snr}": "maximize" for m in AUDIO_BASE_METRICS for snr in AUDIO_SNRS},
        **{f"{m}_auc": "maximize" for m in AUDIO_BASE_METRICS},
    },
    # Interactive: Dice after k simulated clicks; clicks needed to reach a Dice (capped).
    "promptable": {
        **{f"dice@{k}": "maximize" for k in (1, 3, 5, 10)},
        **{f"noc@{t}": "minimize" for t in (80, 85, 90)},
    },
    # patient-level, from per-case probabilities (evaluation/classification.py)
    "classification": {"auroc": "maximize", "accuracy": "maximize", "balanced_accuracy": "maximize"},
}


# Figures every trial records in `TrialResult.efficiency` that a constraint may bound
# (host-measured: gpu_hours, job_hours, cost_per_dice_point; the rest reported by the job).
EFFICIENCY_FIGURES = (
    "inference_s_per_case",
    "inference_s_per_case_max",
    "peak_memory_mb",
    "peak_inference_memory_mb",
    "train_seconds",
    "parameters",
    "flops_per_patch",
    "gpu_hours",
    "job_hours",
    "cost_per_dice_point",
)
