"""`medloop dataset check` for audio datasets: every problem, one line each, naming the
subject and file.

Errors: manifest problems, missing or unreadable files, a subject with both labels, a
subject in both the train and the test split, the same audio under two subjects (one
speaker under two ids: speaker leakage across any split). Warnings: a mix of sample rates,
clipping, silence, duration outliers, label imbalance.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.audio_manifest import Recording, read_audio, read_manifest
from medloop.experiments.dataset.checks import CheckReport, Problem

CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (full scale 1.0)
CLIP_FRACTION = 0.001  # more than 0.1 % clipped samples is a warning
SILENCE_RMS = 1e-3  # about -60 dBFS
MIN_SECONDS = 0.5
MINORITY_SHARE = 0.2  # a class below 20 % of the subjects is a warning


def check_audio_dataset(root: Path) -> CheckReport:
    root = Path(root)
    report = CheckReport(path=str(root))
    try:
        recs = read_manifest(root)
    except DatasetError as exc:
        report.problems.append(Problem("error", "manifest", exc.message))
        return report
    report.n_training = sum(r.split == "train" for r in recs)
    report.n_test = sum(r.split == "test" for r in recs)
    problems = report.problems
    rates: dict[int, list[str]] = defaultdict(list)
    durations: dict[str, float] = {}
    by_content: dict[str, list[Recording]] = defaultdict(list)
    for rec in recs:
        path = root / rec.path
        if not path.is_file():
            problems.append(
                Problem(
                    "error", "missing_file", "listed in manifest.csv but not found", rec.subject, rec.path
                )
            )
            continue
        try:
            audio, rate = read_audio(path)
        except DatasetError as exc:
            problems.append(
                Problem("error", "unreadable", exc.message.split(": ", 1)[-1], rec.subject, rec.path)
            )
            continue
        by_content[hashlib.sha256(audio.tobytes()).hexdigest()].append(rec)
        rates[rate].append(rec.path)
        durations[rec.path] = len(audio) / rate if rate else 0.0
        problems.extend(_signal_problems(rec, audio, rate))
    problems.extend(_subject_problems(recs))
    for dupes in by_content.values():
        subjects = sorted({r.subject for r in dupes})
        if len(subjects) > 1:
            files = ", ".join(sorted(r.path for r in dupes))
            problems.append(
                Problem(
                    "error",
                    "duplicate_speaker",
                    f"identical audio under subjects {', '.join(subjects)} ({files}): one speaker under two "
                    "ids leaks across subject-level splits",
                    subjects[0],
                )
            )
    if len(rates) > 1:
        counts = ", ".join(f"{r} Hz: {len(p)} file(s)" for r, p in sorted(rates.items()))
        problems.append(
            Problem("warning", "sample_rate_mix", f"sample rates differ ({counts}); jobs resample")
        )
    problems.extend(_duration_outliers(durations, {r.path: r.subject for r in recs}))
    return report


def _signal_problems(rec: Recording, audio: np.ndarray, rate: int) -> list[Problem]:
    out: list[Problem] = []
    if audio.size == 0 or len(audio) / max(rate, 1) < MIN_SECONDS:
        out.append(
            Problem(
                "warning",
                "too_short",
                f"{len(audio) / max(rate, 1):.2f} s of audio (< {MIN_SECONDS} s)",
                rec.subject,
                rec.path,
            )
        )
        if audio.size == 0:
            return out
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        out.append(
            Problem(
                "warning",
                "clipping",
                f"{clipped:.1%} of samples at full scale (clipped)",
                rec.subject,
                rec.path,
            )
        )
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms < SILENCE_RMS:
        out.append(
            Problem(
                "warning",
                "silence",
                f"RMS {rms:.1e} (below -60 dBFS): silent recording",
                rec.subject,
                rec.path,
            )
        )
    if not np.isfinite(audio).all():
        out.append(Problem("error", "nan", "NaN or Inf samples", rec.subject, rec.path))
    return out


def _subject_problems(recs: list[Recording]) -> list[Problem]:
    out: list[Problem] = []
    labels: dict[str, set[int]] = defaultdict(set)
    splits: dict[str, set[str]] = defaultdict(set)
    for rec in recs:
        labels[rec.subject].add(rec.label)
        splits[rec.subject].add(rec.split)
    for subject in sorted(labels):
        if len(labels[subject]) > 1:
            out.append(Problem("error", "mixed_label", "recordings labelled both 0 and 1", subject))
        if len(splits[subject]) > 1:
            out.append(
                Problem(
                    "error",
                    "speaker_leakage",
                    "subject has recordings in both the train and the test split",
                    subject,
                )
            )
    per_class = [sum(1 for v in labels.values() if min(v) == c) for c in (0, 1)]
    total = sum(per_class)
    if total and min(per_class) / total < MINORITY_SHARE:
        out.append(
            Problem(
                "warning",
                "label_imbalance",
                f"{per_class[0]} control vs {per_class[1]} condition subjects (minority < {MINORITY_SHARE:.0%})",
            )
        )
    return out


def _duration_outliers(durations: dict[str, float], subjects: dict[str, str]) -> list[Problem]:
    """Robust z-score (median / MAD) above 5 on the log duration."""
    if len(durations) < 5:
        return []
    paths = sorted(durations)
    logs = np.log(np.maximum([durations[p] for p in paths], 1e-3))
    med = float(np.median(logs))
    # floor: recordings of equal length (MAD 0) must not make every small difference an outlier
    mad = max(float(np.median(np.abs(logs - med))), 0.1)
    out = []
    for path, value in zip(paths, logs, strict=True):
        z = 0.6745 * (value - med) / mad
        if abs(z) > 5:
            out.append(
                Problem(
                    "warning",
                    "duration_outlier",
                    f"{durations[path]:.1f} s vs median {float(np.exp(med)):.1f} s",
                    subjects[path],
                    path,
                )
            )
    return out
