"""/api/v1/campaigns: list, create (from YAML or an example), detail with cycles, the
hypotheses, and launch / pause / resume / stop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from medloop.web import actions, views
from medloop.web import schemas as S
from medloop.web.errors import ERROR_RESPONSES
from medloop.web.policy import authorize
from medloop.web.security import Caller, Ctx

router = APIRouter(prefix="/api/v1", tags=["campaigns"], responses=ERROR_RESPONSES)
CampaignId = Annotated[str, Path(max_length=100, description="Campaign id (cmp_...)")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
STATUSES = "created|running|paused|stopping|stopped|completed|incomplete|failed"


@router.get("/campaigns", response_model=S.CampaignPage, summary="List campaigns, newest first")
async def list_campaigns(
    ctx: Ctx,
    who: Caller,
    status: Annotated[str | None, Query(pattern=f"^({STATUSES})$")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Response:
    authorize(who, "read")
    page = ctx.store.campaigns.list(status=status, after=S.decode_cursor("c", cursor), limit=limit)
    return S.json_response(
        S.CampaignPage(
            items=[views.campaign_summary(c, ctx.launcher) for c in page],
            next_cursor=S.encode_cursor("c", page.next_cursor),
        )
    )


@router.post(
    "/campaigns",
    response_model=S.CampaignAction,
    status_code=201,
    summary="Create a campaign from YAML or an example (optionally launch it)",
)
def create_campaign(body: S.CampaignCreate, ctx: Ctx, who: Caller, response: Response) -> S.CampaignAction:
    campaign, pid = actions.create_campaign(
        ctx, who, spec_yaml=body.spec_yaml, example=body.example, overrides=body.overrides, launch=body.launch
    )
    response.headers["Location"] = f"/api/v1/campaigns/{campaign.id}"
    return S.CampaignAction(campaign=views.campaign_summary(campaign, ctx.launcher), pid=pid)


@router.get(
    "/campaigns/{campaign_id}",
    response_model=S.CampaignDetail,
    summary="A campaign with cycles, hypotheses, budget and the best-so-far curve",
)
def get_campaign(campaign_id: CampaignId, ctx: Ctx, who: Caller) -> Response:
    authorize(who, "read")
    return S.json_response(
        views.campaign_detail(ctx.store, ctx.store.campaigns.get(campaign_id), ctx.launcher)
    )


@router.get(
    "/campaigns/{campaign_id}/hypotheses", response_model=S.HypothesisPage, summary="Hypotheses with verdicts"
)
def list_hypotheses(
    campaign_id: CampaignId,
    ctx: Ctx,
    who: Caller,
    cycle: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> S.HypothesisPage:
    authorize(who, "read")
    ctx.store.campaigns.get(campaign_id)
    return S.HypothesisPage(items=ctx.store.cycles.hypotheses(campaign_id, cycle))


def _control(action: str, campaign_id: str, ctx: Ctx, who: Caller) -> S.CampaignAction:
    campaign, pid = actions.control(ctx, who, campaign_id, action)
    return S.CampaignAction(campaign=views.campaign_summary(campaign, ctx.launcher), pid=pid)


@router.post(
    "/campaigns/{campaign_id}/launch",
    response_model=S.CampaignAction,
    status_code=202,
    summary="Start a new campaign in the background",
)
def launch(campaign_id: CampaignId, ctx: Ctx, who: Caller) -> S.CampaignAction:
    return _control("launch", campaign_id, ctx, who)


@router.post(
    "/campaigns/{campaign_id}/pause",
    response_model=S.CampaignAction,
    status_code=202,
    summary="Pause at the next cycle boundary",
)
def pause(campaign_id: CampaignId, ctx: Ctx, who: Caller) -> S.CampaignAction:
    return _control("pause", campaign_id, ctx, who)


@router.post(
    "/campaigns/{campaign_id}/resume",
    response_model=S.CampaignAction,
    status_code=202,
    summary="Continue a paused campaign in the background",
)
def resume(campaign_id: CampaignId, ctx: Ctx, who: Caller) -> S.CampaignAction:
    return _control("resume", campaign_id, ctx, who)


@router.post(
    "/campaigns/{campaign_id}/stop",
    response_model=S.CampaignAction,
    status_code=202,
    summary="Stop after the current cycle",
)
def stop(campaign_id: CampaignId, ctx: Ctx, who: Caller) -> S.CampaignAction:
    return _control("stop", campaign_id, ctx, who)


@router.post(
    "/campaigns/{campaign_id}/code",
    response_model=S.CodeAdded,
    status_code=201,
    summary="Add a code hypothesis (a module for one extension point) to a campaign",
)
def add_code(campaign_id: CampaignId, body: S.CodeAdd, ctx: Ctx, who: Caller) -> S.CodeAdded:
    module = actions.add_code(
        ctx, who, campaign_id, source=body.source, point=body.point, rationale=body.rationale, name=body.name
    )
    return S.CodeAdded(**module.model_dump(include=set(S.CodeAdded.model_fields)))
