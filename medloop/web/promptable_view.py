"""The click curve of a promptable trial: mean Dice after k simulated clicks, per split,
from the host's recomputed evaluation (`settings["click_curve"]`), drawn as an interactive
uPlot chart (charts.interactive_chart) with the NoC values beside it."""

from __future__ import annotations

from typing import Any

from medloop.core.records import Trial
from medloop.web import charts

_SPLIT_COLOURS = {"eval": "#0969da", "test": "#cf222e"}


def click_curve(trial: Trial) -> dict[str, Any] | None:
    """{"chart": html, "noc": {split: {metric: value}}} for a promptable trial; else None."""
    if trial.spec.task != "promptable" or trial.result is None:
        return None
    series, noc = [], {}
    for split, colour in _SPLIT_COLOURS.items():
        ev = trial.result.evaluations.get(split)
        curve = (ev.settings.get("click_curve") if ev else None) or []
        pts = [(float(k), float(v)) for k, v in enumerate(curve, start=1) if isinstance(v, int | float)]
        if ev is None or not pts:
            continue
        series.append(charts.Series(f"{split} Dice", pts, colour=colour, dots=len(pts) == 1))
        noc[split] = {m: ev.summary.get(m) for m in ("noc@80", "noc@85", "noc@90")}
    if not series:
        return None
    chart = charts.interactive_chart(
        series,
        title="click curve: Dice after k simulated clicks",
        x_label="clicks",
        y_label="mean Dice",
        width=560,
        height=260,
        chart_id="click-curve",
    )
    return {"chart": chart, "noc": noc}
