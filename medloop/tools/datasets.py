"""Dataset tools: check an nnU-Net v2 raw dataset, fingerprint it, plan its baseline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medloop.core.errors import DatasetError
from medloop.experiments.dataset import dataset_checksum, fingerprint_summary, read_dataset
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

    Reads dataset.json, imagesTr/labelsTr (and imagesTs/labelsTs, sites.json) and reports
    what stops training, naming the case and file: missing channels or labels, labels
    without images, a numTraining that disagrees with the files. A problem is data in
    the result (`ok` false), not a failed call.

    Use when: before fingerprinting, planning or training on a dataset you have not used
    yet, or after a trial failed with a dataset error.
    Cost: reads file names and headers; about a second for hundreds of cases. No GPU.
    Limits: the folder must be readable by the tool server (and inside its data roots).
    """
    path = resolve_path(ctx, args.path, what="path")
    try:
        ds = read_dataset(path)
    except DatasetError as exc:
        return DatasetCheckOutput(
            ok=False,
            path=str(path),
            problems=[DatasetProblem(severity="error", code="structure", message=str(exc))],
            next_step="fix the problem in the dataset folder and call dataset_check again",
        )
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
        next_step="dataset_fingerprint describes its geometry and intensities; run_trial trains on it",
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
