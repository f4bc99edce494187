"""`medloop campaign report`: one self-contained HTML file with what the campaign page
shows (cycles, hypotheses and verdicts, the best-so-far curve, budget, claims with their
statistics, the incumbent's training curves and a prediction-vs-label overlay), for
people who do not run medloop. Styles, plots and images are inline; nothing is fetched."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from medloop.core.errors import MedloopError
from medloop.core.records import Campaign, Trial
from medloop.core.store import Store
from medloop.web import render, slices, views


def _best_trial(store: Store, campaign: Campaign) -> Trial | None:
    rows = store.listings.trials(campaign_id=campaign.id, status="succeeded", limit=1_000_000).items
    scored = [r for r in rows if views.finite(r["objective"]) is not None]
    if not scored:
        return None
    sign = 1.0 if campaign.spec.objective.direction == "maximize" else -1.0
    best = max(scored, key=lambda r: sign * float(r["objective"] or 0.0))
    return store.trials.get(best["id"])


def _overlay(trial: Trial, campaign: Campaign, cwd: Path) -> dict[str, Any] | None:
    """A PNG (data URI) of the first evaluation case with a prediction, or None."""
    cases = views.prediction_cases(trial).get("eval", [])
    for case in cases[:3]:
        try:
            files = slices.case_files(trial, campaign, "eval", case, cwd)
            s = slices.load_slice(files, case=case, split="eval", z=None, labels=trial.spec.dataset.labels)
        except (MedloopError, OSError):
            continue
        scale = max(1, 320 // max(s.image.shape))
        png = slices.png_bytes(slices.overlay_rgb(s), scale=scale)
        return {
            "case": case,
            "src": "data:image/png;base64," + base64.b64encode(png).decode(),
            "labels": s.labels,
        }
    return None


def render_report(store: Store, campaign_id: str, *, cwd: Path | None = None) -> str:
    campaign = store.campaigns.get(campaign_id)
    detail = views.campaign_detail(store, campaign)
    claims = store.listings.claims(campaign_id=campaign_id, limit=1000).items
    best = _best_trial(store, campaign)
    overlay = _overlay(best, campaign, cwd or Path.cwd()) if best is not None else None
    palette = {
        v: "rgb({},{},{})".format(*slices.PALETTE[(v - 1) % len(slices.PALETTE)]) for v in range(1, 16)
    }
    return render.render(
        "report.html",
        d=detail,
        c=detail.campaign,
        chart=render.best_so_far_svg(detail),
        claims=claims,
        best=best,
        best_curves=render.training_svgs(best, views.iteration_losses(best)) if best is not None else [],
        best_table=views.metrics_table(best.result.evaluations["eval"])
        if best is not None and best.result and "eval" in best.result.evaluations
        else None,
        overlay=overlay,
        palette=palette,
        css=render.inline_static("app.css"),
        # the chart library inline: the report stays one file that works offline
        uplot_css=render.inline_static("vendor/uplot/uPlot.min.css"),
        uplot_js=render.inline_static("vendor/uplot/uPlot.iife.min.js"),
        charts_js=render.inline_static("charts.js"),
        generated=campaign.updated_at,
    )


def write_report(store: Store, campaign_id: str, out: Path, *, cwd: Path | None = None) -> Path:
    """Render and write atomically (a temp file renamed into place)."""
    html = render_report(store, campaign_id, cwd=cwd)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
