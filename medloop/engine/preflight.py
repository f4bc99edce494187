"""Everything a campaign needs from its inputs, checked before any record or file is written.

`medloop campaign run`, the API and the tools call `check_inputs` first, so a dataset with an
unreadable case or a split naming a site that does not exist is one line naming the file or
key, not a `failed` campaign row, a workspace and staged files (README: "validate fully
before any record"). Reading every case header costs about 5 ms per case.
"""

from __future__ import annotations

from medloop.core.errors import DatasetError, SpecError
from medloop.core.extras import installed, missing
from medloop.core.specs import CampaignSpec


def check_inputs(spec: CampaignSpec) -> None:
    """Raise DatasetError or SpecError (one line) if the campaign cannot use its inputs.
    Reads only: nothing is written (splits and plans are made later, by the run)."""
    if spec.executor.kind == "table":
        return  # replayed outcomes: no dataset is read
    check_host_extras(spec)
    root = spec.dataset.path
    if spec.task == "vqa" and (root / "vqa.json").is_file():
        return  # a converted VQA dataset: its manifest is read when the campaign prepares it
    if spec.task == "audio":
        from medloop.experiments.dataset.audio_manifest import read_manifest

        read_manifest(root)  # recordings + manifest.csv: a broken manifest is one line
        return
    if spec.task == "classification":
        _check_classification(spec)
        return
    _check_cases(spec)
    _check_split(spec)


def check_host_extras(spec: CampaignSpec) -> None:
    """Raise MissingExtra (one line naming `medloop[job]`) when this host lacks what the
    campaign runs here: the local runtime runs jobs in this Python (torch, MONAI), and the
    host recomputes segmentation NSD/HD95 with MONAI's implementation (evaluation/metrics.py)
    whatever the runtime. A Docker job brings its own torch in the image."""
    if spec.sandbox.runtime == "local" and not installed("torch", "monai"):
        raise missing(
            "torch" if not installed("torch") else "monai",
            "sandbox.runtime: local (jobs run in this Python environment)",
            extra="job",
            instead="sandbox.runtime: docker",
        )
    if spec.task in ("segmentation", "pretrain") and not installed("torch", "monai"):
        raise missing(
            "torch" if not installed("torch") else "monai",
            f"task {spec.task} (the host recomputes NSD and HD95 with MONAI)",
            extra="job",
        )


def _check_cases(spec: CampaignSpec) -> None:
    from medloop.experiments.dataset.checks import check_dataset

    root = spec.dataset.path
    report = check_dataset(root)  # every case's header: readable, shapes, geometry, labels
    errors = report.errors
    if not errors:
        return
    first = errors[0]
    where = "/".join(part for part in (str(root), first.file or "") if part)
    case = f" (case {first.case})" if first.case else ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    raise DatasetError(
        f"{where}{case}: {first.message}{more}",
        hint=f"`medloop dataset check {root}` lists every problem",
    )


def _check_classification(spec: CampaignSpec) -> None:
    """labels.csv and every case's images; one line for the first problem."""
    from medloop.experiments.dataset.cls_checks import check_cls_dataset

    root = spec.dataset.path
    errors = check_cls_dataset(root).errors
    if errors:
        first = errors[0]
        where = f"{root}/{first.file}: " if first.file else ""
        case = f" (case {first.case})" if first.case and first.case not in first.message else ""
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DatasetError(
            f"{where}{first.message}{case}{more}", hint=f"`medloop dataset check {root}` lists every problem"
        )


def _check_split(spec: CampaignSpec) -> None:
    from medloop.experiments.dataset.nnunet import read_sites

    ref = spec.dataset
    if ref.split == "kfold" and ref.fold >= ref.folds:
        raise SpecError(
            f"dataset.fold: {ref.fold} does not exist with folds: {ref.folds} (use 0..{ref.folds - 1})"
        )
    if ref.split != "leave_site_out":
        if ref.held_out_site is not None:
            raise SpecError("dataset.held_out_site: applies to split: leave_site_out only")
        return
    names = sorted(set(read_sites(ref.path).values()))
    if len(names) < 2:
        raise DatasetError(
            f"{ref.path}: leave_site_out needs at least 2 sites in sites.json, has {len(names)}"
        )
    if ref.held_out_site is not None and ref.held_out_site not in names:
        raise SpecError(
            f"dataset.held_out_site: no site {ref.held_out_site!r} in {ref.path}; sites are {', '.join(names)}"
        )
    if ref.held_out_site is None and ref.fold >= len(names):
        raise SpecError(
            f"dataset.fold: site index {ref.fold} does not exist; the dataset has {len(names)} sites"
        )
