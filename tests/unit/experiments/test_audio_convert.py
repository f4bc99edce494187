"""DAIC-WOZ and MODMA converters on small fakes of their documented layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.audio_checks import check_audio_dataset
from medloop.experiments.dataset.audio_convert import convert_daic_woz, convert_modma
from medloop.experiments.dataset.audio_manifest import read_manifest


def _wav(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.random.default_rng(seed).normal(0, 0.1, 8000).astype(np.float32), 16000)


def _daic(root: Path) -> Path:
    for i, pid in enumerate((300, 301, 302, 303, 304)):
        _wav(root / f"{pid}_P" / f"{pid}_AUDIO.wav", i)
    (root / "train_split_Depression_AVEC2017.csv").write_text(
        "Participant_ID,PHQ8_Binary,PHQ8_Score,Gender\n300,0,2,1\n301,1,15,0\n"
    )
    (root / "dev_split_Depression_AVEC2017.csv").write_text(
        "Participant_ID,PHQ8_Binary,PHQ8_Score,Gender\n302,1,11,1\n"
    )
    (root / "full_test_split.csv").write_text("Participant_ID,PHQ_Binary,PHQ_Score,Gender\n303,0,4,1\n")
    (root / "test_split_Depression_AVEC2017.csv").write_text("participant_ID,Gender\n303,1\n304,0\n")
    return root


def test_daic_woz(tmp_path: Path) -> None:
    dst = convert_daic_woz(_daic(tmp_path / "daic"), tmp_path / "out")
    recs = {r.subject: r for r in read_manifest(dst)}
    assert set(recs) == {"300", "301", "302", "303"}  # 304 has no label anywhere
    assert (recs["301"].label, recs["301"].phq, recs["301"].split) == (1, 15.0, "train")
    assert (recs["303"].label, recs["303"].split) == (0, "test")
    assert check_audio_dataset(dst).ok


def test_daic_woz_missing_audio_names_the_participant(tmp_path: Path) -> None:
    src = _daic(tmp_path / "daic")
    (src / "302_P" / "302_AUDIO.wav").unlink()
    with pytest.raises(DatasetError, match=r"dev_split_Depression_AVEC2017\.csv line 2: participant 302"):
        convert_daic_woz(src, tmp_path / "out")


def test_modma(tmp_path: Path) -> None:
    src = tmp_path / "modma"
    for i, sid in enumerate(("02010001", "02010002", "02020001")):
        for k in range(2):
            _wav(src / sid / f"{k + 1:02d}.wav", 10 * i + k)
    (src / "subjects_information_audio_lanzhou_2015.csv").write_text(
        "subject id,type,age,gender,PHQ-9\n02010001,MDD,30,F,18\n02010002,MDD,41,M,21\n02020001,HC,28,F,2\n"
    )
    dst = convert_modma(src, tmp_path / "out")
    recs = read_manifest(dst)
    assert len(recs) == 6 and {r.session for r in recs} == {"01", "02"}
    assert {(r.subject, r.label, r.phq) for r in recs} == {
        ("02010001", 1, 18.0),
        ("02010002", 1, 21.0),
        ("02020001", 0, 2.0),
    }
    (src / "subjects_information_audio_lanzhou_2015.csv").write_text("subject id,type\n02010001,depressed\n")
    with pytest.raises(DatasetError, match="line 2: type 'depressed' is not MDD or HC"):
        convert_modma(src, tmp_path / "out2")
    with pytest.raises(DatasetError, match="not a folder"):
        convert_daic_woz(tmp_path / "nowhere", tmp_path / "out3")
