"""Subject-level metrics of an audio trial, per noise condition, from per-segment
probabilities (pure functions of predictions and labels).

A subject's score is the mean of its segments' probabilities (`mean`) or the share of
its segments above 0.5 (`vote`); it is called positive at >= 0.5. Per SNR level the
metrics (accuracy, precision, recall, F1, AUROC) are averaged over the noise kinds;
`<metric>_auc` is the normalised trapezoidal area under the metric-vs-level curve with
the levels equally spaced in the order clean, 20, 10, 5, 0 dB.

F1, precision, recall and AUROC are not means over subjects. Each subject gets its
*share* of the set-level value (for F1: N * 2 tp_i / (2 TP + FP + FN); for AUROC its
rank wins against the other class, weighted so both classes count half), so the mean of
the shares is exactly the metric and the engine's paired, case-level statistics compare
arms subject by subject. Bootstrap CIs resample subjects and recompute the set metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medloop.core.records import CaseEvaluation, SplitEvaluation

BASE_METRICS = ("accuracy", "precision", "recall", "f1", "auroc")
LEVELS = ("clean", "20db", "10db", "5db", "0db")
IMPLEMENTATION = "medloop.evaluation.audio v1 (subject shares, threshold 0.5)"


def subject_scores(segment_probs: Mapping[str, Sequence[float]], how: str) -> dict[str, float]:
    """subject -> score from its segments' probabilities (mean or vote)."""
    out: dict[str, float] = {}
    for subject, probs in segment_probs.items():
        arr = np.asarray(probs, dtype=float)
        if arr.size == 0:
            continue
        out[subject] = float(np.mean(arr >= 0.5)) if how == "vote" else float(arr.mean())
    return out


def metric_values(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    """Set-level metrics of labels `y` (0/1) and scores `s`."""
    pred = s >= 0.5
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    return {
        "accuracy": float(np.mean(pred == (y == 1))) if y.size else None,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
        "auroc": _auroc(y, s),
    }


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    pos, neg = s[y == 1], s[y == 0]
    if not pos.size or not neg.size:
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def metric_shares(y: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray | None]:
    """Per-subject shares whose mean is each metric (None where the metric is undefined)."""
    n = y.size
    pred = s >= 0.5
    tp_i = (pred & (y == 1)).astype(float)
    tp, fp, fn = tp_i.sum(), float(np.sum(pred & (y == 0))), float(np.sum(~pred & (y == 1)))
    out: dict[str, np.ndarray | None] = {"accuracy": (pred == (y == 1)).astype(float)}
    out["precision"] = n * tp_i / (tp + fp) if tp + fp else np.zeros(n)
    out["recall"] = n * tp_i / (tp + fn) if tp + fn else None
    out["f1"] = n * 2 * tp_i / (2 * tp + fp + fn) if 2 * tp + fp + fn else np.zeros(n)
    pos, neg = y == 1, y == 0
    if pos.any() and neg.any():
        beats = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])  # (N, N)
        wins = np.where(pos, beats[:, neg].mean(axis=1), beats.T[:, pos].mean(axis=1))
        weight = np.where(pos, n / (2 * pos.sum()), n / (2 * neg.sum()))
        out["auroc"] = wins * weight
    else:
        out["auroc"] = None
    return out


def level_weights(levels: Sequence[str]) -> dict[str, float]:
    """Trapezoid weights over the present levels, equally spaced, summing to 1."""
    present = [lv for lv in LEVELS if lv in levels]
    if len(present) == 1:
        return {present[0]: 1.0}
    raw = [0.5 if i in (0, len(present) - 1) else 1.0 for i in range(len(present))]
    return {lv: w / sum(raw) for lv, w in zip(present, raw, strict=True)}


def _by_level(conditions: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cond in conditions:
        level = cond.rsplit("_", 1)[-1]
        if level in LEVELS:
            out.setdefault(level, []).append(cond)
    return out


def evaluate_audio_split(
    scores: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, int],
    *,
    split: str,
    aggregation: str,
    resamples: int = 1000,
    seed: int = 0,
    sites: Mapping[str, str] | None = None,
) -> SplitEvaluation:
    """`scores`: condition -> subject -> score; every labelled subject must have a score
    under every condition (a missing one scores as the wrong class, the worst case)."""
    subjects = sorted(labels)
    y = np.asarray([labels[s] for s in subjects], dtype=int)
    conditions = sorted(scores)
    levels = _by_level(conditions)
    weights = level_weights(list(levels))
    s_by_cond = {
        c: np.asarray([scores[c].get(s, 1.0 - labels[s]) for s in subjects], dtype=float) for c in conditions
    }
    shares = {c: metric_shares(y, s_by_cond[c]) for c in conditions}
    case_metrics: list[dict[str, dict[str, float | None]]] = [{} for _ in subjects]
    for m in BASE_METRICS:
        auc_parts: list[np.ndarray] = []
        for level, conds in levels.items():
            per_kind = {c.rsplit("_", 1)[0]: shares[c][m] for c in conds}
            for i in range(len(subjects)):
                case_metrics[i][f"{m}@{level}"] = {
                    k: (None if v is None else float(v[i])) for k, v in per_kind.items()
                }
                if level != "clean":
                    for kind, v in per_kind.items():
                        case_metrics[i][f"{m}@{level}:noise={kind}"] = {
                            "value": None if v is None else float(v[i])
                        }
            defined = [v for v in per_kind.values() if v is not None]
            if defined and len(defined) == len(per_kind):
                auc_parts.append(weights[level] * np.mean(defined, axis=0))
        if len(auc_parts) == len(levels):
            total = np.sum(auc_parts, axis=0)
            for i in range(len(subjects)):
                case_metrics[i][f"{m}_auc"] = {"all": float(total[i])}
    cases = [
        CaseEvaluation(case=subj, site=(sites or {}).get(subj), metrics=case_metrics[i])
        for i, subj in enumerate(subjects)
    ]
    summary: dict[str, float | None] = {}
    for key in case_metrics[0] if case_metrics else {}:
        vals = [
            np.mean([v for v in cm[key].values() if v is not None]) for cm in case_metrics if _has(cm[key])
        ]
        summary[key] = float(np.mean(vals)) if len(vals) == len(subjects) else None
    curve = {m: {lv: summary.get(f"{m}@{lv}") for lv in LEVELS if lv in levels} for m in BASE_METRICS}
    return SplitEvaluation(
        split=split,
        cases=cases,
        summary=summary,
        implementation=IMPLEMENTATION,
        empty_rule="missing_subject_wrong",
        settings={
            "unit": "subject",
            "aggregation": aggregation,
            "threshold": 0.5,
            "conditions": conditions,
            "curve": curve,
            "ci95": bootstrap_cis(y, s_by_cond, levels, weights, resamples=resamples, seed=seed),
            "subject_scores": {
                c: {s: round(float(v), 6) for s, v in zip(subjects, s_by_cond[c], strict=True)}
                for c in conditions
            },
            "labels_positive": int(y.sum()),
            "n_subjects": len(subjects),
        },
    )


def _has(values: Mapping[str, float | None]) -> bool:
    return any(v is not None for v in values.values())


def bootstrap_cis(
    y: np.ndarray,
    s_by_cond: Mapping[str, np.ndarray],
    levels: Mapping[str, list[str]],
    weights: Mapping[str, float],
    *,
    resamples: int,
    seed: int,
) -> dict[str, list[float]]:
    """95 % percentile CIs of every `<metric>@<level>` and `<metric>_auc`, resampling
    subjects (the same resample for every condition, so the curve moves together)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    n = y.size
    for _ in range(resamples if n else 0):
        idx = rng.integers(0, n, n)
        level_vals: dict[str, dict[str, float]] = {}  # level -> metric -> value (defined only)
        for level, conds in levels.items():
            per = [metric_values(y[idx], s_by_cond[c][idx]) for c in conds]
            level_vals[level] = {}
            for m in BASE_METRICS:
                got = [v for v in (p[m] for p in per) if v is not None]
                if len(got) == len(per):
                    level_vals[level][m] = float(np.mean(got))
        for m in BASE_METRICS:
            for lv in levels:
                if m in level_vals[lv]:
                    draws.setdefault(f"{m}@{lv}", []).append(level_vals[lv][m])
            if all(m in level_vals[lv] for lv in levels):
                draws.setdefault(f"{m}_auc", []).append(sum(weights[lv] * level_vals[lv][m] for lv in levels))
    return {
        k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in sorted(draws.items())
    }
