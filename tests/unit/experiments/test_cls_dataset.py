"""Classification datasets (images + labels.csv): bad label tables are one line each,
splits keep every patient on one side, and a job never sees evaluation labels."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medloop.core.errors import DatasetError
from medloop.core.specs import DatasetRef
from medloop.engine.tasks import family
from medloop.experiments.dataset.brain_cls import synth_brain_cls
from medloop.experiments.dataset.cls_checks import check_cls_dataset
from medloop.experiments.dataset.cls_manifest import build_cls_manifest, read_cls_dataset


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    return synth_brain_cls(root / "ds", patients=12, test_patients=3, size=8, second_scan=0.6, seed=2)


def _copy(base: Path, tmp: Path) -> Path:
    dest = tmp / "ds"
    shutil.copytree(base, dest)
    return dest


def _rows(ds: Path) -> list[list[str]]:
    return list(csv.reader((ds / "labels.csv").open()))


def _write(ds: Path, rows: list[list[str]]) -> None:
    with (ds / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_generated_dataset_is_clean(base: Path) -> None:
    report = check_cls_dataset(base)
    assert report.ok and not report.problems, [p.line() for p in report.problems]
    ds = read_cls_dataset(base)
    assert ds.channel_names == {"0": "T1", "1": "T2", "2": "FLAIR"}
    assert len({r.patient for r in ds.rows.values()}) == 15 and len(ds.training) > 12  # some second scans


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda rows: rows[:2] + rows[3:],
            r"labels\.csv: missing case (\S+) \(it has images but no label row\)",
        ),
        (
            lambda rows: [*rows, rows[1]],
            r"labels\.csv line \d+: case \S+ is listed twice \(first on line 2\)",
        ),
        (
            lambda rows: [rows[0], [rows[1][0], "severe", *rows[1][2:]], *rows[2:]],
            r"labels\.csv line 2: case \S+: unknown label 'severe'; dataset\.json labels are stable \(0\), active \(1\)",
        ),
        (lambda rows: [*rows, ["ghost", "1", "pX", "site_a"]], r"line \d+: case ghost has no images"),
        (lambda rows: [["case", "diagnosis"], *rows[1:]], r"missing column\(s\) label"),
        (
            lambda rows: [
                rows[0],
                [*rows[1][:2], "pat_shared", rows[1][3]],
                *rows[2:-1],
                [*rows[-1][:2], "pat_shared", rows[-1][3]],
            ],
            r"patient pat_shared has cases in both imagesTr and imagesTs \(leakage\)",
        ),
    ],
)
def test_bad_label_table_is_one_clear_line(base: Path, tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    ds = _copy(base, tmp_path)
    _write(ds, mutate(_rows(ds)))
    report = check_cls_dataset(ds)
    assert not report.ok
    assert any(__import__("re").search(expected, p.message) for p in report.errors), [
        p.line() for p in report.errors
    ]
    assert all("\n" not in p.line() for p in report.problems)
    with pytest.raises(DatasetError) as err:  # the engine refuses it the same way, one line
        family("classification").prepare(DatasetRef(path=ds), tmp_path / "stage")
    assert "\n" not in err.value.message and "labels.csv" in err.value.message


def test_cli_check_names_the_bad_row_without_traceback(base: Path, tmp_path: Path) -> None:
    ds = _copy(base, tmp_path)
    rows = _rows(ds)
    _write(ds, [*rows, rows[2]])
    proc = subprocess.run(
        [sys.executable, "-m", "medloop", "dataset", "check", str(ds)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert f"case {rows[2][0]} is listed twice" in proc.stdout
    js = subprocess.run(
        [sys.executable, "-m", "medloop", "dataset", "check", str(ds), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(js.stdout)
    assert report["n_errors"] == 1 and report["problems"][0]["code"] == "labels_csv"


def test_patient_with_two_labels_is_refused(base: Path, tmp_path: Path) -> None:
    ds = _copy(base, tmp_path)
    rows = _rows(ds)
    first = next(r for r in rows[1:] if sum(o[2] == r[2] for o in rows) == 2)  # a patient with two scans
    twin = next(r for r in rows[1:] if r[2] == first[2] and r is not first)
    twin[1] = "stable" if first[1] == "active" else "active"
    _write(ds, rows)
    assert any(
        f"patient {first[2]} has cases with different labels" in p.message
        for p in check_cls_dataset(ds).errors
    )


@pytest.mark.parametrize(("method", "folds"), [("holdout", 1), ("kfold", 3), ("leave_site_out", 2)])
def test_splits_never_put_a_patient_on_two_sides(base: Path, method: str, folds: int) -> None:
    ds = read_cls_dataset(base)
    for fold in range(folds):
        m = build_cls_manifest(base, method=method, k=3, fold=fold, eval_fraction=0.3, split_seed=7)
        sides = {"train": m.train_cases, "eval": m.eval_cases, "test": m.test_cases}
        seen: dict[str, str] = {}
        for side, cases in sides.items():
            for case in cases:
                patient = ds.patient(case)
                assert seen.setdefault(patient, side) == side, f"{patient} in {seen[patient]} and {side}"
        assert m.split["by"] == "patient" and m.eval_cases and m.train_cases
        assert sorted(m.train_cases + m.eval_cases) == sorted(ds.training)
    # the split is patient-level, not case-level: a patient with two scans keeps both together
    assert any(
        len([c for c in ds.training if ds.patient(c) == p]) == 2 for p in {ds.patient(c) for c in ds.training}
    )


def test_hostile_job_finds_no_evaluation_label(base: Path, tmp_path: Path) -> None:
    """Everything a job can read (the spec and the staged inputs) searched for any eval or
    test case next to its label: nothing; train labels are there (the search works)."""
    prep = family("classification").prepare(DatasetRef(path=base, eval_fraction=0.4), tmp_path / "stage")
    ds = read_cls_dataset(base)
    names = {str(v): k for k, v in ds.classes.items()}
    held = {c: ds.rows[c].label for c in (*prep.manifest.eval_cases, *prep.manifest.test_cases)}
    train = {c: ds.rows[c].label for c in prep.manifest.train_cases}
    readable = [p for part in prep.staged.values() for p in part.rglob("*") if p.is_file()]
    leaks, found_train = [], 0
    spec_text = prep.manifest.model_dump_json()
    for path in readable:
        if path.suffix != ".csv":
            continue
        for row in csv.reader(path.open()):
            cells = set(row)
            for case, label in held.items():
                if case in cells and (str(label) in cells or names[str(label)] in cells):
                    leaks.append((path, row))
            found_train += sum(1 for case, label in train.items() if case in cells and str(label) in cells)
    assert not leaks and found_train == len(train)
    assert "labels.csv" not in {p.name for p in readable if "train" not in p.parts}
    for split in ("eval", "test"):
        assert (prep.staged[split] / "cases.csv").read_text().splitlines()[0] == "case"
    shown = json.loads(spec_text)  # what the job learns from its spec: class names, case ids, sites
    assert shown["labels"] == ds.classes and set(shown["sites"].values()) <= {"site_a", "site_b"}
    assert not (prep.staged["eval"].parent / "labels.csv").exists()
