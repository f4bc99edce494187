"""Classification trials on the dashboard: the patient-level metrics with their bootstrap
CIs, the adapter's parameter counts, and every evaluation patient's probability (a strip
chart by true class and a table), all from the stored record."""

from __future__ import annotations

from typing import Any

from medloop.core.records import SplitEvaluation, Trial
from medloop.web import charts

METRICS = ("auroc", "accuracy", "balanced_accuracy")
_COLOURS = {0: "#1f77b4", 1: "#d62728"}


def metric_rows(ev: SplitEvaluation) -> list[dict[str, Any]]:
    cis: dict[str, list[float]] = ev.settings.get("ci95") or {}
    rows: list[dict[str, Any]] = []
    for m in METRICS:
        ci = cis.get(m)
        rows.append(
            {
                "metric": m,
                "value": ev.summary.get(m),
                "lo": ci[0] if ci else None,
                "hi": ci[1] if ci else None,
            }
        )
    return rows


def patient_rows(ev: SplitEvaluation, classes: dict[str, int]) -> list[dict[str, Any]]:
    """One row per patient, highest probability first: label, score, call, its cases."""
    names = {v: k for k, v in classes.items()}
    scores: dict[str, float] = ev.settings.get("patient_scores") or {}
    labels: dict[str, int] = ev.settings.get("patient_labels") or {}
    threshold = float(ev.settings.get("threshold", 0.5))
    by_patient: dict[str, list[str]] = {}
    sites = {c.case: c.site for c in ev.cases}
    for case, patient in (ev.settings.get("case_patients") or {}).items():
        by_patient.setdefault(patient, []).append(case)
    rows = []
    for patient, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        label = labels.get(patient)
        call = int(score >= threshold)
        rows.append(
            {
                "patient": patient,
                "site": sites.get(patient),
                "label": names.get(label, str(label)) if label is not None else None,
                "prob": score,
                "call": names.get(call, str(call)),
                "correct": label == call if label is not None else None,
                "cases": by_patient.get(patient, []),
            }
        )
    return rows


def strip_svg(ev: SplitEvaluation, classes: dict[str, int]) -> str | None:
    """Probability of every patient (y) against its rank (x), coloured by true class,
    with the 0.5 threshold dashed."""
    scores: dict[str, float] = ev.settings.get("patient_scores") or {}
    labels: dict[str, int] = ev.settings.get("patient_labels") or {}
    if not scores:
        return None
    ranked = sorted(scores, key=lambda p: scores[p])
    names = {v: k for k, v in classes.items()}
    series = []
    for value in sorted(set(labels.values())):
        pts = [(float(i), float(scores[p])) for i, p in enumerate(ranked) if labels.get(p) == value]
        series.append(
            charts.Series(f"true {names.get(value, value)}", pts, colour=_COLOURS.get(value, ""), dots=True)
        )
    threshold = float(ev.settings.get("threshold", 0.5))
    series.append(
        charts.Series("threshold", [(0.0, threshold), (float(len(ranked) - 1), threshold)], dashed=True)
    )
    return charts.line_chart(
        series,
        title="per-patient probability (eval)",
        x_label="patients, by probability",
        y_label="P(class 1)",
        width=520,
        height=260,
        chart_id="cls-patients",
    )


def classification_panel(trial: Trial) -> dict[str, Any] | None:
    """What trial.html shows for a classification trial; None for other tasks."""
    if trial.spec.task != "classification" or trial.result is None:
        return None
    classes = trial.spec.dataset.labels
    splits = {s: metric_rows(ev) for s, ev in sorted(trial.result.evaluations.items())}
    ev = trial.result.evaluations.get("eval")
    eff = trial.result.efficiency
    return {
        "metrics": splits,
        "strip": strip_svg(ev, classes) if ev else None,
        "patients": patient_rows(ev, classes) if ev else [],
        "n_patients": ev.settings.get("n_patients") if ev else None,
        "adapter": getattr(trial.spec.config, "adapter", None),
        "parameters": eff.get("parameters"),
        "trainable_parameters": eff.get("trainable_parameters"),
        "trainable_by_part": eff.get("trainable_by_part") or {},
    }
