"""/api/v1/claims and /api/v1/quarantines: list and filter claims, a claim with its
evidence chain, provenance, relations and conflicts, the graph around it, and the review
actions (validate, reject, request reproduction, quarantine), each with a rationale."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from medloop.core.records import Tier
from medloop.web import actions, views
from medloop.web import schemas as S
from medloop.web.errors import ERROR_RESPONSES, FieldError, InvalidInput
from medloop.web.policy import authorize
from medloop.web.security import Caller, Ctx

router = APIRouter(prefix="/api/v1", tags=["claims"], responses=ERROR_RESPONSES)
ClaimId = Annotated[str, Path(max_length=100, description="Claim id (clm_...)")]
TIERS = get_args(Tier)


@router.get(
    "/claims",
    response_model=S.ClaimPage,
    summary="List claims (by id), filtered by tier, dataset, metric, campaign",
)
async def list_claims(
    ctx: Ctx,
    who: Caller,
    tier: Annotated[list[str] | None, Query(max_length=12, description="Repeatable")] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    metric: Annotated[str | None, Query(max_length=100, description="The claim's outcome metric")] = None,
    campaign_id: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    authorize(who, "read")
    bad = [t for t in tier or [] if t not in TIERS]
    if bad:
        raise InvalidInput(
            f"{bad[0]!r} is not a tier", [FieldError(field="tier", message=f"tiers: {', '.join(TIERS)}")]
        )
    page = ctx.store.listings.claims(
        tiers=tier or None,
        dataset=dataset,
        outcome=metric,
        campaign_id=campaign_id,
        after=S.decode_cursor("k", cursor),
        limit=limit,
    )
    return S.listing_response(page.items, S.encode_cursor("k", page.next_cursor))


@router.get(
    "/claims/{claim_id}",
    response_model=S.ClaimDetail,
    summary="A claim with evidence chain, provenance, conflicts and history",
)
def get_claim(claim_id: ClaimId, ctx: Ctx, who: Caller) -> S.ClaimDetail:
    authorize(who, "read")
    claim = ctx.store.claims.get(claim_id)
    return views.claim_detail(ctx.store, claim, actions.allowed_review_actions(ctx, who, claim))


@router.get("/claims/{claim_id}/graph", response_model=S.Graph, summary="The knowledge graph around a claim")
def claim_graph(
    claim_id: ClaimId,
    ctx: Ctx,
    who: Caller,
    depth: Annotated[int, Query(ge=1, le=3)] = 2,
    max_nodes: Annotated[int, Query(ge=2, le=300)] = 60,
) -> S.Graph:
    authorize(who, "read")
    ctx.store.claims.get(claim_id)
    return views.claim_graph(ctx.store, claim_id, depth=depth, max_nodes=max_nodes)


def _review(action: str, claim_id: str, body: S.ReviewIn, ctx: Ctx, who: Caller) -> S.ReviewOut:
    return actions.review(ctx, who, claim_id, action, body.rationale)


@router.post(
    "/claims/{claim_id}/validate",
    response_model=S.ReviewOut,
    summary="Validate a reproduced claim (reviewers not involved in it)",
)
def validate(claim_id: ClaimId, body: S.ReviewIn, ctx: Ctx, who: Caller) -> S.ReviewOut:
    return _review("validate", claim_id, body, ctx, who)


@router.post("/claims/{claim_id}/reject", response_model=S.ReviewOut, summary="Reject a claim")
def reject(claim_id: ClaimId, body: S.ReviewIn, ctx: Ctx, who: Caller) -> S.ReviewOut:
    return _review("reject", claim_id, body, ctx, who)


@router.post(
    "/claims/{claim_id}/request-reproduction",
    response_model=S.ReviewOut,
    summary="Ask for a re-run with fresh seeds",
)
def request_reproduction(claim_id: ClaimId, body: S.ReviewIn, ctx: Ctx, who: Caller) -> S.ReviewOut:
    return _review("request_reproduction", claim_id, body, ctx, who)


@router.post(
    "/claims/{claim_id}/quarantine",
    response_model=S.ReviewOut,
    summary="Quarantine a claim and everything derived from it",
)
def quarantine(claim_id: ClaimId, body: S.ReviewIn, ctx: Ctx, who: Caller) -> S.ReviewOut:
    return _review("quarantine", claim_id, body, ctx, who)


@router.get("/quarantines", response_model=S.QuarantineList, summary="Quarantines (active ones by default)")
def list_quarantines(ctx: Ctx, who: Caller, active_only: bool = True) -> S.QuarantineList:
    authorize(who, "read")
    return S.QuarantineList(items=ctx.store.quarantines.list(active_only=active_only))


@router.post(
    "/quarantines",
    response_model=S.QuarantineList,
    status_code=201,
    summary="Quarantine a trial, campaign, source or claim and what derives from it",
)
def add_quarantine(body: S.QuarantineIn, ctx: Ctx, who: Caller) -> S.QuarantineList:
    return S.QuarantineList(items=[actions.quarantine_target(ctx, who, body.target, body.rationale)])


@router.post(
    "/quarantines/{quarantine_id}/lift", response_model=S.QuarantineList, summary="Lift a quarantine"
)
def lift_quarantine(
    quarantine_id: Annotated[str, Path(max_length=100)], body: S.ReviewIn, ctx: Ctx, who: Caller
) -> S.QuarantineList:
    return S.QuarantineList(items=[actions.lift_quarantine(ctx, who, quarantine_id, body.rationale)])
