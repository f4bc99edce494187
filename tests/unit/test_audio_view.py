"""Dashboard pieces of an audio trial: spectrogram PNG from a dataset file (never from
outside the dataset folder), robustness curve and per-subject scores from the record."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from medloop.core.records import Campaign, Trial, TrialResult, TrialSpec
from medloop.core.specs import AudioConfig, parse_campaign_spec
from medloop.evaluation.audio import evaluate_audio_split
from medloop.experiments.dataset.audio_manifest import build_audio_manifest
from medloop.experiments.dataset.audio_synth import synth_speech
from medloop.web.audio_view import audio_panel


def _records(ds: Path) -> tuple[Trial, Campaign]:
    manifest = build_audio_manifest(ds)
    labels = {s: i % 2 for i, s in enumerate(manifest.eval_cases)}
    scores = {
        "clean": {s: 0.8 if y else 0.3 for s, y in labels.items()},
        "white_5db": {s: 0.6 for s in labels},
    }
    ev = evaluate_audio_split(scores, labels, split="eval", aggregation="mean", resamples=100)
    spec = parse_campaign_spec(
        {
            "name": "a",
            "goal": "g",
            "task": "audio",
            "dataset": str(ds),
            "objective": {"metric": "f1@5db"},
            "search_space": {"neuron": ["none", "lif"]},
        },
        source="t",
    )
    trial_spec = TrialSpec(task="audio", dataset=manifest, config=AudioConfig(), seed=0)
    trial = Trial(
        id="t1",
        campaign_id="c1",
        hypothesis_id=None,
        arm="baseline",
        spec=trial_spec,
        spec_hash="h",
        status="succeeded",
        result=TrialResult(
            trial_id="t1", spec_hash="h", status="succeeded", objective=0.5, evaluations={"eval": ev}
        ),
    )
    return trial, Campaign(id="c1", name="a", spec=spec)


def test_audio_panel(tmp_path: Path) -> None:
    ds = synth_speech(tmp_path / "ds", subjects=8, sessions=1, seconds=1.0, seed=2)
    trial, campaign = _records(ds)
    panel = audio_panel(trial, campaign, tmp_path)
    assert panel is not None and panel["robustness"] and "audio-robustness" in panel["robustness"]
    png = base64.b64decode(panel["spectrogram"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    rows = {r["subject"]: r["scores"] for r in panel["subjects"]}
    assert set(rows) == set(trial.spec.dataset.eval_cases) and set(next(iter(rows.values()))) == {
        "clean",
        "5db",
    }


def test_spectrogram_refuses_paths_outside_the_dataset(tmp_path: Path) -> None:
    ds = synth_speech(tmp_path / "ds", subjects=8, sessions=1, seconds=1.0, seed=2)
    trial, campaign = _records(ds)
    first = trial.spec.dataset.eval_cases[0]
    (tmp_path / "outside.wav").write_bytes((ds / f"audio/{first}/{first}_s0.wav").read_bytes())
    text = (ds / "manifest.csv").read_text().replace(f"audio/{first}/{first}_s0.wav", "../outside.wav")
    (ds / "manifest.csv").write_text(text)
    panel = audio_panel(trial, campaign, tmp_path)
    assert panel is not None and panel["spectrogram"] is None and panel["robustness"]


def test_log_mel_puts_a_tone_in_its_band_without_numba() -> None:
    """The dashboard's spectrogram is NumPy: a 1 kHz tone peaks in the mel band around 1 kHz,
    silence sits 80 dB down (tests/conftest.py fails the test if it pulls in numba)."""
    import numpy as np

    from medloop.web.audio_view import log_mel

    rate = 16000
    t = np.arange(rate) / rate
    tone = np.concatenate([np.sin(2 * np.pi * 1000 * t), np.zeros(rate)]).astype(np.float32)
    mel = log_mel(tone, rate, n_mels=64)
    assert mel.shape == (64, 2 * rate // 160 + 1)
    edges = 700.0 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 66) / 2595) - 1)
    band = int(np.argmax(mel[:, 20:80].mean(axis=1)))
    assert edges[band] < 1000 < edges[band + 2]
    assert mel[:, -20:].max() == pytest.approx(mel.max() - 80.0)
