"""Compare 2-N trials, or a hypothesis's control and treatment arms: training curves
overlaid, per-case values of the objective metric (control vs treatment, by site),
per-class and per-site tables, and the paired statistic the engine's analysis uses."""

from __future__ import annotations

from collections.abc import Sequence

from medloop.core.errors import NotFoundError
from medloop.core.records import Campaign, Trial
from medloop.core.store import Store
from medloop.engine.analysis import arm_data, compare_arms
from medloop.web import charts as K
from medloop.web import schemas as S
from medloop.web import views
from medloop.web.errors import FieldError, InvalidInput

MAX_TRIALS = 24
OVERLAY_BUCKETS = 500  # per curve in the overlaid chart (the API returns every point)


def _curve(trial: Trial) -> S.CompareCurve:
    steps = views.iteration_losses(trial)
    history = trial.result.history if trial.result else []
    epochs = [(h["iteration"], h["loss"]) for h in history if "iteration" in h and "loss" in h]
    val = [(h["iteration"], h["val_dice"]) for h in history if "iteration" in h and "val_dice" in h]
    loss = steps or epochs
    return S.CompareCurve(
        trial_id=trial.id,
        iteration=[x for x, _ in loss],
        loss=[views.finite(y) for _, y in loss],
        val_iteration=[x for x, _ in val],
        val_dice=[views.finite(y) for _, y in val],
    )


def _by_case(trial: Trial, metric: str, split: str) -> dict[str, S.CaseValue]:
    evaluation = trial.result.evaluations.get(split) if trial.result else None
    out: dict[str, S.CaseValue] = {}
    for case in evaluation.cases if evaluation else []:
        per_class = {k: views.finite(v) for k, v in case.metrics.get(metric, {}).items()}
        numbers = [v for v in per_class.values() if v is not None]
        mean = sum(numbers) / len(numbers) if numbers else None
        out[case.case] = S.CaseValue(site=case.site, value=mean, per_class=per_class)
    return out


def compare(
    store: Store, trial_ids: Sequence[str], *, hypothesis_id: str | None = None, split: str = "eval"
) -> S.CompareOut:
    """Trials named, or the arms of a hypothesis (control first)."""
    arms: dict[str, str] = {}
    if hypothesis_id:
        hyp = store.cycles.get_hypothesis(hypothesis_id)
        for arm, ids in (("control", hyp.control_trials), ("treatment", hyp.treatment_trials)):
            for tid in ids:
                arms[tid] = arm
        trial_ids = list(arms)
    ids = list(dict.fromkeys(t for t in trial_ids if t))
    if not 2 <= len(ids) <= MAX_TRIALS:
        raise InvalidInput(
            f"pick 2 to {MAX_TRIALS} trials to compare",
            [FieldError(field="trials", message=f"{len(ids)} given")],
        )
    trials = [store.trials.get(t) for t in ids]
    campaigns = {t.campaign_id for t in trials}
    campaign: Campaign | None = None
    if len(campaigns) == 1:
        try:
            campaign = store.campaigns.get(next(iter(campaigns)))
        except NotFoundError:
            campaign = None
    metric = campaign.spec.objective.metric if campaign else "dice"
    if not arms:  # ad hoc: the first trial is the reference ("control") for the paired view
        arms = {t.id: ("control" if i == 0 else "treatment") for i, t in enumerate(trials)}
    values = {t.id: _by_case(t, metric, split) for t in trials}
    cases = sorted({c for v in values.values() for c in v})
    rows = []
    for case in cases:
        site = next((v[case].site for v in values.values() if case in v and v[case].site), None)
        rows.append(
            S.CompareCase(
                case=case,
                site=site,
                values={tid: (v[case].value if case in v else None) for tid, v in values.items()},
            )
        )
    per_class: dict[str, dict[str, float | None]] = {}
    per_site: dict[str, dict[str, float | None]] = {}
    for t in trials:
        by_class: dict[str, list[float]] = {}
        by_site: dict[str, list[float]] = {}
        for cv in values[t.id].values():
            for cls, v in cv.per_class.items():
                if v is not None:
                    by_class.setdefault(cls, []).append(v)
            if cv.value is not None:
                by_site.setdefault(cv.site or "–", []).append(cv.value)
        per_class[t.id] = {k: sum(v) / len(v) for k, v in sorted(by_class.items())}
        per_site[t.id] = {k: sum(v) / len(v) for k, v in sorted(by_site.items())}
    paired = None
    control = [t for t in trials if arms[t.id] == "control"]
    treatment = [t for t in trials if arms[t.id] == "treatment"]
    if campaign is not None and control and treatment:
        objective = campaign.spec.objective
        a, b = arm_data(control, objective, split=split), arm_data(treatment, objective, split=split)
        result = compare_arms(a, b, campaign.spec.validation)
        if result is not None:
            paired = S.PairedOut(
                estimate=views.finite(result.estimate),
                ci_low=views.finite(result.ci_low),
                ci_high=views.finite(result.ci_high),
                ci_level=result.ci_level,
                p_value=views.finite(result.p_value),
                test=result.test,
                n_cases=result.n_cases,
                control=a.usable,
                treatment=b.usable,
                control_per_case=a.per_case,
                treatment_per_case=b.per_case,
            )
    return S.CompareOut(
        metric=metric,
        split=split,
        hypothesis_id=hypothesis_id,
        trials=[
            S.CompareTrial(
                id=t.id,
                arm=arms[t.id],
                seed=t.spec.seed,
                status=t.status,
                objective=views.finite(t.result.objective) if t.result else None,
                label=f"{arms[t.id]} s{t.spec.seed} {t.id[-6:]}",
            )
            for t in trials
        ],
        curves=[_curve(t) for t in trials],
        cases=rows,
        per_class=per_class,
        per_site=per_site,
        paired=paired,
    )


def charts(data: S.CompareOut) -> dict[str, str]:
    """The page's figures: loss and validation Dice overlaid, one line per trial, and the
    per-case scatter (control vs treatment, one colour per site, y = x dashed)."""
    labels = {t.id: t.label for t in data.trials}
    out: dict[str, str] = {}
    for key, title in (("loss", "training loss"), ("val_dice", "internal validation Dice")):
        series = []
        for c in data.curves:
            xs, ys = (c.iteration, c.loss) if key == "loss" else (c.val_iteration, c.val_dice)
            pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if pts:  # ten 10k-point curves: min/max per bucket keeps the shape at a tenth of the data
                series.append(K.Series(labels[c.trial_id], K.thin_minmax(pts, OVERLAY_BUCKETS)))
        if series:
            out[key] = K.interactive_chart(
                series,
                title=title,
                x_label="iteration",
                y_label=key,
                width=560,
                height=280,
                chart_id=f"cmp-{key}",
            )
    p = data.paired
    if p is not None:
        site_of = {row.case: row.site or "-" for row in data.cases}
        by_site: dict[str, list[tuple[float, float]]] = {}
        for case, x in p.control_per_case.items():
            y = p.treatment_per_case.get(case)
            if y is not None:
                by_site.setdefault(site_of.get(case, "-"), []).append((x, y))
        values = [v for pts in by_site.values() for pt in pts for v in pt]
        if values:
            lo, hi = min(values), max(values)
            series = [K.Series(f"site {s}", pts, dots=True) for s, pts in sorted(by_site.items())]
            series.append(K.Series("y = x", [(lo, lo), (hi, hi)], dashed=True, colour="#8c959f"))
            out["scatter"] = K.interactive_chart(
                series,
                title=f"per-case {data.metric}: treatment vs control",
                x_label=f"control {data.metric}",
                y_label=f"treatment {data.metric}",
                width=480,
                height=420,
                chart_id="cmp-scatter",
            )
    return out
