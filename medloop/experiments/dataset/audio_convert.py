"""Converters from the documented layouts of public speech-depression corpora to the
audio folder format (manifest.csv + recordings, hardlinked where possible).

DAIC-WOZ (AVEC 2016/2017): participant folders `<id>_P/<id>_AUDIO.wav` and split CSVs
(`train_split_Depression_AVEC2017.csv`, `dev_split_...`, `full_test_split.csv`) with
`Participant_ID`, `PHQ8_Binary` and `PHQ8_Score` (the test file: `PHQ_Binary`,
`PHQ_Score`). Train and dev rows become `split: train` (medloop splits them by
subject), the test rows `split: test`; participants without a label are left out.

MODMA (audio, Lanzhou 2015): subject folders of WAV files and a subject information
table (CSV; an .xlsx needs openpyxl) with `subject id`, `type` (MDD or HC) and `PHQ-9`.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.audio_manifest import Recording, write_manifest


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _new_folder(dst: Path) -> None:
    if dst.exists() and any(dst.iterdir()):
        raise DatasetError(f"{dst}: folder exists and is not empty", hint="pick a new folder")
    dst.mkdir(parents=True, exist_ok=True)


def _source(src: Path) -> None:
    if not src.is_dir():
        raise DatasetError(f"{src}: not a folder", hint="pass the corpus folder as it was downloaded")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _pick(columns: list[str], *names: str) -> str | None:
    by_norm = {_norm(c): c for c in columns}
    for name in names:
        if _norm(name) in by_norm:
            return by_norm[_norm(name)]
    return None


def _read_table(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".xlsx":
        try:
            import openpyxl
        except ImportError:
            raise DatasetError(
                f"{path}: reading .xlsx needs openpyxl", hint="save the sheet as CSV"
            ) from None
        sheet = openpyxl.load_workbook(path, read_only=True).active
        rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        return [dict(zip(rows[0], r, strict=False)) for r in rows[1:]] if rows else []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def convert_daic_woz(src: Path, dst: Path) -> Path:
    """DAIC-WOZ folder -> audio dataset at `dst`."""
    src, dst = Path(src), Path(dst)
    _source(src)
    tables = sorted(p for p in src.glob("*.csv") if "split" in p.name.lower())
    if not tables:
        raise DatasetError(
            f"{src}: no *split*.csv label files", hint="expected train_split_Depression_AVEC2017.csv etc."
        )
    _new_folder(dst)
    recs: list[Recording] = []
    seen: set[str] = set()
    for table in tables:
        rows = _read_table(table)
        columns = list(rows[0]) if rows else []
        pid = _pick(columns, "Participant_ID", "participant")
        binary = _pick(columns, "PHQ8_Binary", "PHQ_Binary")
        score = _pick(columns, "PHQ8_Score", "PHQ_Score")
        if pid is None:
            raise DatasetError(f"{table}: no Participant_ID column")
        if binary is None:
            continue  # a test list without labels
        split = "test" if "test" in table.name.lower() else "train"
        for line, row in enumerate(rows, start=2):
            participant = str(row[pid]).strip().split(".")[0]
            if not participant or participant in seen:
                continue
            audio = src / f"{participant}_P" / f"{participant}_AUDIO.wav"
            if not audio.is_file():
                raise DatasetError(
                    f"{table} line {line}: participant {participant}: {audio.relative_to(src)} not found"
                )
            label = str(row[binary]).strip().split(".")[0]
            if label not in ("0", "1"):
                raise DatasetError(f"{table} line {line}: {binary} {row[binary]!r} is not 0 or 1")
            rel = f"audio/{participant}_AUDIO.wav"
            _place(audio, dst / rel)
            phq = float(row[score]) if score and str(row[score]).strip() else None
            recs.append(Recording(rel, int(label), participant, "", "", phq, split))
            seen.add(participant)
    if not recs:
        raise DatasetError(f"{src}: no labelled participant found in {', '.join(t.name for t in tables)}")
    write_manifest(dst, recs)
    return dst


def convert_modma(src: Path, dst: Path, info: Path | None = None) -> Path:
    """MODMA audio folder -> audio dataset at `dst`; `info` defaults to the one
    subject-information table (.csv or .xlsx) in `src`."""
    src, dst = Path(src), Path(dst)
    _source(src)
    if info is None:
        found = sorted(p for p in src.iterdir() if p.suffix.lower() in (".csv", ".xlsx") and p.is_file())
        if len(found) != 1:
            raise DatasetError(
                f"{src}: expected one subject information table (.csv/.xlsx), found {len(found)}"
            )
        info = found[0]
    rows = _read_table(info)
    columns = list(rows[0]) if rows else []
    sid, kind, phq = (
        _pick(columns, "subject id", "subject_id", "id"),
        _pick(columns, "type"),
        _pick(columns, "PHQ-9", "phq9"),
    )
    if sid is None or kind is None:
        raise DatasetError(
            f"{info}: needs 'subject id' and 'type' columns; have {', '.join(columns) or 'none'}"
        )
    _new_folder(dst)
    recs: list[Recording] = []
    for line, row in enumerate(rows, start=2):
        subject = str(row[sid]).strip().split(".")[0]
        if not subject:
            continue
        label = {"mdd": 1, "hc": 0}.get(str(row[kind]).strip().lower())
        if label is None:
            raise DatasetError(f"{info} line {line}: type {row[kind]!r} is not MDD or HC")
        folder = next((p for p in (src / subject, src / subject.zfill(8)) if p.is_dir()), None)
        if folder is None:
            raise DatasetError(f"{info} line {line}: subject {subject}: no folder {subject}/ in {src}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise DatasetError(f"{folder}: no .wav or .flac recordings")
        score = float(row[phq]) if phq and str(row[phq]).strip() else None
        for path in files:
            rel = f"audio/{subject}/{path.name}"
            _place(path, dst / rel)
            recs.append(Recording(rel, label, subject, path.stem, "", score, "train"))
    write_manifest(dst, recs)
    return dst
