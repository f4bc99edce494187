"""Audio trials on the dashboard: a log-mel spectrogram of an example recording (rendered
on the host to a PNG data URI from a dataset file), the robustness curve (metric per noise
level) and the per-subject scores, all from stored records except the example file."""

from __future__ import annotations

import base64
import csv
import struct
import zlib
from pathlib import Path
from typing import Any

from medloop.core.records import Campaign, Trial
from medloop.web import charts

LEVELS = ("clean", "20db", "10db", "5db", "0db")
_COLOURS = {"f1": "#1f77b4", "accuracy": "#2ca02c", "auroc": "#9467bd"}


def robustness_svg(trial: Trial, split: str = "eval") -> str | None:
    """F1, accuracy and AUROC per level (x: 0 = clean, then 20, 10, 5, 0 dB)."""
    ev = trial.result.evaluations.get(split) if trial.result else None
    curve = (ev.settings.get("curve") if ev else None) or {}
    series = []
    for metric, colour in _COLOURS.items():
        values = curve.get(metric) or {}
        pts = [(float(i), float(values[lv])) for i, lv in enumerate(LEVELS) if values.get(lv) is not None]
        if pts:
            series.append(charts.Series(metric, pts, colour=colour, dots=len(pts) == 1))
    if not series:
        return None
    return charts.line_chart(
        series,
        title="robustness curve (subject level)",
        x_label="noise level: 0 clean, 1 = 20 dB, 2 = 10 dB, 3 = 5 dB, 4 = 0 dB",
        y_label="metric",
        width=520,
        height=260,
        chart_id="audio-robustness",
    )


def subject_rows(trial: Trial, split: str = "eval") -> list[dict[str, Any]]:
    """One row per subject: its score per level (mean over the noise kinds)."""
    ev = trial.result.evaluations.get(split) if trial.result else None
    scores: dict[str, dict[str, float]] = (ev.settings.get("subject_scores") if ev else None) or {}
    rows: dict[str, dict[str, list[float]]] = {}
    for cond, by_subject in scores.items():
        level = cond.rsplit("_", 1)[-1]
        for subject, value in by_subject.items():
            rows.setdefault(subject, {}).setdefault(level, []).append(float(value))
    return [
        {"subject": s, "scores": {lv: sum(v) / len(v) for lv, v in levels.items()}}
        for s, levels in sorted(rows.items())
    ]


def spectrogram_png(campaign: Campaign, trial: Trial, cwd: Path, max_seconds: float = 4.0) -> str | None:
    """A data: URI of the log-mel spectrogram of the first recording of the trial's first
    evaluation subject, or None (no file, unreadable, or outside the dataset folder)."""
    root = (cwd / campaign.spec.dataset.path).resolve()
    subjects = set(trial.spec.dataset.eval_cases[:1])
    try:
        with (root / "manifest.csv").open(newline="", encoding="utf-8-sig") as fh:
            row = next((r for r in csv.DictReader(fh) if r.get("subject") in subjects), None)
    except OSError:
        return None
    if row is None:
        return None
    path = (root / row["path"]).resolve()
    if not path.is_relative_to(root) or path.is_symlink() or not path.is_file():
        return None
    try:
        import numpy as np
        import soundfile as sf

        data, rate = sf.read(str(path), dtype="float32", always_2d=True, frames=int(max_seconds * 48000))
        y = data.mean(axis=1)[: int(max_seconds * rate)]
        mel = log_mel(y, rate)
    except Exception:  # noqa: BLE001 - a figure that cannot be drawn is left out, never a page error
        return None
    lo, hi = float(np.percentile(mel, 5)), float(mel.max())
    img = np.clip((mel[::-1] - lo) / max(hi - lo, 1e-6), 0, 1)
    return "data:image/png;base64," + base64.b64encode(_png(img)).decode()


def log_mel(y: Any, rate: int, n_mels: int = 64) -> Any:
    """(n_mels, frames) log-mel power in dB (HTK mel scale, Hann window of >= 25 ms, hop 10 ms,
    80 dB range), in NumPy. Not librosa: its import JIT-compiles numba kernels, and the web
    server (like the orchestrator) never JIT-compiles in its own process (docs/design-notes.md)."""
    import numpy as np

    n_fft = 1 << int(np.ceil(np.log2(0.025 * rate)))
    hop = max(1, rate // 100)
    y = np.pad(
        np.asarray(y, dtype=np.float64), n_fft // 2, mode="reflect" if len(y) > n_fft // 2 else "constant"
    )
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2  # (frames, bins)

    top = 2595.0 * np.log10(1.0 + rate / 2 / 700.0)  # the Nyquist frequency in mel
    edges = 700.0 * (10 ** (np.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower = (bins[None, :] - edges[:-2, None]) / np.maximum(edges[1:-1, None] - edges[:-2, None], 1e-9)
    upper = (edges[2:, None] - bins[None, :]) / np.maximum(edges[2:, None] - edges[1:-1, None], 1e-9)
    weights = np.maximum(0.0, np.minimum(lower, upper))  # (n_mels, bins) triangles
    db = 10.0 * np.log10(np.maximum(weights @ power.T, 1e-10))
    return np.maximum(db, db.max() - 80.0)


def _png(img: Any) -> bytes:
    """A minimal RGB PNG of a (H, W) array in [0, 1] (dark blue -> yellow)."""
    import numpy as np

    h, w = img.shape
    rgb = np.stack([img**0.8 * 255, img * 230, (1 - img) * 140 + 40], axis=-1).astype(np.uint8)
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def audio_panel(trial: Trial, campaign: Campaign | None, cwd: Path) -> dict[str, Any] | None:
    """What trial.html shows for an audio trial; None for other tasks."""
    if trial.spec.task != "audio":
        return None
    return {
        "spectrogram": spectrogram_png(campaign, trial, cwd) if campaign is not None else None,
        "robustness": robustness_svg(trial),
        "subjects": subject_rows(trial),
        "levels": LEVELS,
    }
