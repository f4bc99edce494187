"""`medloop dataset check` for classification datasets (labels.csv): every problem, one
line each, naming the line, case and file.

Errors: labels.csv problems (missing column, unknown label, duplicate or empty case id),
a case with images but no row (missing case) or a row without images, missing channel
files, a patient with two labels or in both imagesTr and imagesTs, and the image checks
of segmentation datasets (unreadable, NaN/Inf, 4D channel files, geometry that differs
between the channels of a case). Warnings: a class below 20 % of the training patients.
"""

from __future__ import annotations

from pathlib import Path

from medloop.experiments.dataset.checks import CheckReport, Problem, _check_case
from medloop.experiments.dataset.cls_manifest import dataset_problems

MINORITY_SHARE = 0.2


def check_cls_dataset(root: Path) -> CheckReport:
    root = Path(root)
    report = CheckReport(path=str(root))
    ds, problems = dataset_problems(root)
    for _case, message in problems:  # each message names its line and case already
        code = "labels_csv" if "labels.csv" in message else "dataset"
        report.problems.append(Problem("error", code, message))
    if ds is None:
        return report
    report.n_training, report.n_test = len(ds.training), len(ds.test)
    for case, images in sorted({**ds.training, **ds.test}.items()):
        report.problems.extend(_check_case(case, list(images), None, set(), root))
    patients: dict[str, int] = {ds.patient(c): ds.rows[c].label for c in ds.training}
    for name, value in ds.classes.items():
        share = sum(v == value for v in patients.values()) / max(len(patients), 1)
        if share < MINORITY_SHARE:
            report.problems.append(
                Problem("warning", "imbalance", f"class {name} has {share:.0%} of the training patients")
            )
    return report
