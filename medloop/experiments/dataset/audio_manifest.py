"""Audio datasets: a folder of WAV/FLAC recordings and `manifest.csv`, one row per recording:

    path,label,subject[,session][,site][,phq][,split]

`label` is 0 (control) or 1 (condition, e.g. depressed); `split` is `train` (default) or
`test` (a fixed test set, like nnU-Net's imagesTs). Splits are by *subject*: every
recording of a speaker lands on the same side, so no voice is learnt and then "detected".

A job sees its split's recordings and, for training subjects only, their labels:

    <staging>/audio-<key>/train/train.csv   path,subject,session,label (+ audio/ files)
    <staging>/audio-<key>/eval/eval.csv     path,subject,session       (no labels)
    <staging>/audio-<key>/test/test.csv     path,subject,session       (no labels)
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medloop.core.errors import DatasetError
from medloop.core.records import DatasetManifest
from medloop.experiments.dataset.manifest import publish_staging, staging_key
from medloop.experiments.dataset.splits import make_splits, pick_fold

MANIFEST = "manifest.csv"
REQUIRED = ("path", "label", "subject")
OPTIONAL = ("session", "site", "phq", "split")
AUDIO_ENDINGS = (".wav", ".flac")
LABELS = {"control": 0, "condition": 1}


@dataclass(frozen=True)
class Recording:
    path: str  # relative to the dataset folder
    label: int
    subject: str
    session: str = ""
    site: str = ""
    phq: float | None = None
    split: str = "train"
    row: int = 0  # line in manifest.csv, for messages


def read_rows(root: Path) -> list[dict[str, str]]:
    """The rows of manifest.csv as dicts; DatasetError naming the file on any problem."""
    path = Path(root) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no manifest.csv", hint="see docs/audio.md for the format") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; have {', '.join(columns) or 'none'}"
        )
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise DatasetError(
            f"{path}: unknown column(s) {', '.join(unknown)}",
            hint="allowed: " + ", ".join(REQUIRED + OPTIONAL),
        )
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def read_manifest(root: Path) -> list[Recording]:
    """Parsed recordings of manifest.csv; DatasetError naming the line and field otherwise."""
    out: list[Recording] = []
    seen: set[str] = set()
    for i, row in enumerate(read_rows(root), start=2):
        where = f"{Path(root) / MANIFEST} line {i}"
        rel = row["path"]
        if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DatasetError(f"{where}: path {rel!r} must be relative and inside the dataset folder")
        if not rel.lower().endswith(AUDIO_ENDINGS):
            raise DatasetError(f"{where}: path {rel!r} is not a .wav or .flac file")
        if rel in seen:
            raise DatasetError(f"{where}: path {rel!r} is listed twice")
        seen.add(rel)
        if row["label"] not in ("0", "1"):
            raise DatasetError(f"{where}: label {row['label']!r} must be 0 (control) or 1 (condition)")
        if not row["subject"]:
            raise DatasetError(f"{where}: subject is empty")
        phq: float | None = None
        if row.get("phq"):
            try:
                phq = float(row["phq"])
            except ValueError:
                raise DatasetError(f"{where}: phq {row['phq']!r} is not a number") from None
        split = row.get("split") or "train"
        if split not in ("train", "test"):
            raise DatasetError(f"{where}: split {split!r} must be train or test")
        out.append(
            Recording(
                rel,
                int(row["label"]),
                row["subject"],
                row.get("session", ""),
                row.get("site", ""),
                phq,
                split,
                i,
            )
        )
    if not out:
        raise DatasetError(f"{Path(root) / MANIFEST}: no recordings listed")
    return out


def write_manifest(root: Path, recordings: list[Recording]) -> Path:
    """Write manifest.csv (used by the generator and the converters)."""
    path = Path(root) / MANIFEST
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*REQUIRED, *OPTIONAL])
        for r in recordings:
            phq = "" if r.phq is None else f"{r.phq:g}"
            writer.writerow([r.path, r.label, r.subject, r.session, r.site, phq, r.split])
    return path


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate); DatasetError naming the file if unreadable."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for bad files
        why = str(exc).splitlines()[0].split("': ", 1)[-1][:120]  # libsndfile repeats the path
        raise DatasetError(f"{path}: unreadable audio ({why})") from None
    return data.mean(axis=1), int(rate)


def audio_checksum(root: Path, recordings: list[Recording]) -> str:
    """sha256 over manifest.csv and every listed file's name and content."""
    digest = hashlib.sha256((Path(root) / MANIFEST).read_bytes())
    for rec in sorted(recordings, key=lambda r: r.path):
        digest.update(rec.path.encode() + b"\0")
        try:
            digest.update(hashlib.sha256((Path(root) / rec.path).read_bytes()).digest())
        except OSError as exc:
            raise DatasetError(f"{Path(root) / rec.path}: cannot read ({exc.strerror})") from None
    return digest.hexdigest()


def subject_labels(recordings: list[Recording]) -> dict[str, int]:
    """subject -> label; DatasetError if a subject has recordings with both labels."""
    labels: dict[str, set[int]] = defaultdict(set)
    for rec in recordings:
        labels[rec.subject].add(rec.label)
    mixed = sorted(s for s, v in labels.items() if len(v) > 1)
    if mixed:
        raise DatasetError(
            f"subject {mixed[0]} has recordings labelled both 0 and 1", hint="one label per subject"
        )
    return {s: next(iter(v)) for s, v in labels.items()}


def build_audio_manifest(
    root: Path,
    *,
    eval_fraction: float = 0.3,
    split_seed: int = 12345,
    method: str = "holdout",
    k: int = 5,
    fold: int = 0,
    site: str | None = None,
) -> DatasetManifest:
    """Split the subjects of the train rows (stratified by site and label for a holdout),
    seeded; subjects of `split: test` rows form the test set."""
    root = Path(root)
    recs = read_manifest(root)
    labels = subject_labels(recs)
    sites = {r.subject: r.site for r in recs if r.site}
    test = sorted({r.subject for r in recs if r.split == "test"})
    train_subjects = sorted({r.subject for r in recs if r.split == "train"} - set(test))
    strata = {s: f"{sites.get(s, '')}|{labels[s]}" for s in train_subjects}
    folds = make_splits(
        method,
        train_subjects,
        strata if method == "holdout" else sites,
        k=k,
        seed=split_seed,
        fraction=eval_fraction,
    )
    picked = pick_fold(folds, method, fold=fold, site=site, where=root)
    info: dict[str, object] = {"method": method, "seed": split_seed, "by": "subject"}
    if method == "holdout":
        info["fraction"] = eval_fraction
    if method == "kfold":
        info.update(k=k, fold=fold)
    if "site" in picked:
        info["site"] = picked["site"]
    return DatasetManifest(
        name=root.name,
        checksum=audio_checksum(root, recs),
        channel_names={"0": "audio"},
        labels=dict(LABELS),
        file_ending=".wav",
        train_cases=sorted(picked["train"]),
        eval_cases=sorted(picked["val"]),
        test_cases=test,
        sites={s: sites[s] for s in sorted(sites)},
        split=info,
    )


def split_recordings(root: Path, manifest: DatasetManifest, split: str) -> list[Recording]:
    """The recordings of one split's subjects ("train", "eval" or "test")."""
    wanted = set(
        {"train": manifest.train_cases, "eval": manifest.eval_cases, "test": manifest.test_cases}[split]
    )
    return [r for r in read_manifest(root) if r.subject in wanted]


def held_out_subjects(root: Path, manifest: DatasetManifest, split: str) -> dict[str, int]:
    """subject -> label of one split, read on the host (never staged for eval/test)."""
    return subject_labels(split_recordings(root, manifest, split))


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hardlink (no second copy of a large corpus), or copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def stage_audio_inputs(root: Path, manifest: DatasetManifest, staging_root: Path) -> dict[str, Path]:
    """Hardlink (or copy) each split's recordings and a CSV (labels for train only) into a temporary
    folder renamed into place; reused when the same folder and split were staged before."""
    root = Path(root)
    dest = Path(staging_root) / f"audio-{staging_key(manifest)}"
    parts = {name: dest / name for name in ("train", "eval", "test")}
    if (dest / ".complete").is_file():
        return parts
    with publish_staging(staging_root, dest, manifest.checksum, prefix=".stage-audio-") as tmp:
        for name in parts:
            recs = split_recordings(root, manifest, name)
            (tmp / name / "audio").mkdir(parents=True)
            with (tmp / name / f"{name}.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["path", "subject", "session", *(["label"] if name == "train" else [])])
                for rec in recs:
                    staged = f"audio/{rec.path}"
                    (tmp / name / staged).parent.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(root / rec.path, tmp / name / staged)
                    writer.writerow(
                        [staged, rec.subject, rec.session, *([rec.label] if name == "train" else [])]
                    )
    return parts
