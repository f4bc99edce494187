"""Volume-level classification datasets: nnU-Net-style images and a label table.

    DatasetXXX/dataset.json   channel_names, labels ({class name: 0, ...}), file_ending
    DatasetXXX/imagesTr/{case}_{XXXX}{ending}   one file per channel (multi-channel MRI)
    DatasetXXX/imagesTs/...                    optional fixed test cases
    DatasetXXX/labels.csv     case,label[,patient][,site]

`label` is a class name of dataset.json or its integer value; `patient` groups the scans
of one person (default: the case itself); `site` is the scanner/centre. Every image case
needs exactly one row. Splits are by *patient*: all scans of a patient land on one side,
so no patient is learnt and then "recognised".

A job sees its split's images and, for training cases only, their labels:

    <staging>/cls-<key>/train/imagesTr/...  train/labels.csv   case,label,patient
    <staging>/cls-<key>/eval/imagesTs/...   eval/cases.csv     case  (no labels)
    <staging>/cls-<key>/test/imagesTs/...   test/cases.csv     case  (no labels)
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.records import DatasetManifest
from medloop.experiments.dataset.manifest import publish_staging, staging_key
from medloop.experiments.dataset.nnunet import dataset_checksum, load_dataset_json, parse_meta, scan_images
from medloop.experiments.dataset.splits import make_splits, pick_fold

LABELS_CSV = "labels.csv"
REQUIRED = ("case", "label")
OPTIONAL = ("patient", "site")


@dataclass(frozen=True)
class LabelRow:
    case: str
    label: int
    patient: str
    site: str
    line: int  # in labels.csv, for messages


@dataclass(frozen=True)
class ClsDataset:
    root: Path
    name: str
    channel_names: dict[str, str]
    classes: dict[str, int]
    file_ending: str
    training: dict[str, tuple[Path, ...]]  # case -> channel files
    test: dict[str, tuple[Path, ...]]
    rows: dict[str, LabelRow]  # case -> its row

    def patient(self, case: str) -> str:
        return self.rows[case].patient

    def sites(self) -> dict[str, str]:
        return {c: r.site for c, r in sorted(self.rows.items()) if r.site}


def is_classification_dataset(root: Path) -> bool:
    """A folder with dataset.json and labels.csv (and no labelsTr) is a classification set."""
    root = Path(root)
    return (root / LABELS_CSV).is_file() and (root / "dataset.json").is_file()


def read_classes(root: Path) -> tuple[dict[str, str], dict[str, int], str]:
    """channel_names, classes and file_ending of dataset.json; classes must be 0 and 1
    (binary classification: AUROC is defined on two classes)."""
    data = load_dataset_json(Path(root))
    channels, classes, ending = parse_meta(Path(root), data)
    if sorted(classes.values()) != [0, 1]:
        raise DatasetError(
            f"{Path(root) / 'dataset.json'}: labels must be two classes with values 0 and 1, got {classes}",
            hint="volume-level classification is binary (e.g. {'control': 0, 'lesion': 1})",
        )
    return channels, classes, ending


def read_label_rows(root: Path, classes: dict[str, int]) -> tuple[list[LabelRow], list[str], set[str]]:
    """The valid rows of labels.csv, every problem found (one line each, naming the line
    and case: unknown columns or labels, empty or duplicate case ids) and every case id
    named by a row (valid or not)."""
    path = Path(root) / LABELS_CSV
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return [], [f"{path}: missing (columns case,label[,patient][,site])"], set()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read ({exc})"], set()
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return (
            [],
            [f"{path}: missing column(s) {', '.join(missing)}; have {', '.join(columns) or 'none'}"],
            set(),
        )
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        return (
            [],
            [f"{path}: unknown column(s) {', '.join(unknown)}; allowed: case, label, patient, site"],
            set(),
        )
    by_value = {str(v): v for v in classes.values()}
    problems: list[str] = []
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{path} line {line}"
        case = row.get("case", "")
        if not case:
            problems.append(f"{where}: case is empty")
            continue
        if case in seen:
            problems.append(f"{where}: case {case} is listed twice (first on line {seen[case]})")
            continue
        seen[case] = line
        label = row.get("label", "")
        value = classes.get(label, by_value.get(label))
        if value is None:
            problems.append(
                f"{where}: case {case}: unknown label {label!r}; dataset.json labels are "
                + ", ".join(f"{n} ({v})" for n, v in sorted(classes.items(), key=lambda kv: kv[1]))
            )
            continue
        rows.append(LabelRow(case, value, row.get("patient") or case, row.get("site", ""), line))
    return rows, problems, set(seen)


def dataset_problems(root: Path) -> tuple[ClsDataset | None, list[tuple[str | None, str]]]:
    """(the dataset if it is usable, every problem as (case or None, message))."""
    root = Path(root)
    try:
        channels, classes, ending = read_classes(root)
    except DatasetError as exc:
        return None, [(None, exc.message)]
    rows, csv_problems, named = read_label_rows(root, classes)
    problems: list[tuple[str | None, str]] = [(None, p) for p in csv_problems]
    csv_path = root / LABELS_CSV
    images = {
        split: scan_images(root / folder, ending)
        for split, folder in (("tr", "imagesTr"), ("ts", "imagesTs"))
    }
    if not images["tr"]:
        problems.append((None, f"{root / 'imagesTr'}: no training images ending in {ending}"))
    files: dict[str, dict[str, tuple[Path, ...]]] = {"tr": {}, "ts": {}}
    for split, found in images.items():
        folder = root / ("imagesTr" if split == "tr" else "imagesTs")
        for case, by_channel in sorted(found.items()):
            absent = [f"{case}_{c:04d}{ending}" for c in range(len(channels)) if c not in by_channel]
            if absent:
                problems.append(
                    (case, f"{folder}: case {case} is missing channel file(s) {', '.join(absent)}")
                )
                continue
            files[split][case] = tuple(by_channel[c] for c in range(len(channels)))
    both = sorted(set(images["tr"]) & set(images["ts"]))
    for case in both:
        problems.append((case, f"case {case} is in both imagesTr and imagesTs"))
    by_case = {r.case: r for r in rows}
    for case in sorted({*images["tr"], *images["ts"]} - named):
        problems.append((case, f"{csv_path}: missing case {case} (it has images but no label row)"))
    for row in rows:
        if row.case not in images["tr"] and row.case not in images["ts"]:
            problems.append(
                (
                    row.case,
                    f"{csv_path} line {row.line}: case {row.case} has no images in imagesTr or imagesTs",
                )
            )
    labels_of: dict[str, set[int]] = {}
    splits_of: dict[str, set[str]] = {}
    for row in rows:
        labels_of.setdefault(row.patient, set()).add(row.label)
        splits_of.setdefault(row.patient, set()).update(s for s in ("tr", "ts") if row.case in images[s])
    for patient in sorted(labels_of):
        if len(labels_of[patient]) > 1:
            problems.append((None, f"{csv_path}: patient {patient} has cases with different labels"))
        if splits_of[patient] == {"tr", "ts"}:
            problems.append(
                (None, f"{csv_path}: patient {patient} has cases in both imagesTr and imagesTs (leakage)")
            )
    if problems:
        return None, problems
    ds = ClsDataset(
        root=root,
        name=str(load_dataset_json(root).get("name") or root.name),
        channel_names=channels,
        classes=classes,
        file_ending=ending,
        training=files["tr"],
        test=files["ts"],
        rows=by_case,
    )
    return ds, []


def read_cls_dataset(root: Path) -> ClsDataset:
    """The dataset, or DatasetError with the first problem (one line)."""
    ds, problems = dataset_problems(root)
    if ds is None:
        more = f" (+{len(problems) - 1} more; run `medloop dataset check`)" if len(problems) > 1 else ""
        raise DatasetError(problems[0][1] + more)
    return ds


def build_cls_manifest(
    root: Path,
    *,
    eval_fraction: float = 0.3,
    split_seed: int = 12345,
    method: str = "holdout",
    k: int = 5,
    fold: int = 0,
    site: str | None = None,
) -> DatasetManifest:
    """Split the patients of imagesTr (a holdout stratified by site and label, a k-fold by
    site, or leave-one-site-out), seeded; then every case follows its patient."""
    ds = read_cls_dataset(root)
    cases_of: dict[str, list[str]] = {}
    for case in ds.training:
        cases_of.setdefault(ds.patient(case), []).append(case)
    patients = sorted(cases_of)
    if len(patients) < 2:
        raise DatasetError(
            f"{ds.root}: needs at least 2 training patients to hold some out, has {len(patients)}"
        )
    p_site = {p: ds.rows[cases_of[p][0]].site for p in patients if ds.rows[cases_of[p][0]].site}
    p_label = {p: ds.rows[cases_of[p][0]].label for p in patients}
    strata = {p: f"{p_site.get(p, '')}|{p_label[p]}" for p in patients}
    folds = make_splits(
        method,
        patients,
        strata if method == "holdout" else p_site,
        k=k,
        seed=split_seed,
        fraction=eval_fraction,
    )
    picked = pick_fold(folds, method, fold=fold, site=site, where=ds.root)

    def expand(group: list[str]) -> list[str]:
        return sorted(c for p in group for c in cases_of[p])

    info: dict[str, object] = {"method": method, "seed": split_seed, "by": "patient", "fold": fold}
    info.update(n_train_patients=len(picked["train"]), n_eval_patients=len(picked["val"]))
    if method == "holdout":
        info["eval_fraction"] = eval_fraction
    if method == "kfold":
        info["k"] = k
    if "site" in picked:
        info["held_out_site"] = picked["site"]
    return DatasetManifest(
        name=ds.name,
        checksum=dataset_checksum(ds.root),
        channel_names=ds.channel_names,
        labels=ds.classes,
        file_ending=ds.file_ending,
        train_cases=expand(picked["train"]),
        eval_cases=expand(picked["val"]),
        test_cases=sorted(ds.test),
        sites=ds.sites(),
        split=info,
    )


def split_cases(manifest: DatasetManifest, split: str) -> list[str]:
    if split in ("train", "eval", "test"):
        return list(
            {"train": manifest.train_cases, "eval": manifest.eval_cases, "test": manifest.test_cases}[split]
        )
    raise DatasetError(f"unknown split {split!r}; expected train, eval or test")


def held_out_cls_labels(
    root: Path, manifest: DatasetManifest, split: str
) -> tuple[dict[str, int], dict[str, str]]:
    """(case -> label, case -> patient) of one split, read on the host only (never staged
    for eval/test)."""
    ds = read_cls_dataset(root)
    cases = split_cases(manifest, split)
    absent = [c for c in cases if c not in ds.rows]
    if absent:
        raise DatasetError(f"{ds.root / LABELS_CSV}: case {absent[0]} of the {split} split has no label row")
    return {c: ds.rows[c].label for c in cases}, {c: ds.rows[c].patient for c in cases}


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def stage_cls_inputs(root: Path, manifest: DatasetManifest, staging_root: Path) -> dict[str, Path]:
    """Hardlink (or copy) each split's channel files and write its case table (labels for
    train only) into a temporary folder published atomically; reused when staged before."""
    ds = read_cls_dataset(root)
    if dataset_checksum(ds.root) != manifest.checksum:
        raise DatasetError(
            f"{ds.root}: dataset changed since the manifest was built (checksum differs)",
            hint="start a new campaign, or restore the dataset",
        )
    dest = Path(staging_root) / f"cls-{staging_key(manifest)}"
    parts = {name: dest / name for name in ("train", "eval", "test")}
    if (dest / ".complete").is_file():
        return parts
    files = {**ds.training, **ds.test}
    with publish_staging(staging_root, dest, manifest.checksum, prefix=".stage-cls-") as tmp:
        for name, folder in (("train", "imagesTr"), ("eval", "imagesTs"), ("test", "imagesTs")):
            (tmp / name / folder).mkdir(parents=True)
            cases = split_cases(manifest, name)
            table = "labels.csv" if name == "train" else "cases.csv"
            with (tmp / name / table).open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["case", "label", "patient"] if name == "train" else ["case"])
                for case in cases:
                    for image in files[case]:
                        _link(image, tmp / name / folder / image.name)
                    row = ds.rows[case]
                    writer.writerow([case, row.label, row.patient] if name == "train" else [case])
    return parts


def write_labels_csv(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """labels.csv from (case, label, patient, site) rows (used by the generator)."""
    path = Path(root) / LABELS_CSV
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*REQUIRED, *OPTIONAL])
        writer.writerows(rows)
    return path
