"""Patient-level metrics of a volume classification trial from the per-case probabilities
a job wrote (pure functions of predictions and labels).

A patient's score is the mean probability of class 1 over its cases (scans); it is called
positive at >= 0.5. AUROC, accuracy and balanced accuracy are set-level metrics; as in
evaluation/audio.py, each patient gets its *share* (mean of the shares = the metric), so
the engine's paired case-level statistics compare arms patient by patient. Bootstrap CIs
resample patients and recompute the set-level metric.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from medloop.core.records import CaseEvaluation, SplitEvaluation
from medloop.evaluation.audio import metric_shares, metric_values

METRICS = ("auroc", "accuracy", "balanced_accuracy")
IMPLEMENTATION = "medloop.evaluation.classification v1 (patient mean probability, threshold 0.5)"
THRESHOLD = 0.5


def patient_scores(
    case_probs: Mapping[str, float], labels: Mapping[str, int], patients: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, int]]:
    """(patient -> mean probability over its cases, patient -> label). A case without a
    probability counts as the wrong class (1 - label): a missing answer is the worst one."""
    probs: dict[str, list[float]] = {}
    plabel: dict[str, int] = {}
    for case, label in labels.items():
        patient = patients.get(case, case)
        probs.setdefault(patient, []).append(float(case_probs.get(case, 1.0 - label)))
        plabel[patient] = int(label)
    return {p: float(np.mean(v)) for p, v in probs.items()}, plabel


def balanced_accuracy(y: np.ndarray, s: np.ndarray) -> float | None:
    """Mean recall over the classes present in `y` (sklearn's definition)."""
    pred = (s >= THRESHOLD).astype(int)
    present = [c for c in (0, 1) if np.any(y == c)]
    if not present:
        return None
    return float(np.mean([np.mean(pred[y == c] == c) for c in present]))


def balanced_accuracy_shares(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-patient shares whose mean is the balanced accuracy: n * correct_i / (K n_{y_i})."""
    correct = ((s >= THRESHOLD).astype(int) == y).astype(float)
    present = [c for c in (0, 1) if np.any(y == c)]
    counts = np.array([np.sum(y == c) for c in (0, 1)], dtype=float)
    out: np.ndarray = y.size * correct / (len(present) * counts[y])
    return out


def set_metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    base = metric_values(y, s)
    return {
        "auroc": base["auroc"],
        "accuracy": base["accuracy"],
        "balanced_accuracy": balanced_accuracy(y, s),
    }


def bootstrap_cis(y: np.ndarray, s: np.ndarray, *, resamples: int, seed: int) -> dict[str, list[float]]:
    """95 % percentile CIs of each metric, resampling patients (resamples where a metric
    is undefined, e.g. AUROC with one class, are left out for that metric)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(resamples if y.size else 0):
        idx = rng.integers(0, y.size, y.size)
        for m, v in set_metrics(y[idx], s[idx]).items():
            if v is not None:
                draws[m].append(v)
    return {m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for m, v in draws.items() if v}


def evaluate_classification_split(
    case_probs: Mapping[str, float],
    labels: Mapping[str, int],
    patients: Mapping[str, str],
    *,
    split: str,
    resamples: int = 2000,
    seed: int = 0,
    sites: Mapping[str, str] | None = None,
) -> SplitEvaluation:
    """`labels`: case -> 0/1 for every case of the split (host-only); `patients`: case ->
    patient. One CaseEvaluation per patient, metric shares under class key "all"."""
    scores, plabels = patient_scores(case_probs, labels, patients)
    names = sorted(plabels)
    y = np.asarray([plabels[p] for p in names], dtype=int)
    s = np.asarray([scores[p] for p in names], dtype=float)
    shares = metric_shares(y, s) if names else {}
    per: dict[str, np.ndarray | None] = {
        "auroc": shares.get("auroc"),
        "accuracy": shares.get("accuracy"),
        "balanced_accuracy": balanced_accuracy_shares(y, s) if names else None,
    }
    site_of: dict[str, str] = {}
    for case in sorted(labels):
        if sites and case in sites:
            site_of.setdefault(patients.get(case, case), sites[case])
    cases = [
        CaseEvaluation(
            case=p,
            site=site_of.get(p),
            metrics={m: {"all": None if v is None else float(v[i])} for m, v in per.items()},
        )
        for i, p in enumerate(names)
    ]
    summary = set_metrics(y, s) if names else dict.fromkeys(METRICS)
    by_site: dict[str, dict[str, float | None]] = {}
    for site in sorted(set(site_of.values())):
        idx = np.asarray([site_of.get(p) == site for p in names])
        by_site[site] = set_metrics(y[idx], s[idx])
    return SplitEvaluation(
        split=split,
        cases=cases,
        summary=summary,
        implementation=IMPLEMENTATION,
        empty_rule="missing_case_wrong",
        by_site=by_site,
        settings={
            "unit": "patient",
            "aggregation": "mean",
            "threshold": THRESHOLD,
            "ci95": bootstrap_cis(y, s, resamples=resamples, seed=seed),
            "resamples": resamples,
            "patient_scores": {p: round(float(v), 6) for p, v in zip(names, s, strict=True)},
            "patient_labels": {p: int(v) for p, v in zip(names, y, strict=True)},
            "case_probs": {c: round(float(v), 6) for c, v in sorted(case_probs.items()) if c in labels},
            "case_patients": {c: patients.get(c, c) for c in sorted(labels)},
            "missing_cases": sorted(c for c in labels if c not in case_probs),
            "n_patients": len(names),
            "n_cases": len(labels),
            "labels_positive": int(y.sum()),
        },
    )
