"""From a dataset on the host to what a job may see: the manifest (case lists, split,
checksum) and the staged input folders (train with labels, eval and test images only).

Held-out labels (eval cases' labelsTr files, labelsTs) never enter a staged folder; the
host reads them through `held_out_labels` when it recomputes metrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.records import DatasetManifest
from medloop.experiments.dataset.nnunet import NnunetDataset, dataset_checksum, read_dataset
from medloop.experiments.dataset.splits import load_or_save_splits, stratified_holdout

__all__ = ["build_manifest", "held_out_labels", "stage_inputs", "stratified_holdout"]


def build_manifest(
    path: Path,
    *,
    eval_fraction: float = 0.3,
    split_seed: int = 12345,
    method: str = "holdout",
    k: int = 5,
    fold: int = 0,
    site: str | None = None,
) -> DatasetManifest:
    """The manifest of a campaign. The eval cases are a seeded split of the training cases:
    `holdout` (a site-stratified `eval_fraction`), `kfold` (fold `fold` of `k`, stratified
    by site) or `leave_site_out` (every case of `site`, or of the `fold`-th site). The
    splits are saved next to the dataset and the manifest records the file, its hash and
    the fold; test cases are imagesTs."""
    ds = read_dataset(path)
    if len(ds.training) < 2:
        raise DatasetError(
            f"{ds.root}: needs at least 2 training cases to hold some out, has {len(ds.training)}"
        )
    all_cases = [c.id for c in ds.training]
    splits, file, digest = load_or_save_splits(
        ds.root, method, all_cases, ds.sites, k=k, seed=split_seed, fraction=eval_fraction
    )
    if method == "leave_site_out" and site is not None:
        names = [s.get("site") for s in splits]
        if site not in names:
            raise DatasetError(f"{ds.root}: no site {site!r}; sites are {', '.join(map(str, names))}")
        fold = names.index(site)
    if not 0 <= fold < len(splits):
        raise DatasetError(f"fold {fold} does not exist; the {method} split has {len(splits)} fold(s)")
    chosen = splits[fold]
    sites = {c.id: c.site for c in (*ds.training, *ds.test) if c.site is not None}
    split: dict[str, object] = {
        "method": method,
        "seed": split_seed,
        "fold": fold,
        "n_folds": len(splits),
        "file": file,
        "sha256": digest,
        "n_train": len(chosen["train"]),
        "n_eval": len(chosen["val"]),
        "n_test": len(ds.test),
    }
    if method == "holdout":
        split["eval_fraction"] = eval_fraction
    if method == "kfold":
        split["k"] = k
    if "site" in chosen:
        split["held_out_site"] = chosen["site"]
    return DatasetManifest(
        name=ds.name,
        checksum=dataset_checksum(ds.root),
        channel_names=ds.channel_names,
        labels=ds.labels,
        file_ending=ds.file_ending,
        train_cases=sorted(chosen["train"]),
        eval_cases=sorted(chosen["val"]),
        test_cases=[c.id for c in ds.test],
        sites=sites,
        split=split,
    )


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # other filesystem or no hardlink support
        shutil.copy2(src, dest)


def _check_manifest(ds: NnunetDataset, manifest: DatasetManifest) -> None:
    known_tr = {c.id for c in ds.training}
    known_ts = {c.id for c in ds.test}
    unknown = sorted(set(manifest.train_cases + manifest.eval_cases) - known_tr)
    unknown += sorted(set(manifest.test_cases) - known_ts)
    if unknown:
        raise DatasetError(f"{ds.root}: the manifest names cases the dataset lacks: {', '.join(unknown[:5])}")
    overlap = sorted(set(manifest.train_cases) & set(manifest.eval_cases))
    if overlap:
        raise DatasetError(f"manifest: cases in both train and eval: {', '.join(overlap[:5])}")


def staging_key(manifest: DatasetManifest) -> str:
    split = {"train": manifest.train_cases, "eval": manifest.eval_cases, "test": manifest.test_cases}
    return f"{manifest.checksum[:16]}-{sha256_hex(canonical_json(split))[:12]}"


def stage_inputs(path: Path, manifest: DatasetManifest, staging_root: Path) -> dict[str, Path]:
    """Lay out what a job sees, hardlinked (or copied) from the dataset:

        <staging_root>/<key>/train/imagesTr, train/labelsTr   train cases only
        <staging_root>/<key>/eval/imagesTs                    eval images only
        <staging_root>/<key>/test/imagesTs                    test images only

    Built in a temporary folder and renamed into place, so it is complete or absent;
    calling again with the same dataset checksum and split reuses it.
    """
    ds = read_dataset(path)
    _check_manifest(ds, manifest)
    if dataset_checksum(ds.root) != manifest.checksum:
        raise DatasetError(
            f"{ds.root}: dataset changed since the manifest was built (checksum differs)",
            hint="start a new campaign, or restore the dataset",
        )
    dest = Path(staging_root) / staging_key(manifest)
    parts = {name: dest / name for name in ("train", "eval", "test")}
    if (dest / ".complete").is_file():
        return parts
    with publish_staging(staging_root, dest, manifest.checksum, prefix=".stage-") as tmp:
        by_id = {c.id: c for c in (*ds.training, *ds.test)}
        layout = [
            ("train/imagesTr", manifest.train_cases, True),
            ("eval/imagesTs", manifest.eval_cases, False),
            ("test/imagesTs", manifest.test_cases, False),
        ]
        for folder, case_ids, with_labels in layout:
            (tmp / folder).mkdir(parents=True)
            if with_labels:
                (tmp / "train/labelsTr").mkdir(parents=True)
            for case_id in case_ids:
                case = by_id[case_id]
                for image in case.images:
                    _link(image, tmp / folder / image.name)
                if with_labels and case.label is not None:
                    _link(case.label, tmp / "train/labelsTr" / case.label.name)
    return parts


def held_out_labels(path: Path, manifest: DatasetManifest, split: str) -> dict[str, Path]:
    """case -> reference label file for a split, read by the host only.

    `eval` -> labelsTr of the eval cases; `test` -> labelsTs of the test cases that have
    one; `internal_val` (or `train`) -> labelsTr of the train cases (a job's internal
    validation cases are a subset of them).
    """
    ds = read_dataset(path)
    by_id = {c.id: c for c in (*ds.training, *ds.test)}
    if split == "eval":
        wanted = manifest.eval_cases
    elif split == "test":
        wanted = manifest.test_cases
    elif split in ("internal_val", "train"):
        wanted = manifest.train_cases
    else:
        raise DatasetError(f"unknown split {split!r}; expected eval, test, internal_val or train")
    out: dict[str, Path] = {}
    for case_id in wanted:
        case = by_id.get(case_id)
        if case is None:
            raise DatasetError(f"{ds.root}: case {case_id} of the {split} split is missing")
        if case.label is not None:
            out[case_id] = case.label
    return out


@contextmanager
def publish_staging(staging_root: Path, dest: Path, checksum: str, *, prefix: str) -> Iterator[Path]:
    """A private folder to fill, published as `dest` atomically when the block ends (with a
    `.complete` marker); removed on any error. If another process published the same
    split first, theirs is kept (it is identical: same checksum)."""
    Path(staging_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=staging_root, prefix=prefix))
    try:
        yield tmp
        (tmp / ".complete").write_text(checksum + "\n")
        try:
            tmp.rename(dest)
        except OSError:
            if not (dest / ".complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
