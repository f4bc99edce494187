"""Dataset-to-VQA conversion (the GMAI-VL-5.5M recipe) for any nnU-Net v2 raw dataset.

`convert_dataset(src, dest)` writes a VQA folder:

    vqa.json       what was converted (source checksum, recipe, case splits, counts)
    train.tsv      items from training cases (VLMEvalKit layout, answers included)
    test.tsv       items from test cases
    captions.tsv   one image-caption pair per slice (index, image, caption, case, site, split)

Splits are by case: labelled imagesTs cases are the test split when the dataset has them,
otherwise a seeded, site-stratified share of the training cases. Every item carries its
case, so no case reaches two splits. The output is a function of the dataset and the
arguments alone (same seed, same bytes); it is built in a temporary folder and renamed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.imageio import read_volume
from medloop.experiments.dataset.manifest import stratified_holdout
from medloop.experiments.dataset.nnunet import Case, NnunetDataset, dataset_checksum, read_dataset
from medloop.experiments.vlm.balance import balance_letters
from medloop.experiments.vlm.questions import TASKS, SliceView, caption_for, drafts_for, modality_of, readable
from medloop.experiments.vlm.render import display_slice, png_base64, reorient, window
from medloop.experiments.vlm.tsv import LETTERS, VqaItem, write_tsv

FORMAT = "medloop-vqa"
RECIPE_VERSION = 2  # 2: answer letters balanced per split


def _case_seed(seed: int, case_id: str, k: int) -> np.random.Generator:
    digest = int(hashlib.sha256(case_id.encode()).hexdigest()[:12], 16)
    return np.random.default_rng([seed, digest, k])


def _slices(labels: np.ndarray, n: int) -> list[int]:
    """Up to n axial slices with foreground, evenly spaced (all slices of a thin volume)."""
    depth = labels.shape[2]
    if depth == 1:
        return [0]
    with_fg = [k for k in range(depth) if labels[:, :, k].any()]
    if not with_fg:
        return []
    picks = np.unique(np.round(np.linspace(0, len(with_fg) - 1, min(n, len(with_fg)))).astype(int))
    return [with_fg[int(i)] for i in picks]


def _split(ds: NnunetDataset, test_fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    labelled_test = [c for c in ds.test if c.label is not None]
    if labelled_test:
        return list(ds.training), labelled_test
    ids = [c.id for c in ds.training]
    if len(ids) < 2:
        raise DatasetError(f"{ds.root}: needs at least 2 labelled cases to split train/test by case")
    train_ids, test_ids = stratified_holdout(ids, ds.sites, fraction=test_fraction, seed=seed)
    by_id = {c.id: c for c in ds.training}
    return [by_id[c] for c in train_ids], [by_id[c] for c in test_ids]


def _case_items(
    ds: NnunetDataset,
    case: Case,
    *,
    seed: int,
    slices_per_case: int,
    n_options: int,
    tasks: tuple[str, ...],
    image_size: int | None,
) -> tuple[list[VqaItem], list[dict[str, str]]]:
    if case.label is None:
        raise DatasetError(f"{ds.root}: case {case.id} has no label file")
    image = read_volume(case.images[0])
    labels = read_volume(case.label, dtype=np.int64)
    if image.shape[:3] != labels.shape[:3]:
        raise DatasetError(f"{case.label}: label shape {labels.shape} differs from image {image.shape}")
    img = reorient(image.array, image.affine)
    lab = reorient(labels.array, labels.affine)
    modality = modality_of(ds.channel_names.get("0", "CT"))
    names = {value: readable(name) for name, value in ds.labels.items() if value != 0}
    extra = {"case": case.id, "site": case.site or ""}
    items, captions = [], []
    for k in _slices(lab, slices_per_case):
        view = SliceView(window(display_slice(img, k), modality), display_slice(lab, k), names, modality)
        rng = _case_seed(seed, case.id, k)
        for draft in drafts_for(view, rng, tasks=tasks, n_options=n_options):
            texts = [draft.correct, *draft.distractors]
            order = rng.permutation(len(texts))
            options = {LETTERS[i]: texts[int(j)] for i, j in enumerate(order)}
            answer = next(letter for letter, text in options.items() if text == draft.correct)
            items.append(
                VqaItem(
                    index="",
                    question=draft.question,
                    options=options,
                    answer=answer,
                    image=png_base64(draft.image, image_size),
                    categories={
                        "task": draft.task,
                        "modality": view.modality,
                        "department": draft.department,
                        "granularity": draft.granularity,
                    },
                    extra={**extra, "slice": str(k)},
                )
            )
        caption = caption_for(view)
        if caption is not None:
            captions.append(
                {
                    "image": png_base64(window_rgb(view), image_size),
                    "caption": caption,
                    **extra,
                    "slice": str(k),
                }
            )
    return items, captions


def window_rgb(view: SliceView) -> np.ndarray:
    return np.repeat(view.grey[:, :, None], 3, axis=2)


def convert_dataset(
    src: Path,
    dest: Path,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    slices_per_case: int = 3,
    n_options: int = 4,
    tasks: tuple[str, ...] = TASKS,
    image_size: int | None = None,
) -> Path:
    """Convert the nnU-Net dataset at `src` into a VQA folder at `dest` (see module doc).

    An existing folder made from the same data with the same arguments is reused;
    anything else at `dest` is an error.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise DatasetError(
            f"unknown VQA task(s) {', '.join(unknown)}", hint=f"choose from {', '.join(TASKS)}"
        )
    if not 2 <= n_options <= len(LETTERS):
        raise DatasetError(f"n_options must lie in 2..{len(LETTERS)}, got {n_options}")
    if slices_per_case < 1:
        raise DatasetError(f"slices_per_case must be at least 1, got {slices_per_case}")
    ds = read_dataset(src)
    recipe: dict[str, Any] = {
        "version": RECIPE_VERSION,
        "seed": seed,
        "test_fraction": test_fraction,
        "slices_per_case": slices_per_case,
        "n_options": n_options,
        "tasks": list(tasks),
        "image_size": image_size,
        "source_checksum": dataset_checksum(ds.root),
    }
    dest = Path(dest)
    if _reuse(dest, recipe):
        return dest
    train_cases, test_cases = _split(ds, test_fraction, seed)
    per_split: dict[str, list[VqaItem]] = {"train": [], "test": []}
    caption_rows: list[dict[str, str]] = []
    for split, cases in (("train", train_cases), ("test", test_cases)):
        for case in sorted(cases, key=lambda c: c.id):
            items, captions = _case_items(
                ds,
                case,
                seed=seed,
                slices_per_case=slices_per_case,
                n_options=n_options,
                tasks=tasks,
                image_size=image_size,
            )
            per_split[split] += items
            caption_rows += [{**row, "split": split} for row in captions]
        per_split[split] = balance_letters(per_split[split], seed=seed, split=split)
    # Indices run over both splits, so an index names one item everywhere.
    counter = 0
    numbered: dict[str, list[VqaItem]] = {}
    for split in ("train", "test"):
        numbered[split] = []
        for item in per_split[split]:
            numbered[split].append(_with_index(item, str(counter)))
            counter += 1
    meta = {
        "format": FORMAT,
        "name": f"{ds.name}_vqa",
        "source": {
            "path": str(ds.root),
            "name": ds.name,
            "checksum": recipe["source_checksum"],
            "channel_names": ds.channel_names,
            "labels": ds.labels,
        },
        "recipe": recipe,
        "splits": {"train": sorted(c.id for c in train_cases), "test": sorted(c.id for c in test_cases)},
        "sites": {c.id: c.site for c in (*train_cases, *test_cases) if c.site is not None},
        "counts": {
            "train": len(numbered["train"]),
            "test": len(numbered["test"]),
            "captions": len(caption_rows),
            "by_task": dict(
                sorted(Counter(i.category("task") for s in numbered.values() for i in s).items())
            ),
        },
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        write_tsv(tmp / "train.tsv", numbered["train"])
        write_tsv(tmp / "test.tsv", numbered["test"])
        _write_captions(tmp / "captions.tsv", caption_rows)
        (tmp / "vqa.json").write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():  # an empty folder the user created
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _with_index(item: VqaItem, index: str) -> VqaItem:
    return VqaItem(
        index=index,
        question=item.question,
        options=item.options,
        answer=item.answer,
        image=item.image,
        categories=item.categories,
        hint=item.hint,
        extra=item.extra,
    )


def _write_captions(path: Path, rows: list[dict[str, str]]) -> None:
    import csv

    columns = ["index", "image", "caption", "case", "site", "slice", "split"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for i, row in enumerate(rows):
            writer.writerow([str(i), *(row.get(c, "") for c in columns[1:])])


def _reuse(dest: Path, recipe: dict[str, Any]) -> bool:
    """True if `dest` already holds this conversion; error if it holds something else."""
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return False
    try:
        meta = json.loads((dest / "vqa.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        meta = {}
    if isinstance(meta, dict) and meta.get("recipe") == recipe:
        return True
    raise DatasetError(
        f"{dest}: already exists and is not this conversion",
        hint="choose an empty or new folder, or remove the old one",
    )
