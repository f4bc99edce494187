"""/api/v1/trials and /api/v1/hypotheses: trial listing, spec and status, log tail,
per-case and per-site metrics, artifacts, and slices for the viewer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from starlette.responses import Response

from medloop.core.errors import NotFoundError
from medloop.core.records import Hypothesis
from medloop.web import schemas as S
from medloop.web import slices, views
from medloop.web.errors import ERROR_RESPONSES
from medloop.web.policy import authorize
from medloop.web.security import Caller, Ctx

router = APIRouter(prefix="/api/v1", tags=["trials"], responses=ERROR_RESPONSES)
TrialId = Annotated[str, Path(max_length=100, description="Trial id (trl_...)")]
Id = Annotated[str | None, Query(max_length=100)]
TRIAL_STATUSES = "pending|running|succeeded|failed|oom|timed_out|cancelled|quota_exceeded|tampered"


@router.get("/trials", response_model=S.TrialPage, summary="List trials (by id), filtered")
async def list_trials(
    ctx: Ctx,
    who: Caller,
    campaign_id: Id = None,
    hypothesis_id: Id = None,
    status: Annotated[str | None, Query(pattern=f"^({TRIAL_STATUSES})$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    authorize(who, "read")
    page = ctx.store.listings.trials(
        campaign_id=campaign_id,
        hypothesis_id=hypothesis_id,
        status=status,
        after=S.decode_cursor("t", cursor),
        limit=limit,
    )
    return S.listing_response(page.items, S.encode_cursor("t", page.next_cursor))


@router.get(
    "/trials/{trial_id}", response_model=S.TrialDetail, summary="A trial: spec, status, result, provenance"
)
def get_trial(trial_id: TrialId, ctx: Ctx, who: Caller) -> S.TrialDetail:
    authorize(who, "read")
    return views.trial_detail(ctx.store.trials.get(trial_id))


@router.get("/trials/{trial_id}/logs", response_model=S.TrialLogs, summary="The tail of the job's log")
def trial_logs(
    trial_id: TrialId, ctx: Ctx, who: Caller, tail: Annotated[int, Query(ge=1, le=5000)] = 200
) -> S.TrialLogs:
    authorize(who, "read")
    return views.log_lines(ctx.store.trials.get(trial_id), tail, ctx.settings.jobs_dir)


@router.get(
    "/trials/{trial_id}/metrics",
    response_model=S.MetricsTable,
    summary="Per-case and per-site metrics of a split",
)
def trial_metrics(
    trial_id: TrialId,
    ctx: Ctx,
    who: Caller,
    split: Annotated[str, Query(pattern="^(eval|test)$")] = "eval",
) -> S.MetricsTable:
    authorize(who, "read")
    trial = ctx.store.trials.get(trial_id)
    evaluation = trial.result.evaluations.get(split) if trial.result else None
    if evaluation is None:
        raise NotFoundError(f"trial {trial_id} has no {split} metrics", hint=f"status: {trial.status}")
    return views.metrics_table(evaluation)


@router.get("/trials/{trial_id}/artifacts", response_model=S.ArtifactList, summary="Files the job wrote")
def trial_artifacts(trial_id: TrialId, ctx: Ctx, who: Caller) -> S.ArtifactList:
    authorize(who, "read")
    return S.ArtifactList(items=views.artifacts(ctx.store.trials.get(trial_id)))


@router.get(
    "/trials/{trial_id}/artifacts/{path:path}",
    response_class=FileResponse,
    summary="Download one file the job wrote",
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file"}},
)
def trial_artifact(
    trial_id: TrialId, path: Annotated[str, Path(max_length=500)], ctx: Ctx, who: Caller
) -> FileResponse:
    authorize(who, "read")
    target = views.artifact_path(ctx.store.trials.get(trial_id), path)
    return FileResponse(target, media_type="application/octet-stream", filename=target.name)


@router.get(
    "/trials/{trial_id}/slices",
    response_model=S.SliceOut,
    summary="One slice: image, reference label and prediction",
)
def trial_slice(
    trial_id: TrialId,
    case: Annotated[str, Query(min_length=1, max_length=200)],
    ctx: Ctx,
    who: Caller,
    split: Annotated[str, Query(pattern="^(eval|test|internal_val)$")] = "eval",
    z: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> S.SliceOut:
    authorize(who, "read")
    trial = ctx.store.trials.get(trial_id)
    campaign = ctx.store.campaigns.get(trial.campaign_id)
    files = slices.case_files(trial, campaign, split, case, ctx.launcher.cwd)
    s = slices.load_slice(files, case=case, split=split, z=z, labels=trial.spec.dataset.labels)
    h, w = s.image.shape
    return S.SliceOut(
        case=case,
        split=split,
        width=w,
        height=h,
        depth=s.depth,
        z=s.z,
        labels=s.labels,
        image=slices.b64(s.image) or "",
        raw=slices.b64(s.raw.astype("<f4")),
        modality=trial.spec.dataset.channel_names.get("0", ""),
        label=slices.b64(s.label),
        prediction=slices.b64(s.prediction),
    )


@router.get(
    "/hypotheses/{hypothesis_id}", response_model=Hypothesis, summary="One hypothesis with its analysis"
)
def get_hypothesis(hypothesis_id: Annotated[str, Path(max_length=100)], ctx: Ctx, who: Caller) -> Hypothesis:
    authorize(who, "read")
    return ctx.store.cycles.get_hypothesis(hypothesis_id)


@router.get(
    "/hypotheses/{hypothesis_id}/detail",
    response_model=S.HypothesisDetail,
    summary="One hypothesis with the code modules it runs (source, diff, trust, smoke trial)",
)
def get_hypothesis_detail(
    hypothesis_id: Annotated[str, Path(max_length=100)], ctx: Ctx, who: Caller
) -> S.HypothesisDetail:
    authorize(who, "read")
    return views.hypothesis_detail(ctx.store, ctx.store.cycles.get_hypothesis(hypothesis_id))
