"""Patient-level classification metrics on known arrays, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as sklearn_metrics  # installed with the audio and data extras (librosa, nilearn)

from medloop.evaluation.classification import evaluate_classification_split


def _one_case_per_patient(y: np.ndarray, s: np.ndarray):  # type: ignore[no-untyped-def]
    labels = {f"c{i:02d}": int(v) for i, v in enumerate(y)}
    probs = {f"c{i:02d}": float(v) for i, v in enumerate(s)}
    return probs, labels, {c: f"p{c}" for c in labels}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_and_shares_average_to_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 30)
    y[:2] = [0, 1]
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 30), 0, 1).round(2)  # ties included
    probs, labels, patients = _one_case_per_patient(y, s)
    ev = evaluate_classification_split(probs, labels, patients, split="eval", resamples=300, seed=seed)
    pred = (s >= 0.5).astype(int)
    assert ev.summary["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s))
    assert ev.summary["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert ev.summary["balanced_accuracy"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(y, pred))
    for metric in ("auroc", "accuracy", "balanced_accuracy"):
        shares = [c.metrics[metric]["all"] for c in ev.cases]
        assert np.mean(shares) == pytest.approx(ev.summary[metric])  # the engine's paired unit
        lo, hi = ev.settings["ci95"][metric]
        assert lo <= ev.summary[metric] <= hi and hi - lo > 0  # type: ignore[operator]


def test_cases_are_averaged_per_patient_and_missing_cases_count_wrong() -> None:
    labels = {"a1": 1, "a2": 1, "b1": 0, "c1": 0, "c2": 0, "d1": 1}
    patients = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C", "d1": "D"}
    probs = {"a1": 0.9, "a2": 0.3, "b1": 0.2, "c1": 0.7, "c2": 0.5}  # d1 missing
    ev = evaluate_classification_split(probs, labels, patients, split="eval", resamples=100)
    assert ev.settings["patient_scores"] == {"A": 0.6, "B": 0.2, "C": 0.6, "D": 0.0}
    assert ev.settings["missing_cases"] == ["d1"] and {c.case for c in ev.cases} == {"A", "B", "C", "D"}
    y, s = np.array([1, 0, 0, 1]), np.array([0.6, 0.2, 0.6, 0.0])
    assert ev.summary["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s))
    assert ev.summary["balanced_accuracy"] == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(y, (s >= 0.5).astype(int))
    )


def test_one_class_split_has_no_auroc_but_accuracy() -> None:
    labels = {"a": 1, "b": 1}
    ev = evaluate_classification_split({"a": 0.8, "b": 0.4}, labels, {}, split="test", resamples=50)
    assert ev.summary["auroc"] is None and ev.summary["accuracy"] == 0.5
    assert ev.summary["balanced_accuracy"] == 0.5 and "auroc" not in ev.settings["ci95"]
