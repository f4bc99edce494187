"""Dataset tools: check an nnU-Net v2 raw dataset, fingerprint it, plan its baseline."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medloop.core.specs import TrialConfig, make_config
from medloop.experiments.dataset import dataset_checksum, fingerprint_summary, read_dataset
from medloop.experiments.dataset.checks import check_dataset
from medloop.experiments.dataset.plans import DEFAULT_MEMORY_MB, load_or_make_plans, plan_baseline
from medloop.tools.common import resolve_path
from medloop.tools.context import READ, ToolContext
from medloop.tools.registry import ToolModel, tool

EXAMPLE_DATASET = "/data/nnUNet_raw/Dataset901_Phantom"


class DatasetPath(ToolModel):
    path: str = Field(
        description="Absolute path of an nnU-Net v2 raw dataset folder (the one holding dataset.json)",
        min_length=1,
    )


class DatasetProblem(ToolModel):
    severity: Literal["error", "warning"]
    code: str = Field(description="Stable problem kind, e.g. missing_label, geometry_mismatch")
    message: str
    case: str | None = None
    file: str | None = Field(default=None, description="Path relative to the dataset folder")


class DatasetCheckOutput(ToolModel):
    ok: bool = Field(description="True when nothing stops training (warnings may remain)")
    path: str
    name: str | None = None
    n_training: int = 0
    n_test: int = 0
    channels: dict[str, str] = Field(default_factory=dict, description="channel index -> modality name")
    labels: dict[str, int] = Field(default_factory=dict, description="label name -> value (background 0)")
    sites: list[str] = Field(default_factory=list, description="Sites named in sites.json")
    checksum: str | None = Field(default=None, description="sha256 of the dataset's files (its identity)")
    problems: list[DatasetProblem] = Field(default_factory=list)
    next_step: str


@tool(
    name="dataset_check",
    roles=READ,
    read_only=True,
    example={"path": EXAMPLE_DATASET},
)
def dataset_check(ctx: ToolContext, args: DatasetPath) -> DatasetCheckOutput:
    """Check that a folder is a usable nnU-Net v2 raw dataset and describe it.

    Runs the integrity checks nnU-Net's --verify_dataset_integrity runs, and a few more,
    and reports every problem (not just the first), each naming the case and file:
    missing channel or label files, labels without images, geometry that differs within
    a case, label values outside dataset.json, NaN/Inf voxels, duplicate case ids, a
    wrong numTraining; warnings for empty label maps and sites.json mismatches. A problem
    is data in the result (`ok` false), not a failed call.

    Use when: before fingerprinting, planning or training on a dataset you have not used
    yet, or after a trial failed with a dataset error.
    Cost: reads every image and label once (parallel); seconds for small 2D data, minutes
    for hundreds of 3D CT volumes. No GPU.
    Limits: the folder must be readable by the tool server (and inside its data roots).
    """
    path = resolve_path(ctx, args.path, what="path")
    report = check_dataset(path)
    problems = [
        DatasetProblem(severity=p.severity, code=p.code, message=p.message, case=p.case, file=p.file)
        for p in report.problems
    ]
    if not report.ok:
        return DatasetCheckOutput(
            ok=False,
            path=str(path),
            n_training=report.n_training,
            n_test=report.n_test,
            problems=problems,
            next_step="fix the errors in the dataset folder and call dataset_check again",
        )
    ds = read_dataset(path)
    return DatasetCheckOutput(
        ok=True,
        path=str(path),
        name=ds.name,
        n_training=len(ds.training),
        n_test=len(ds.test),
        channels=ds.channel_names,
        labels=ds.labels,
        sites=sorted(set(ds.sites.values())),
        checksum=dataset_checksum(path),
        problems=problems,
        next_step="dataset_fingerprint describes it, plan_baseline configures a baseline, run_trial trains",
    )


class FingerprintOutput(ToolModel):
    path: str
    name: str
    checksum: str
    fingerprint: dict[str, float] = Field(
        description="n_cases, n_test_cases, n_classes, n_channels, n_sites, is_3d, fg_fraction, "
        "intensity_mean/std/p005/p995 (channel 0 foreground), shape_0..2 (median voxels), "
        "spacing_0..2 (median mm)"
    )


@tool(
    name="dataset_fingerprint",
    roles=READ,
    read_only=True,
    example={"path": EXAMPLE_DATASET},
)
def dataset_fingerprint(ctx: ToolContext, args: DatasetPath) -> FingerprintOutput:
    """Compute a dataset's fingerprint: sizes, geometry, classes and intensity statistics.

    The same numbers the knowledge base compares datasets by: claims learned on a dataset
    with a similar fingerprint rank higher in search_knowledge. Values are floats with
    stable keys (axis keys padded to three axes).

    Use when: describing a dataset before choosing a trial configuration, or to judge
    whether a claim from another dataset is likely to transfer.
    Cost: headers of every training case plus the voxels of up to 40 cases; seconds for
    small 2D data, up to a minute for large 3D CT. No GPU.
    Limits: training cases need labels (foreground intensities are sampled under them).
    """
    path = resolve_path(ctx, args.path, what="path")
    ds = read_dataset(path)
    return FingerprintOutput(
        path=str(path), name=ds.name, checksum=dataset_checksum(path), fingerprint=fingerprint_summary(path)
    )


class PlanInput(DatasetPath):
    memory_mb: float = Field(
        default=DEFAULT_MEMORY_MB,
        ge=256,
        le=1_000_000,
        description="GPU memory the plan may use per training job, in MB (nnU-Net plans for about 8000)",
    )


class PlanOutput(ToolModel):
    path: str
    baseline_config: TrialConfig = Field(
        description="The planned baseline as a trial config: pass it to run_trial as trial_config"
    )
    configuration: str = Field(description="The configuration chosen: 2d or 3d_fullres")
    configurations: dict[str, dict[str, Any]] = Field(
        description="Each candidate: patch_size, batch_size, base_features, depth, target_spacing (mm), "
        "estimated_memory_mb"
    )
    normalization: dict[str, str] = Field(description="channel -> ct (clip + z-score) or zscore")
    median_shape: list[float]
    median_spacing: list[float]
    memory_budget_mb: float


@tool(
    name="plan_baseline",
    roles=READ,
    read_only=True,
    example={"path": EXAMPLE_DATASET, "memory_mb": 8000},
)
def plan_baseline_tool(ctx: ToolContext, args: PlanInput) -> PlanOutput:
    """Plan an nnU-Net-style baseline configuration for a dataset from its fingerprint.

    Applies nnU-Net's rules: target spacing = median spacing (10th percentile on a much
    coarser axis), 2D or 3D by geometry, a patch that starts at the median resampled
    shape and shrinks until a memory estimate fits the budget, batch size >= 2 and at
    most 5% of the dataset's voxels per batch, features from 32 capped at 320 (3D); a
    DynUNet with Dice+CE and SGD (lr 0.01, Nesterov 0.99, poly schedule) and nnU-Net
    augmentation. The result is a complete trial config.

    Use when: you need a strong, standard starting configuration for a new dataset
    before testing changes against it (use it as the control arm of run_trial).
    Cost: the fingerprint (headers of every case, voxels of up to 60); seconds to a
    minute. The plans are cached beside the dataset (medloop_plans.json, not part of its
    checksum) when the folder is writable. No GPU.
    Limits: segmentation datasets in nnU-Net v2 raw format.
    """
    path = resolve_path(ctx, args.path, what="path")
    values = plan_baseline(path, memory_mb=args.memory_mb)
    plans = load_or_make_plans(path, memory_mb=args.memory_mb)
    fp = plans["fingerprint"]
    return PlanOutput(
        path=str(path),
        baseline_config=make_config("segmentation", dict(values)),
        configuration=plans["default"],
        configurations=plans["configurations"],
        normalization=plans["normalization"],
        median_shape=[float(v) for v in fp["median_shape"]],
        median_spacing=[float(v) for v in fp["median_spacing"]],
        memory_budget_mb=float(plans["memory_budget_mb"]),
    )
