"""Speech-like recordings with class-dependent prosody, for demos and tests (numpy/scipy).

A recording is a harmonic source on a pitch contour, shaped per syllable by formant
resonators (a vowel of the speaker's vocal tract), under a syllable envelope, with pauses.
The condition class (label 1, "depressed") speaks with less pitch variability, a slower
syllable rate and longer pauses; each speaker has its own timbre (base pitch, formant
scale, spectral tilt) and speaks in several sessions, so a split that puts one speaker on
both sides lets a model recognise the voice instead of the prosody (speaker leakage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from medloop.core.errors import DatasetError
from medloop.experiments.dataset.audio_manifest import Recording, write_manifest

# (F1, F2, F3) in Hz of a few vowels (an average adult vocal tract)
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]]
)


@dataclass(frozen=True)
class Speaker:
    f0: float  # base pitch (Hz)
    formant_scale: float  # vocal tract length factor
    tilt: float  # harmonic amplitude ~ k ** -tilt
    pitch_var: float  # relative pitch excursion
    rate: float  # syllables per second
    pause: float  # mean pause (s)


def make_speaker(rng: np.random.Generator, condition: bool) -> Speaker:
    """A random speaker; the condition shifts prosody (flatter, slower, more pauses)."""
    female = rng.random() < 0.5
    return Speaker(
        f0=float(rng.normal(205 if female else 115, 18)),
        formant_scale=float(rng.normal(1.15 if female else 1.0, 0.05)),
        tilt=float(rng.uniform(0.9, 1.6)),
        pitch_var=float(max(0.01, rng.normal(0.05 if condition else 0.13, 0.025))),
        rate=float(max(1.5, rng.normal(3.2 if condition else 4.6, 0.5))),
        pause=float(max(0.03, rng.normal(0.32 if condition else 0.12, 0.06))),
    )


def _resonate(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    return np.asarray(lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x))


def speech(rng: np.random.Generator, speaker: Speaker, seconds: float, sr: int = 16000) -> np.ndarray:
    """One recording (float32, peak about 0.5) of `seconds` by `speaker`."""
    n = int(seconds * sr)
    out = np.zeros(n, dtype=np.float64)
    t = 0.15 * rng.random()
    # slow intonation: a few random sinusoids plus declination over the recording
    grid = np.arange(n) / sr
    contour = sum(
        rng.normal(0, 1) * np.sin(2 * np.pi * rng.uniform(0.3, 2.0) * grid + rng.uniform(0, 6.3))
        for _ in range(3)
    )
    f0 = speaker.f0 * (1 + speaker.pitch_var * np.asarray(contour) / 1.7 - 0.05 * grid / max(seconds, 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    while t < seconds:
        dur = float(np.clip(rng.normal(1.0, 0.25), 0.5, 1.6) / speaker.rate)
        a, b = int(t * sr), min(n, int((t + dur) * sr))
        if b - a > 32:
            ph = phase[a:b]
            k_max = int(min(30, 3800 / max(speaker.f0, 60)))
            ks = np.arange(1, k_max + 1)[:, None]
            source = (np.sin(ks * ph[None, :]) * ks**-speaker.tilt).sum(axis=0)
            source += 0.02 * rng.normal(size=b - a)  # aspiration
            vowel = _VOWELS[rng.integers(len(_VOWELS))] * speaker.formant_scale
            voiced = sum(
                _resonate(source, float(f), 60.0 + 40.0 * i, sr) * (0.8**i) for i, f in enumerate(vowel)
            )
            env = np.sin(np.linspace(0, np.pi, b - a)) ** 2 * rng.uniform(0.6, 1.0)
            out[a:b] += np.asarray(voiced) * env
        t += dur
        if rng.random() < 0.35:
            t += float(rng.exponential(speaker.pause))
    out += 1e-3 * rng.normal(size=n)  # room noise floor
    peak = float(np.max(np.abs(out))) or 1.0
    return (out / peak * rng.uniform(0.35, 0.6)).astype(np.float32)


def synth_speech(
    dest: Path,
    *,
    subjects: int = 40,
    sessions: int = 3,
    seconds: float = 4.0,
    test_subjects: int | None = None,
    sites: int = 2,
    seed: int = 0,
    sr: int = 16000,
) -> Path:
    """Write an audio dataset (WAV files + manifest.csv) of `subjects` synthetic speakers,
    half of them in the condition class, `sessions` recordings each."""
    import soundfile as sf

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise DatasetError(f"{dest}: folder exists and is not empty", hint="pick a new folder")
    if subjects < 4:
        raise DatasetError("--cases: a speech dataset needs at least 4 subjects")
    n_test = subjects // 5 if test_subjects is None else test_subjects
    rng = np.random.default_rng(seed)
    recs: list[Recording] = []
    for i in range(subjects):
        condition = i % 2 == 1
        speaker = make_speaker(rng, condition)
        subject = f"spk{i:03d}"
        site = f"site{i % sites}" if sites > 1 else ""
        phq = float(rng.integers(10, 25) if condition else rng.integers(0, 10))
        split = "test" if i >= subjects - n_test else "train"
        for s in range(sessions):
            rel = f"audio/{subject}/{subject}_s{s}.wav"
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(dest / rel), speech(rng, speaker, seconds, sr), sr, subtype="PCM_16")
            recs.append(Recording(rel, int(condition), subject, f"s{s}", site, phq, split))
    write_manifest(dest, recs)
    return dest
