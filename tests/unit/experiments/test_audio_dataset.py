"""Audio datasets: manifest, checks (one per defect type), subject-level splits, staging,
the speech generator and the noise bank."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.audio_checks import check_audio_dataset
from medloop.experiments.dataset.audio_manifest import (
    build_audio_manifest,
    held_out_subjects,
    read_manifest,
    stage_audio_inputs,
)
from medloop.experiments.dataset.audio_noise import mix_at_snr, noise, stage_noisy
from medloop.experiments.dataset.audio_synth import synth_speech


@pytest.fixture(scope="module")
def speech_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_speech(
        tmp_path_factory.mktemp("ds") / "speech", subjects=12, sessions=2, seconds=1.5, seed=3
    )


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(src, dest)
    return dest


def _codes(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in check_audio_dataset(root).problems:
        out.setdefault(p.code, []).append(p.line())
    return out


def _append_row(root: Path, row: list[str]) -> None:
    with (root / "manifest.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(row)


def test_generated_dataset_is_clean_and_balanced(speech_ds: Path) -> None:
    report = check_audio_dataset(speech_ds)
    assert report.problems == []
    recs = read_manifest(speech_ds)
    assert len({r.subject for r in recs}) == 12 and len(recs) == 24
    assert {r.label for r in recs} == {0, 1}


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = synth_speech(tmp_path / "a", subjects=4, sessions=1, seconds=0.6, seed=7)
    b = synth_speech(tmp_path / "b", subjects=4, sessions=1, seconds=0.6, seed=7)
    for rec in read_manifest(a):
        assert (a / rec.path).read_bytes() == (b / rec.path).read_bytes()


def test_unreadable_file_is_an_error(speech_ds: Path, tmp_path: Path) -> None:
    root = _copy(speech_ds, tmp_path)
    victim = read_manifest(root)[0]
    (root / victim.path).write_bytes(b"not audio at all")
    codes = _codes(root)
    assert "unreadable" in codes and victim.path in codes["unreadable"][0]


def test_missing_file_is_an_error(speech_ds: Path, tmp_path: Path) -> None:
    root = _copy(speech_ds, tmp_path)
    victim = read_manifest(root)[1]
    (root / victim.path).unlink()
    assert victim.path in _codes(root)["missing_file"][0]


def test_sample_rate_mix_clipping_silence_and_duration_warnings(speech_ds: Path, tmp_path: Path) -> None:
    root = _copy(speech_ds, tmp_path)
    recs = read_manifest(root)
    sf.write(str(root / recs[0].path), np.zeros(8000 * 2, dtype=np.float32), 8000)  # silent, other rate
    loud = np.clip(np.random.default_rng(0).normal(0, 2, 24000), -1, 1).astype(np.float32)
    sf.write(str(root / recs[2].path), loud, 16000)  # clipped
    sf.write(
        str(root / recs[4].path),
        np.random.default_rng(1).normal(0, 0.1, 16000 * 60).astype(np.float32),
        16000,
    )
    codes = _codes(root)
    assert "sample_rate_mix" in codes and "8000 Hz: 1 file(s)" in codes["sample_rate_mix"][0]
    assert recs[0].path in codes["silence"][0]
    assert recs[2].path in codes["clipping"][0]
    assert recs[4].path in codes["duration_outlier"][0]
    assert check_audio_dataset(root).ok  # warnings only


def test_subject_in_train_and_test_is_leakage(speech_ds: Path, tmp_path: Path) -> None:
    root = _copy(speech_ds, tmp_path)
    train_rec = next(r for r in read_manifest(root) if r.split == "train")
    shutil.copyfile(root / train_rec.path, root / "extra.wav")
    _append_row(
        root, ["extra.wav", str(train_rec.label), train_rec.subject, "s9", train_rec.site, "", "test"]
    )
    codes = _codes(root)
    assert f"case {train_rec.subject}" in codes["speaker_leakage"][0]


def test_planted_duplicate_subject_is_caught(speech_ds: Path, tmp_path: Path) -> None:
    """A speaker re-listed under a new id (same recording): any subject split leaks it."""
    root = _copy(speech_ds, tmp_path)
    rec = read_manifest(root)[3]
    shutil.copyfile(root / rec.path, root / "planted.wav")
    _append_row(root, ["planted.wav", str(rec.label), "spk_planted", "s0", rec.site, "", "train"])
    report = check_audio_dataset(root)
    lines = [p.line() for p in report.problems if p.code == "duplicate_speaker"]
    assert len(lines) == 1 and "spk_planted" in lines[0] and rec.subject in lines[0]
    assert not report.ok


def test_mixed_label_and_imbalance(speech_ds: Path, tmp_path: Path) -> None:
    root = _copy(speech_ds, tmp_path)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    for row in rows:
        row["label"] = "0"
    assert rows[0]["subject"] == rows[1]["subject"]  # two sessions per subject
    rows[0]["label"] = "1"  # one subject with both labels, every other subject control
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    codes = _codes(root)
    assert rows[0]["subject"] in codes["mixed_label"][0]
    assert "12 control vs 0 condition" in codes["label_imbalance"][0]


def test_bad_manifest_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("path,label\nx.wav,0\n")
    report = check_audio_dataset(tmp_path)
    assert [p.code for p in report.problems] == ["manifest"]
    assert "missing column(s) subject" in report.problems[0].message
    (tmp_path / "manifest.csv").write_text("path,label,subject\nx.wav,2,a\n")
    with pytest.raises(DatasetError, match="line 2: label '2'"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,label,subject\n../x.wav,1,a\n")
    with pytest.raises(DatasetError, match="must be relative and inside"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("method", ["holdout", "kfold", "leave_site_out"])
def test_splits_are_by_subject_and_seeded(speech_ds: Path, method: str) -> None:
    m = build_audio_manifest(speech_ds, method=method, k=3, split_seed=5)
    again = build_audio_manifest(speech_ds, method=method, k=3, split_seed=5)
    assert (m.train_cases, m.eval_cases) == (again.train_cases, again.eval_cases)
    assert not set(m.train_cases) & set(m.eval_cases)
    assert not set(m.test_cases) & (set(m.train_cases) | set(m.eval_cases))
    assert m.eval_cases and m.train_cases
    if method == "leave_site_out":
        assert len({m.sites[s] for s in m.eval_cases}) == 1
    if method == "holdout":  # stratified by label: both classes held out
        labels = held_out_subjects(speech_ds, m, "eval")
        assert set(labels.values()) == {0, 1}


def test_staging_keeps_eval_labels_on_the_host(speech_ds: Path, tmp_path: Path) -> None:
    m = build_audio_manifest(speech_ds)
    parts = stage_audio_inputs(speech_ds, m, tmp_path / "stage")
    train = list(csv.DictReader((parts["train"] / "train.csv").open()))
    evals = list(csv.DictReader((parts["eval"] / "eval.csv").open()))
    assert {r["subject"] for r in train} == set(m.train_cases) and "label" in train[0]
    assert {r["subject"] for r in evals} == set(m.eval_cases) and "label" not in evals[0]
    assert all((parts["eval"] / r["path"]).is_file() for r in evals)
    assert stage_audio_inputs(speech_ds, m, tmp_path / "stage") == parts  # reused


def test_noise_bank_snr_and_determinism(speech_ds: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 0.1, 16000).astype(np.float32)
    for kind in ("white", "pink", "babble"):
        unit = noise(kind, len(clean), np.random.default_rng(1), 16000)
        mixed = mix_at_snr(clean, unit, 5.0)
        residual = mixed.astype(np.float64) - clean
        snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(residual**2))
        assert abs(snr - 5.0) < 0.05, kind
    m = build_audio_manifest(speech_ds)
    parts = stage_audio_inputs(speech_ds, m, tmp_path / "stage")
    conds = ("clean", "white_5db", "babble_0db")
    a = stage_noisy(parts["eval"], "eval", tmp_path / "stage", seed=1, conditions=conds)
    assert stage_noisy(parts["eval"], "eval", tmp_path / "stage", seed=1, conditions=conds) == a
    (tmp_path / "other").mkdir()
    b = stage_noisy(parts["eval"], "eval", tmp_path / "other", seed=1, conditions=conds)
    rel = next(csv.DictReader((parts["eval"] / "eval.csv").open()))["path"]
    assert (a / "white_5db" / rel).read_bytes() == (b / "white_5db" / rel).read_bytes()
    assert sorted(p.name for p in a.iterdir() if p.is_dir()) == ["babble_0db", "white_5db"]
