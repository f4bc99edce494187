"""`medloop dataset check`: every problem in an nnU-Net v2 raw dataset, each naming the
case and file, without stopping at the first (the checks nnU-Net's
`--verify_dataset_integrity` runs, and a few more).

Errors: unreadable dataset.json or files, missing channel or label files, labels without
images, geometry that differs within a case (shape, spacing, origin, direction), label
values outside dataset.json, non-consecutive label values, NaN/Inf voxels, duplicate case
ids (between imagesTr and imagesTs, or equal up to letter case), numTraining mismatch,
4D channel files. Warnings: empty label maps, sites.json naming unknown cases or missing
cases, files with another ending.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import Volume, read_volume
from medloop.experiments.dataset.nnunet import load_dataset_json, parse_meta, scan_images, scan_labels

Severity = Literal["error", "warning"]
_SPACING_TOL = 1e-3  # relative
_ORIGIN_TOL = 1e-2  # mm
_DIRECTION_TOL = 1e-3


@dataclass(frozen=True)
class Problem:
    severity: Severity
    code: str
    message: str
    case: str | None = None
    file: str | None = None

    def line(self) -> str:
        where = " ".join(
            part for part in (self.case and f"case {self.case}", self.file and f"({self.file})") if part
        )
        return f"{self.severity}: {where + ': ' if where else ''}{self.message} [{self.code}]"


@dataclass
class CheckReport:
    path: str
    n_training: int = 0
    n_test: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "n_training": self.n_training,
            "n_test": self.n_test,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "problems": [asdict(p) for p in self.problems],
        }


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DatasetError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _plain(values: Any, decimals: int) -> tuple[float | int, ...]:
    """Numbers for a message: `(1.5, 1.5, 3.0)`, never `(np.float64(1.5), ...)`."""
    return tuple(np.round(np.asarray(values, dtype=float), decimals).tolist())


def _geometry(vol: Volume) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    spacing = np.asarray(vol.spacing[:3], dtype=float)
    direction = vol.affine[:3, :3] / np.where(spacing[: vol.affine.shape[0] - 1] == 0, 1, spacing)
    return vol.shape, spacing, vol.affine[:3, 3], direction


def _check_case(
    case: str, images: list[Path], label: Path | None, allowed: set[int], root: Path
) -> list[Problem]:
    """All problems of one case (runs in a worker thread)."""
    out: list[Problem] = []

    def rel(p: Path) -> str:
        return str(p.relative_to(root))

    vols: list[tuple[Path, Volume]] = []
    for path in [*images, *([label] if label else [])]:
        is_label = path == label
        try:
            vol = read_volume(path, dtype=np.float32)
        except DatasetError as exc:
            out.append(Problem("error", "unreadable", exc.message.split(": ", 1)[-1], case, rel(path)))
            continue
        if vol.array.ndim == 4 and vol.array.shape[3] > 1:
            out.append(
                Problem(
                    "error",
                    "4d_image",
                    f"4D array {vol.shape}: expected one file per channel",
                    case,
                    rel(path),
                )
            )
            continue
        if not np.isfinite(vol.array).all():
            n_bad = int((~np.isfinite(vol.array)).sum())
            out.append(Problem("error", "nan_inf", f"{n_bad} NaN/Inf voxels", case, rel(path)))
        if is_label:
            values = set(np.unique(vol.array[np.isfinite(vol.array)]).tolist())
            non_int = [v for v in values if v != int(v)]
            if non_int:
                out.append(
                    Problem(
                        "error",
                        "label_not_integer",
                        f"non-integer label values {sorted(non_int)[:5]}",
                        case,
                        rel(path),
                    )
                )
            bad = sorted(int(v) for v in values if v == int(v) and int(v) not in allowed)
            if bad:
                out.append(
                    Problem(
                        "error",
                        "label_values",
                        f"label values {bad} not in dataset.json labels {sorted(allowed)}",
                        case,
                        rel(path),
                    )
                )
            if values <= {0.0}:
                out.append(Problem("warning", "empty_label", "label map has no foreground", case, rel(path)))
        vols.append((path, vol))
    if len(vols) > 1:
        ref_path, ref = vols[0]
        shape0, sp0, org0, dir0 = _geometry(ref)
        for path, vol in vols[1:]:
            shape, sp, org, direction = _geometry(vol)
            what = f"differs from {rel(ref_path)}"
            if shape != shape0:
                out.append(
                    Problem(
                        "error",
                        "geometry_shape",
                        f"shape {tuple(int(n) for n in shape)} {what} {tuple(int(n) for n in shape0)}",
                        case,
                        rel(path),
                    )
                )
                continue
            if not np.allclose(sp, sp0, rtol=_SPACING_TOL):
                out.append(
                    Problem(
                        "error",
                        "geometry_spacing",
                        f"spacing {_plain(sp, 4)} {what} {_plain(sp0, 4)}",
                        case,
                        rel(path),
                    )
                )
            if not np.allclose(org, org0, atol=_ORIGIN_TOL):
                out.append(
                    Problem(
                        "error",
                        "geometry_origin",
                        f"origin {_plain(org, 3)} {what} {_plain(org0, 3)}",
                        case,
                        rel(path),
                    )
                )
            if not np.allclose(direction, dir0, atol=_DIRECTION_TOL):
                out.append(Problem("error", "geometry_direction", f"direction {what}", case, rel(path)))
    return out


def check_dataset(path: Path, *, workers: int | None = None) -> CheckReport:
    """Check an nnU-Net v2 raw dataset and return every problem found (never raises for
    problems in the data; only a missing folder raises DatasetError)."""
    root = Path(path)
    report = CheckReport(str(root))
    if root.is_file():
        raise DatasetError(
            f"{root}: is a file, not a dataset folder", hint=f"pass the folder that holds it: {root.parent}"
        )
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    try:
        meta = load_dataset_json(root)
        json.loads((root / "dataset.json").read_text(), object_pairs_hook=_no_duplicate_keys)
        channels, labels, ending = parse_meta(root, meta)
    except DatasetError as exc:
        report.problems.append(Problem("error", "dataset_json", exc.message, file="dataset.json"))
        return report
    values = sorted(labels.values())
    if values != list(range(len(values))):
        report.problems.append(
            Problem(
                "error",
                "labels_not_consecutive",
                f"label values {values} must be 0..{len(values) - 1}",
                file="dataset.json",
            )
        )
    n_channels = len(channels)
    tr_images = scan_images(root / "imagesTr", ending)
    tr_labels = scan_labels(root / "labelsTr", ending)
    ts_images = scan_images(root / "imagesTs", ending)
    ts_labels = scan_labels(root / "labelsTs", ending)
    report.n_training, report.n_test = len(tr_images), len(ts_images)
    if not tr_images:
        report.problems.append(Problem("error", "no_training", f"imagesTr has no files ending in {ending}"))
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        if (root / folder).is_dir():
            others = sorted(
                e.name
                for e in os.scandir(root / folder)
                if not e.name.startswith(".") and not e.name.endswith(ending)
            )
            for name in others[:20]:
                report.problems.append(
                    Problem(
                        "warning",
                        "file_ending",
                        f"ignored: does not end in {ending}",
                        name,
                        f"{folder}/{name}",
                    )
                )
    declared = meta.get("numTraining")
    if isinstance(declared, int) and declared != len(tr_images):
        report.problems.append(
            Problem(
                "error",
                "num_training",
                f"numTraining is {declared}, imagesTr has {len(tr_images)} cases",
                file="dataset.json",
            )
        )
    for case in sorted(set(tr_images) & set(ts_images)):
        report.problems.append(
            Problem("error", "duplicate_case", "case id is in both imagesTr and imagesTs", case)
        )
    lowered: dict[str, str] = {}
    for case in sorted({*tr_images, *ts_images}):
        other = lowered.setdefault(case.lower(), case)
        if other != case:
            report.problems.append(
                Problem("error", "duplicate_case", f"case id equals {other} up to letter case", case)
            )
    for case in sorted(set(tr_labels) - set(tr_images)):
        report.problems.append(
            Problem("error", "orphan_label", "label file without images", case, f"labelsTr/{case}{ending}")
        )
    jobs: list[tuple[str, list[Path], Path | None]] = []
    for folder, images, case_labels, need in (
        ("imagesTr", tr_images, tr_labels, True),
        ("imagesTs", ts_images, ts_labels, False),
    ):
        for case, chans in sorted(images.items()):
            extra = sorted(c for c in chans if c >= n_channels)
            for c in extra:
                report.problems.append(
                    Problem(
                        "error",
                        "extra_channel",
                        f"channel {c:04d} not in channel_names",
                        case,
                        f"{folder}/{chans[c].name}",
                    )
                )
            missing = [c for c in range(n_channels) if c not in chans]
            for c in missing:
                report.problems.append(
                    Problem(
                        "error",
                        "missing_channel",
                        f"missing channel file {case}_{c:04d}{ending}",
                        case,
                        folder,
                    )
                )
            label = case_labels.get(case)
            if need and label is None:
                report.problems.append(
                    Problem("error", "missing_label", f"missing label file labelsTr/{case}{ending}", case)
                )
            jobs.append((case, [chans[c] for c in range(n_channels) if c in chans], label))
    report.problems.extend(_check_sites(root, set(tr_images) | set(ts_images)))
    allowed = set(labels.values())
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        for problems in pool.map(lambda job: _check_case(job[0], job[1], job[2], allowed, root), jobs):
            report.problems.extend(problems)
    return report


def _check_sites(root: Path, cases: set[str]) -> list[Problem]:
    path = root / "sites.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError, DatasetError) as exc:
        return [Problem("error", "sites_json", f"unreadable: {exc}", file="sites.json")]
    if not isinstance(data, dict):
        return [Problem("error", "sites_json", "expected an object {case: site}", file="sites.json")]
    out = [
        Problem("warning", "sites_unknown_case", "sites.json names a case the dataset lacks", c, "sites.json")
        for c in sorted(set(data) - cases)
    ]
    missing = sorted(cases - set(data))
    if missing:
        out.append(
            Problem(
                "warning",
                "sites_missing",
                f"{len(missing)} case(s) have no site, e.g. {', '.join(missing[:3])}",
                file="sites.json",
            )
        )
    return out
