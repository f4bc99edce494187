"""Acoustic features per recording (librosa), framed at 10 ms, cut into segments.

Six families, each a (features, frames) float32 matrix:
    logmel     log mel power spectrogram (n_mels)
    mfcc       13 MFCCs with deltas and delta-deltas (39)
    contrast   spectral contrast, 6 bands + valley (7)
    chroma     chroma from the STFT (12)
    zcr        zero-crossing rate (1)
    rms_pitch  RMS energy (dB) and YIN pitch (log2 of f0 / 100 Hz) (2)
`all` stacks the six. One STFT is shared by the families that need it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAMILIES = ("logmel", "mfcc", "contrast", "chroma", "zcr", "rms_pitch")
FRAME_RATE = 100  # frames per second (hop 10 ms)


def load(path: Path, sr: int) -> np.ndarray:
    """Mono float32 samples at `sr` (resampled with soxr when the file differs)."""
    import librosa
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sr:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sr, res_type="soxr_hq")
    return np.asarray(mono, dtype=np.float32)


def n_features(family: str, n_mels: int) -> int:
    sizes = {"logmel": n_mels, "mfcc": 39, "contrast": 7, "chroma": 12, "zcr": 1, "rms_pitch": 2}
    return sum(sizes.values()) if family == "all" else sizes[family]


def extract(y: np.ndarray, sr: int, family: str, n_mels: int = 40) -> np.ndarray:
    """(n_features(family), frames) float32 for one recording."""
    import librosa

    hop = sr // FRAME_RATE
    n_fft = 1 << int(np.ceil(np.log2(0.025 * sr)))  # >= 25 ms window
    wanted = FAMILIES if family == "all" else (family,)
    y = np.asarray(y, dtype=np.float32)
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    out: list[np.ndarray] = []
    spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    logmel = np.zeros((0, spec.shape[1]), dtype=np.float32)
    if {"logmel", "mfcc"} & set(wanted):
        mel = librosa.feature.melspectrogram(S=spec**2, sr=sr, n_mels=n_mels)
        logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    for name in wanted:
        if name == "logmel":
            out.append(logmel)
        elif name == "mfcc":
            mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=13)
            width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2)) if mfcc.shape[1] >= 3 else 0
            if width >= 3:
                d1 = librosa.feature.delta(mfcc, width=width)
                d2 = librosa.feature.delta(mfcc, order=2, width=width)
            else:
                d1 = d2 = np.zeros_like(mfcc)
            out.append(np.concatenate([mfcc, d1, d2]))
        elif name == "contrast":
            out.append(librosa.feature.spectral_contrast(S=spec, sr=sr, n_fft=n_fft, hop_length=hop))
        elif name == "chroma":
            out.append(librosa.feature.chroma_stft(S=spec**2, sr=sr, n_fft=n_fft, hop_length=hop))
        elif name == "zcr":
            out.append(librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop))
        elif name == "rms_pitch":
            rms = librosa.amplitude_to_db(librosa.feature.rms(S=spec, frame_length=n_fft), ref=1.0)
            f0 = librosa.yin(y, fmin=60, fmax=400, sr=sr, frame_length=2 * n_fft, hop_length=hop)
            out.append(np.concatenate([rms, np.log2(f0[None, :] / 100.0)]))
        else:
            raise ValueError(f"unknown feature family {name!r}; known: {', '.join(FAMILIES)}, all")
    frames = min(m.shape[1] for m in out)
    return np.concatenate([m[:, :frames] for m in out]).astype(np.float32)


def segments(features: np.ndarray, length: int) -> np.ndarray:
    """(n, F, length) windows with 50 % overlap; a short recording is zero-padded to one."""
    _f, t = features.shape
    if t < length:
        return np.pad(features, ((0, 0), (0, length - t)))[None]
    step = max(1, length // 2)
    starts = range(0, t - length + 1, step)
    return np.stack([features[:, s : s + length] for s in starts])
