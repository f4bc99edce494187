"""Dashboard: the claims review queue (evidence and statistics side by side, with
validate / reject / request-reproduction / quarantine forms), a claim's page with its
provenance and the knowledge graph around it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from medloop.core.errors import MedloopError
from medloop.web import actions, charts, views
from medloop.web.policy import authorize
from medloop.web.routes.pages import back, page
from medloop.web.security import Caller, Ctx

router = APIRouter(include_in_schema=False)
QUEUE_TIERS = ["reproduced", "supported"]
ALL_TIERS = [
    "reproduced",
    "supported",
    "inconclusive",
    "refuted",
    "validated",
    "rejected",
    "quarantined",
    "external",
    "superseded",
    "proposed",
]


@router.get("/claims")
def queue(request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    """Claims awaiting a human decision (reproduced first), each with its evidence."""
    authorize(who, "read")
    tiers = request.query_params.getlist("tier") or QUEUE_TIERS
    tiers = [t for t in tiers if t in ALL_TIERS] or QUEUE_TIERS
    campaign_id = request.query_params.get("campaign_id") or None
    after = request.query_params.get("after") or None
    pg = ctx.store.listings.claims(tiers=tiers, campaign_id=campaign_id, after=after, limit=25)
    cards: list[dict[str, Any]] = []
    for row in sorted(
        pg.items, key=lambda r: (QUEUE_TIERS.index(r["tier"]) if r["tier"] in QUEUE_TIERS else 9, r["id"])
    ):
        claim = ctx.store.claims.get(row["id"])
        detail = views.claim_detail(ctx.store, claim, actions.allowed_review_actions(ctx, who, claim))
        cards.append({"d": detail, "row": row})
    return page(
        request,
        who,
        "claims.html",
        cards=cards,
        tiers=tiers,
        all_tiers=ALL_TIERS,
        next_after=pg.next_cursor,
        campaign_id=campaign_id,
    )


@router.get("/claims/{claim_id}")
def claim_page(claim_id: str, request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "read")
    claim = ctx.store.claims.get(claim_id)
    detail = views.claim_detail(ctx.store, claim, actions.allowed_review_actions(ctx, who, claim))
    graph = views.claim_graph(ctx.store, claim_id, depth=1, max_nodes=40)
    return page(request, who, "claim.html", d=detail, graph_svg=charts.graph_svg(graph), graph=graph)


@router.post("/claims/{claim_id}/review")
async def review(claim_id: str, request: Request, ctx: Ctx, who: Caller) -> Response:
    form = await request.form()
    action = str(form.get("action", ""))
    rationale = str(form.get("rationale", ""))
    target = str(form.get("back", "")) or f"/claims/{claim_id}"
    if not target.startswith("/") or target.startswith("//"):
        target = f"/claims/{claim_id}"
    try:
        out = await run_in_threadpool(actions.review, ctx, who, claim_id, action, rationale)
    except MedloopError as exc:
        return back(target, f"{action.replace('_', ' ')} refused: {exc}", "error")
    verb = {"validate": "validated", "reject": "rejected"}.get(action, action.replace("_", " ") + " recorded")
    return back(target, f"claim {claim_id} {verb}; tier is now {out.claim.tier}")
