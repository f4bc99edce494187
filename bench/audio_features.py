"""Audio benchmark (issue 17), three parts in one run:

1. Feature extraction speed on one CPU core, as seconds of audio per CPU-second, for each
   of the six families and `all`, printed against the peer measured in the same run
   (librosa's plain melspectrogram on the same audio). Target: logmel and mfcc >= 100x.
2. On a generated speech dataset: subject-level F1 on clean audio and at 5 dB (pooled
   over white, pink, babble) for the baseline (mfcc + cnn) and a few arms, one seed each
   (single runs, not certified claims: a campaign certifies).
3. The speaker-leakage check on a copy with a planted duplicate subject.

    PYTHONPATH=. .venv/bin/python bench/audio_features.py [--seconds 60] [--subjects 40] [--skip-models]

Exit status 1 if the speed target is missed or the planted duplicate is not caught.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy/torch/numba load (imported in the functions)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_X = 100.0
ARMS = [
    {"features": "mfcc", "model": "cnn", "neuron": "none"},  # baseline
    {"features": "logmel", "model": "cnn", "neuron": "lif"},
    {"features": "logmel", "model": "hstn", "neuron": "arslif"},
    {"features": "logmel", "model": "hstn", "neuron": "arslif", "augmentation": "noise"},
]


def _cpu(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return max(best, 1e-9)


def speed(seconds: float) -> bool:
    import librosa
    import numpy as np

    from medloop.experiments.audio.features import FAMILIES, extract
    from medloop.experiments.dataset.audio_synth import make_speaker, speech

    sr = 16000
    y = speech(np.random.default_rng(0), make_speaker(np.random.default_rng(1), False), seconds, sr)
    extract(y[:sr], sr, "all")  # warm-up (numba compiles)
    peer = seconds / _cpu(lambda: librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40))
    print(f"== feature extraction, {seconds:.0f} s of 16 kHz audio, 1 core (x real time = audio s / CPU s)")
    print(f"  peer librosa.feature.melspectrogram     {peer:8.0f}x")
    ok = True
    for fam in (*FAMILIES, "all"):
        x = seconds / _cpu(lambda fam=fam: extract(y, sr, fam))
        mark = ""
        if fam in ("logmel", "mfcc"):
            ok &= x >= TARGET_X
            mark = "  (target >= 100x: " + ("met" if x >= TARGET_X else "MISSED") + ")"
        print(f"  medloop {fam:<10}                      {x:8.0f}x{mark}")
    return ok


def models(subjects: int, work: Path) -> None:
    from medloop.core.records import JobResult, Provenance, TrialSpec
    from medloop.core.specs import AudioConfig, DatasetRef, Objective
    from medloop.engine.tasks import ScoringContext, family
    from medloop.experiments.audio.train import run_audio
    from medloop.experiments.dataset.audio_synth import synth_speech

    ds = synth_speech(work / "speech", subjects=subjects, seed=0)
    start = time.monotonic()
    prep = family("audio").prepare(DatasetRef(path=ds), work / "stage")
    print(
        f"\n== subject-level F1, {subjects} synthetic speakers (noisy copies staged in {time.monotonic() - start:.0f} s)"
    )
    print(f"  eval subjects: {len(prep.manifest.eval_cases)}; one seed per arm (indicative, not certified)")
    in_dir = work / "in"
    in_dir.mkdir()
    for name, path in prep.staged.items():
        (in_dir / name).symlink_to(path)
    ctx = ScoringContext(dataset=prep, objective=Objective(metric="f1@5db"), workspace=work)
    prov = Provenance(code_version="bench", runtime="local", host="h", started_at="0", ended_at="1")
    for i, arm in enumerate(ARMS):
        config = AudioConfig(epochs=8, hidden=16, **arm)  # type: ignore[arg-type]
        spec = TrialSpec(task="audio", dataset=prep.manifest, config=config, seed=0)
        out = work / f"out{i}"
        t0 = time.monotonic()
        run_audio(spec, in_dir, out, lambda e: None)
        job = JobResult(key=str(i), status="succeeded", exit_code=0, wall_s=0, out_dir=out, provenance=prov)
        ev = family("audio").score(ctx, f"arm{i}", spec, job, "eval")
        assert ev is not None
        s, ci = ev.summary, ev.settings["ci95"]
        name = ", ".join(f"{k}={v}" for k, v in arm.items()) + (" (baseline)" if i == 0 else "")
        print(
            f"  {name:<62} F1 clean {s['f1@clean']:.3f} [{ci['f1@clean'][0]:.2f}, {ci['f1@clean'][1]:.2f}]"
            f"  F1@5dB {s['f1@5db']:.3f} [{ci['f1@5db'][0]:.2f}, {ci['f1@5db'][1]:.2f}]"
            f"  F1 AUC {s['f1_auc']:.3f}  ({time.monotonic() - t0:.0f} s)"
        )


def leakage(work: Path) -> bool:
    import csv

    from medloop.experiments.dataset.audio_checks import check_audio_dataset
    from medloop.experiments.dataset.audio_manifest import read_manifest
    from medloop.experiments.dataset.audio_synth import synth_speech

    ds = synth_speech(work / "leak", subjects=8, sessions=2, seconds=1.0, seed=9)
    rec = read_manifest(ds)[0]
    shutil.copyfile(ds / rec.path, ds / "planted.wav")
    with (ds / "manifest.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(["planted.wav", rec.label, "spk_planted", "s0", rec.site, "", "train"])
    found = [p.line() for p in check_audio_dataset(ds).problems if p.code == "duplicate_speaker"]
    print("\n== speaker leakage: planted duplicate subject " + ("caught" if found else "MISSED"))
    for line in found:
        print("  " + line)
    return bool(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    ok = speed(args.seconds)
    with tempfile.TemporaryDirectory(prefix="medloop-audio-bench-") as tmp:
        if not args.skip_models:
            models(args.subjects, Path(tmp))
        ok &= leakage(Path(tmp))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
