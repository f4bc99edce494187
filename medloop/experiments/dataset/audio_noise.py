"""Noisy copies of evaluation recordings, mixed on the host from a seeded noise bank.

Every (file, noise kind) pair draws its noise from a generator seeded by the bank seed,
the kind and the file name, so each arm of a campaign is scored on byte-identical noisy
copies. Copies are cached under a key over the staged split's content, the seed and the
conditions: a second campaign on the same data reuses them.

Conditions are `clean` and `<kind>_<snr>db` for kind in white, pink and babble (a mix of
several synthetic talkers that are not in the dataset) at 20, 10, 5 and 0 dB SNR.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medloop.experiments.dataset.audio_manifest import read_audio
from medloop.experiments.dataset.audio_synth import make_speaker, speech

NOISE_KINDS = ("white", "pink", "babble")
SNR_DB = (20, 10, 5, 0)
CONDITIONS = ("clean", *(f"{kind}_{snr}db" for kind in NOISE_KINDS for snr in SNR_DB))
BABBLE_TALKERS = 6
BANK_VERSION = "1"


def condition_snr(condition: str) -> str:
    """'white_5db' -> '5db'; 'clean' -> 'clean'."""
    return condition.rsplit("_", 1)[-1]


def noise(kind: str, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """`n` samples of unit-RMS noise of `kind`."""
    if kind == "white":
        out = rng.normal(size=n)
    elif kind == "pink":  # 1/f power: shape white noise's spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(rng.normal(size=n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spectrum /= np.sqrt(np.maximum(freqs, freqs[1] if n > 1 else 1.0))
        out = np.fft.irfft(spectrum, n)
    elif kind == "babble":
        seconds = n / sr + 0.1
        out = sum(
            (
                speech(rng, make_speaker(rng, bool(rng.random() < 0.5)), seconds, sr)[:n]
                for _ in range(BABBLE_TALKERS)
            ),
            np.zeros(n),
        )
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    rms = float(np.sqrt(np.mean(np.square(out)))) or 1.0
    return np.asarray(out / rms, dtype=np.float64)


def mix_at_snr(clean: np.ndarray, unit_noise: np.ndarray, snr_db: float) -> np.ndarray:
    """clean + noise scaled so that 10 log10(P_clean / P_noise) = snr_db (powers over
    the whole recording); float32, peak-limited to full scale only if it would clip."""
    p_clean = float(np.mean(np.square(clean, dtype=np.float64)))
    scale = float(np.sqrt(p_clean / 10 ** (snr_db / 10)))
    mixed: np.ndarray = clean.astype(np.float64) + scale * unit_noise[: len(clean)]
    peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
    if peak > 1.0:
        mixed /= peak
    return mixed.astype(np.float32)


def _file_rng(seed: int, kind: str, rel: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\0{kind}\0{rel}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _split_key(split_dir: Path, seed: int, conditions: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"{BANK_VERSION}\0{seed}\0{','.join(conditions)}".encode())
    for path in sorted(p for p in split_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(split_dir)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def stage_noisy(
    split_dir: Path,
    split: str,
    staging_root: Path,
    *,
    seed: int = 0,
    conditions: tuple[str, ...] = CONDITIONS,
) -> Path:
    """Write `<staging_root>/audio-noisy-<key>/<condition>/<path>` for every recording
    listed in `split_dir/<split>.csv` and every noisy condition (clean stays where it is);
    returns the folder (reused when the key matches)."""
    import soundfile as sf

    noisy = tuple(c for c in conditions if c != "clean")
    dest = Path(staging_root) / f"audio-noisy-{split}-{_split_key(split_dir, seed, noisy)}"
    if (dest / ".complete").is_file():
        return dest
    with (split_dir / f"{split}.csv").open(newline="") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    tmp = Path(tempfile.mkdtemp(dir=staging_root, prefix=".stage-noisy-"))
    try:
        for rel in paths:
            clean, sr = read_audio(split_dir / rel)
            kinds = sorted({c.rsplit("_", 1)[0] for c in noisy})
            bank = {kind: noise(kind, len(clean), _file_rng(seed, kind, rel), sr) for kind in kinds}
            for cond in noisy:
                kind, snr = cond.rsplit("_", 1)
                out = tmp / cond / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(
                    str(out),
                    mix_at_snr(clean, bank[kind], float(snr.removesuffix("db"))),
                    sr,
                    subtype="PCM_24",
                )
        (tmp / ".complete").write_text(",".join(noisy) + "\n")
        try:
            tmp.rename(dest)
        except OSError:
            if not (dest / ".complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
