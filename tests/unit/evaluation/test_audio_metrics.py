"""Subject-level audio metrics: shares average exactly to the set metric, AUROC, the
robustness curve and its area, bootstrap CIs over subjects."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from medloop.engine.base import case_objective
from medloop.evaluation.audio import (
    evaluate_audio_split,
    level_weights,
    metric_shares,
    metric_values,
    subject_scores,
)


def test_shares_mean_is_the_set_metric() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 15)
        y[:2] = [0, 1]
        s = np.round(rng.random(15), 1)  # ties on purpose
        values, shares = metric_values(y, s), metric_shares(y, s)
        pred = (s >= 0.5).astype(int)
        assert values["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
        assert values["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
        assert values["recall"] == pytest.approx(recall_score(y, pred))
        assert values["auroc"] == pytest.approx(roc_auc_score(y, s))
        for name, share in shares.items():
            assert share is not None and float(np.mean(share)) == pytest.approx(values[name]), name


def test_subject_scores_mean_and_vote() -> None:
    probs = {"a": [0.9, 0.2, 0.6], "b": [0.1, 0.4]}
    assert subject_scores(probs, "mean") == pytest.approx({"a": 1.7 / 3, "b": 0.25})
    assert subject_scores(probs, "vote") == pytest.approx({"a": 2 / 3, "b": 0.0})


def test_split_evaluation_curve_auc_and_objective() -> None:
    labels = {f"s{i}": i % 2 for i in range(10)}
    clean = {s: 0.9 if y else 0.1 for s, y in labels.items()}  # perfect
    flipped = {s: 0.1 if y else 0.9 for s, y in labels.items()}  # all wrong
    scores = {
        "clean": clean,
        "white_5db": clean,
        "pink_5db": flipped,
        "white_0db": flipped,
        "pink_0db": flipped,
    }
    ev = evaluate_audio_split(scores, labels, split="eval", aggregation="mean", resamples=200)
    assert ev.summary["f1@clean"] == 1.0 and ev.summary["accuracy@5db"] == 0.5
    assert ev.summary["f1@5db:noise=white"] == 1.0 and ev.summary["f1@5db:noise=pink"] == 0.0
    w = level_weights(["clean", "5db", "0db"])
    assert w == pytest.approx({"clean": 0.25, "5db": 0.5, "0db": 0.25})
    assert ev.summary["accuracy_auc"] == pytest.approx(0.25 * 1 + 0.5 * 0.5 + 0.25 * 0)
    per_subject = case_objective(ev, "f1@5db")
    assert np.mean(list(per_subject.values())) == pytest.approx(ev.summary["f1@5db"])
    assert ev.settings["curve"]["accuracy"] == {"clean": 1.0, "5db": 0.5, "0db": 0.0}
    lo, hi = ev.settings["ci95"]["f1@clean"]
    assert lo == hi == 1.0
    assert ev.settings["subject_scores"]["clean"]["s1"] == 0.9


def test_missing_subject_counts_as_wrong_and_ci_has_width() -> None:
    labels = {f"s{i}": i % 2 for i in range(20)}
    rng = np.random.default_rng(1)
    noisy = {s: float(np.clip(y * 0.4 + rng.random() * 0.6, 0, 1)) for s, y in labels.items()}
    del noisy["s1"]  # the job skipped a subject
    ev = evaluate_audio_split({"clean": noisy}, labels, split="eval", aggregation="mean", resamples=300)
    assert ev.settings["subject_scores"]["clean"]["s1"] == 0.0  # positive subject scored as negative
    lo, hi = ev.settings["ci95"]["accuracy@clean"]
    assert lo < ev.summary["accuracy@clean"] < hi
