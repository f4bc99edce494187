"""The compare view: /api/v1/compare (JSON) and /compare (page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from medloop.web import compare as C
from medloop.web import schemas as S
from medloop.web.errors import ERROR_RESPONSES
from medloop.web.policy import authorize
from medloop.web.routes.pages import page
from medloop.web.security import Caller, Ctx

router = APIRouter(tags=["trials"], responses=ERROR_RESPONSES)
Trials = Annotated[
    list[str] | None,
    Query(
        max_length=4000,
        description="Trial ids (2 to 24), repeated or comma-separated",
        examples=[["trl_a,trl_b"]],
    ),
]
Hyp = Annotated[
    str | None, Query(max_length=100, description="A hypothesis: compare its control and treatment arms")
]
Split = Annotated[str, Query(pattern="^(eval|test|internal_val)$")]


def _ids(trials: list[str] | None) -> list[str]:
    return [t.strip() for item in trials or [] for t in item.split(",") if t.strip()]


@router.get(
    "/api/v1/compare",
    response_model=S.CompareOut,
    summary="Compare trials or a hypothesis's arms: curves, per-case/class/site values, paired statistic",
)
def compare_api(
    ctx: Ctx, who: Caller, trials: Trials = None, hypothesis: Hyp = None, split: Split = "eval"
) -> S.CompareOut:
    authorize(who, "read")
    return C.compare(ctx.store, _ids(trials), hypothesis_id=hypothesis, split=split)


@router.get("/compare", include_in_schema=False)
def compare_page(
    request: Request,
    ctx: Ctx,
    who: Caller,
    trials: Trials = None,
    hypothesis: Hyp = None,
    split: Split = "eval",
) -> HTMLResponse:
    authorize(who, "read")
    data = C.compare(ctx.store, _ids(trials), hypothesis_id=hypothesis, split=split)
    return page(request, who, "compare.html", cmp=data, charts=C.charts(data))
