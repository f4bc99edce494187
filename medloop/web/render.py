"""Jinja2 environment shared by the dashboard and the HTML report, and the figures both
show (best-so-far curve, training curves), built from the same views."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from medloop.core.records import Trial
from medloop.web import charts
from medloop.web import schemas as S

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def num(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "–"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "–"
    return format(f, spec)


def signed(value: Any) -> str:
    return num(value, "+.4f")


def pvalue(value: Any) -> str:
    if value is None:
        return "–"
    f = float(value)
    return "<0.001" if f < 0.001 else f"{f:.3f}"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _short(value: Any) -> Any:
    """A code module's sha256 shortened to 12 characters (the pages link the full one)."""
    return f"{value[:12]}…" if isinstance(value, str) and _SHA256.match(value) else value


def changes(items: Any) -> str:
    out = []
    for c in items or []:
        data = c if isinstance(c, dict) else c.model_dump()
        out.append(f"{data['factor']}: {_short(data.get('from_value'))} → {_short(data['to_value'])}")
    return "; ".join(out)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# Claims written before titles followed the tier end in the verdict of their creation.
_VERDICT_SUFFIX = re.compile(
    r":\s*(proposed|supported|refuted|inconclusive|reproduced|validated|external|rejected|superseded|quarantined)\s*$"
)


def claim_title(statement: str | None, tier: str | None = None) -> str:
    """A claim's title with its *current* tier as the suffix (never the tier it was created
    with, which older statements carry in their text)."""
    text = _VERDICT_SUFFIX.sub("", statement or "").rstrip()
    return f"{text}: {tier}" if tier else text


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        num=num, signed=signed, pvalue=pvalue, duration=duration, changes=changes, claim_title=claim_title
    )
    env.globals["tier_colour"] = charts.TIER_COLOURS
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def inline_static(name: str) -> Markup:
    """A static file's text, for self-contained reports."""
    return Markup((STATIC / name).read_text())


# ---------------------------------------------------------------- figures


def certified_points(detail: S.CampaignDetail) -> list[tuple[float, float]]:
    """The certified incumbent's objective after each cycle, placed at the number of trials
    finished when that cycle's last trial came in."""
    cycle_of: dict[str, int] = {}
    for h in detail.hypotheses:
        for tid in (
            *h.control_trials,
            *h.treatment_trials,
            *h.reproduction_control,
            *h.reproduction_treatment,
        ):
            cycle_of[tid] = h.cycle
    order = detail.best_so_far.trial_id
    points: list[tuple[float, float]] = []
    for cy in detail.cycles:
        value = cy.get("incumbent_objective")
        if value is None:
            continue
        idx = int(cy["idx"])
        done = [i for i, tid in enumerate(order, start=1) if cycle_of.get(tid, 0) <= idx]
        if done:
            points.append((float(max(done)), float(value)))
    if points and order:  # the incumbent holds until the last trial
        points.append((float(len(order)), points[-1][1]))
    return points


def best_so_far_svg(detail: S.CampaignDetail) -> str:
    curve = detail.best_so_far
    metric = detail.campaign.metric
    values = [(float(i), v) for i, v in enumerate(curve.objective, start=1) if v is not None]
    best = [(float(i), v) for i, v in enumerate(curve.best, start=1) if v is not None]
    series = [
        charts.Series("trial objective", values, dots=True, colour="#8c959f"),
        charts.Series("best screened", best, step=True, colour="#0969da"),
    ]
    certified = certified_points(detail)
    if certified:
        series.append(charts.Series("certified incumbent", certified, step=True, colour="#1a7f37"))
    n = len(curve.trial_id)
    if detail.campaign.baseline_objective is not None and n:
        b = detail.campaign.baseline_objective
        series.append(charts.Series("baseline", [(1.0, b), (float(n), b)], dashed=True, colour="#bf8700"))
    return charts.interactive_chart(
        series,
        title=f"{metric} over trials ({detail.campaign.direction})",
        x_label="trials finished",
        y_label=metric,
        chart_id="best-so-far",
    )


def training_svgs(trial: Trial, steps: list[tuple[float, float]] | None = None) -> list[str]:
    """Training loss (every iteration's batch loss when the job kept it, and the epoch
    mean) and internal-validation Dice per epoch, from TrialResult.history."""
    history = trial.result.history if trial.result else []
    if not history and not steps:
        return []
    x_key = "iteration" if all("iteration" in h for h in history) else "epoch"
    out = []
    for key, title in (("loss", "training loss"), ("val_dice", "internal validation Dice")):
        pts = [(float(h[x_key]), float(h[key])) for h in history if key in h and x_key in h]
        series = []
        if key == "loss" and steps and x_key == "iteration":
            series.append(charts.Series("batch loss", steps, colour="#f4a3a3"))
            if pts:
                series.append(charts.Series("epoch mean", pts, colour="#d62728"))
        elif pts:
            series.append(charts.Series(key, pts, colour="#d62728" if key == "loss" else "#2ca02c"))
        if series:
            out.append(
                charts.interactive_chart(
                    series,
                    title=title,
                    x_label=x_key,
                    y_label=key,
                    width=460,
                    height=240,
                    chart_id=f"curve-{key}",
                )
            )
    return out
