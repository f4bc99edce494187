"""From a VQA folder on the host to what a job may see, and back to the answers.

A VQA folder holds `vqa.json` (name, source, case splits), `train.tsv`, `test.tsv` and
optionally `captions.tsv` (as written by `convert_dataset`; a hand-made folder needs only
the TSVs and a vqa.json with a name). Items belong to cases (the `case` column; an item
without one is its own case); the evaluation split is a seeded, site-stratified share of
the training cases. Staged inputs carry answers for training cases only: evaluation and
test items are written without the answer column, and captions of held-out cases are left
out, because captions are derived from labels.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from medloop.core.errors import DatasetError
from medloop.core.records import DatasetManifest
from medloop.experiments.dataset.manifest import publish_staging, staging_key, stratified_holdout
from medloop.experiments.vlm.tsv import VqaItem, VqaTable, read_tsv, write_tsv

FILES = ("vqa.json", "train.tsv", "test.tsv", "captions.tsv")


def is_vqa_folder(path: Path) -> bool:
    return (Path(path) / "vqa.json").is_file()


def read_meta(root: Path) -> dict[str, Any]:
    path = Path(root) / "vqa.json"
    if not path.is_file():
        raise DatasetError(
            f"{root}: no vqa.json", hint="create a VQA folder with `medloop vqa convert DATASET OUT`"
        )
    try:
        meta = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, a 5,000-digit number, deep nesting
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return meta


def vqa_checksum(root: Path) -> str:
    """sha256 over the folder's files (name, size, content)."""
    digest = hashlib.sha256()
    for name in FILES:
        path = Path(root) / name
        if path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{name}\0{path.stat().st_size}\0{content}\n".encode())
    return digest.hexdigest()


def case_of(item: VqaItem) -> str:
    return item.extra.get("case", "").strip() or f"item_{item.index}"


def _tables(root: Path) -> tuple[VqaTable | None, VqaTable | None]:
    train = read_tsv(root / "train.tsv") if (root / "train.tsv").is_file() else None
    test = read_tsv(root / "test.tsv") if (root / "test.tsv").is_file() else None
    if train is None and test is None:
        raise DatasetError(f"{root}: neither train.tsv nor test.tsv exists")
    return train, test


def build_vqa_manifest(root: Path, *, eval_fraction: float, split_seed: int) -> DatasetManifest:
    """Split the training items by case into train and eval; test items are test.tsv."""
    root = Path(root)
    meta = read_meta(root)
    train, test = _tables(root)
    if train is None or not train.items:
        raise DatasetError(
            f"{root / 'train.tsv'}: no training items; a campaign holds its eval items out of them"
        )
    sites: dict[str, str] = {str(k): str(v) for k, v in dict(meta.get("sites", {})).items()}
    for item in [*train.items, *(test.items if test else [])]:
        if item.extra.get("site"):
            sites.setdefault(case_of(item), item.extra["site"])
    cases = sorted({case_of(i) for i in train.items})
    if len(cases) < 2:
        raise DatasetError(f"{root / 'train.tsv'}: needs items from at least 2 cases to hold some out")
    train_cases, eval_cases = stratified_holdout(cases, sites, fraction=eval_fraction, seed=split_seed)
    test_cases = sorted({case_of(i) for i in test.items}) if test else []
    leaked = sorted(set(cases) & set(test_cases))
    if leaked:
        raise DatasetError(f"{root}: case(s) in both train.tsv and test.tsv: {', '.join(leaked[:5])}")
    source = dict(meta.get("source", {}))
    eval_set = set(eval_cases)
    return DatasetManifest(
        name=str(meta.get("name") or root.name),
        checksum=vqa_checksum(root),
        channel_names={str(k): str(v) for k, v in dict(source.get("channel_names", {})).items()},
        labels={str(k): int(v) for k, v in dict(source.get("labels", {})).items()},
        file_ending=".tsv",
        train_cases=train_cases,
        eval_cases=eval_cases,
        test_cases=test_cases,
        sites={c: s for c, s in sites.items() if c in set(cases) | set(test_cases)},
        split={
            "method": "holdout_by_case_stratified_by_site",
            "eval_fraction": eval_fraction,
            "seed": split_seed,
            "n_train": len(train_cases),
            "n_eval": len(eval_cases),
            "n_test": len(test_cases),
            "n_train_items": sum(case_of(i) not in eval_set for i in train.items),
            "n_eval_items": sum(case_of(i) in eval_set for i in train.items),
            "n_test_items": len(test.items) if test else 0,
        },
    )


def held_out_items(root: Path, manifest: DatasetManifest, split: str) -> VqaTable:
    """The items of a split with their answers (host only): eval, test or train."""
    train, test = _tables(Path(root))
    if split == "test":
        if test is None:
            raise DatasetError(f"{root}: no test.tsv")
        wanted, table = set(manifest.test_cases), test
    elif split in ("eval", "train"):
        assert train is not None  # build_vqa_manifest required it
        wanted = set(manifest.eval_cases if split == "eval" else manifest.train_cases)
        table = train
    else:
        raise DatasetError(f"unknown split {split!r}; expected eval, test or train")
    items = [i for i in table.items if case_of(i) in wanted]
    return VqaTable(table.path, items, table.problems, table.has_answers)


def stage_vqa_inputs(root: Path, manifest: DatasetManifest, staging_root: Path) -> dict[str, Path]:
    """Lay out what a job sees, in a temporary folder renamed into place (reused when the
    same folder and split were staged before):

        <staging_root>/vqa-<key>/train/train.tsv, train/captions.tsv   with answers
        <staging_root>/vqa-<key>/eval/eval.tsv                          without answers
        <staging_root>/vqa-<key>/test/test.tsv                          without answers
    """
    root = Path(root)
    if vqa_checksum(root) != manifest.checksum:
        raise DatasetError(
            f"{root}: VQA folder changed since the manifest was built (checksum differs)",
            hint="start a new campaign, or restore the folder",
        )
    dest = Path(staging_root) / f"vqa-{staging_key(manifest)}"
    parts = {name: dest / name for name in ("train", "eval", "test")}
    if (dest / ".complete").is_file():
        return parts
    with publish_staging(staging_root, dest, manifest.checksum, prefix=".stage-vqa-") as tmp:
        for name in parts:
            (tmp / name).mkdir()
        write_tsv(tmp / "train/train.tsv", held_out_items(root, manifest, "train").items)
        write_tsv(tmp / "eval/eval.tsv", held_out_items(root, manifest, "eval").items, with_answers=False)
        if manifest.test_cases:
            write_tsv(tmp / "test/test.tsv", held_out_items(root, manifest, "test").items, with_answers=False)
        _stage_captions(root / "captions.tsv", tmp / "train/captions.tsv", set(manifest.train_cases))
    return parts


def _stage_captions(src: Path, dest: Path, cases: set[str]) -> None:
    if not src.is_file():
        return
    csv.field_size_limit(2**31 - 1)
    with src.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        fields = list(reader.fieldnames or [])
        rows = [row for row in reader if row.get("case", "") in cases]
    with dest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def vqa_fingerprint(root: Path, manifest: DatasetManifest) -> dict[str, float]:
    """Numbers that describe a VQA dataset for retrieval: item counts, options, tasks."""
    eval_items = held_out_items(root, manifest, "eval").items
    by_task: dict[str, int] = defaultdict(int)
    for item in eval_items:
        by_task[item.category("task") or "(none)"] += 1
    options = [len(i.options) for i in eval_items] or [0]
    out = {
        "n_train_items": float(manifest.split.get("n_train_items", 0)),
        "n_eval_items": float(len(eval_items)),
        "n_test_items": float(manifest.split.get("n_test_items", 0)),
        "n_cases": float(len(manifest.train_cases) + len(manifest.eval_cases)),
        "mean_options": float(sum(options) / len(options)),
        "random_baseline": float(sum(1 / n for n in options if n) / max(1, len(eval_items))),
    }
    out.update({f"items_{task}": float(n) for task, n in sorted(by_task.items())})
    return out


def ensure_vqa_folder(path: Path, work_root: Path, *, seed: int) -> Path:
    """A VQA folder for `path`: itself when it is one, else its conversion (default recipe,
    converted once into `work_root` and reused)."""
    path = Path(path)
    if is_vqa_folder(path):
        return path
    from medloop.experiments.dataset.nnunet import dataset_checksum
    from medloop.experiments.vlm.convert import convert_dataset

    dest = Path(work_root) / f"vqa-src-{dataset_checksum(path)[:16]}-s{seed}"
    return convert_dataset(path, dest, seed=seed)
