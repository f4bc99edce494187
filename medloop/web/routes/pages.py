"""Dashboard pages: login, campaigns (list, launch form, campaign page with live
updates), trials (curves, metrics, slice viewer) and the audit log. Server-rendered;
forms work without JavaScript; every change goes through `actions` like the API."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from medloop.core.errors import MedloopError, PermissionDenied
from medloop.web import actions, guard, render, views
from medloop.web import launcher as L
from medloop.web.accounts import AuthRequired, Principal, end_session, start_session
from medloop.web.audit_page import page_of as audit_page_of
from medloop.web.errors import FieldError, InvalidInput, RateLimited, status_of
from medloop.web.policy import authorize
from medloop.web.promptable_view import click_curve
from medloop.web.security import SESSION_COOKIE, Caller, Ctx, ctx_of

router = APIRouter(include_in_schema=False)
PRELOGIN_COOKIE = "medloop_prelogin"
FINAL = ("completed", "incomplete", "stopped", "failed")
STREAM_SECONDS = 600.0  # one live-update stream; the browser reconnects after it ends


def page(
    request: Request, who: Principal | None, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = render.render(
        template,
        request=request,
        user=who,
        csrf=who.csrf if who else None,
        msg=request.query_params.get("msg"),
        msg_kind=request.query_params.get("kind", "ok"),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def back(path: str, msg: str, kind: str = "ok") -> RedirectResponse:
    return RedirectResponse(f"{path}?msg={quote(msg[:300])}&kind={kind}", status_code=303)


def error_page(request: Request, exc: MedloopError) -> HTMLResponse:
    status, code = status_of(exc)
    return page(
        request, None, "error.html", status_code=status, code=code, message=exc.message, hint=exc.hint
    )


def _local(next_url: str | None) -> str:
    """Only same-site paths after login (no open redirects)."""
    if not next_url or not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return "/"
    return next_url


# ---------------------------------------------------------------- login


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    nonce = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = page(request, None, "login.html", nonce=nonce, next=_local(request.query_params.get("next")))
    response.set_cookie(
        PRELOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        max_age=3600,
        secure=request.url.scheme == "https",  # HTTPS directly or through a trusted proxy
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nonce, token = str(form.get("nonce", "")), str(form.get("token", ""))
    target = _local(str(form.get("next", "/")))
    cookie_nonce = request.cookies.get(PRELOGIN_COOKIE, "")
    ctx = ctx_of(request)
    if not nonce or not secrets.compare_digest(nonce, cookie_nonce):
        return page(
            request,
            None,
            "login.html",
            status_code=403,
            nonce=cookie_nonce or secrets.token_urlsafe(24),
            next=target,
            error="the login form expired; try again",
        )
    try:
        cookie, _session = await run_in_threadpool(
            guard.login, ctx, request, token, lambda: start_session(ctx.store, token), via="login"
        )
    except AuthRequired as exc:
        return page(request, None, "login.html", status_code=401, nonce=nonce, next=target, error=exc.message)
    except RateLimited as exc:
        limited = page(
            request, None, "login.html", status_code=429, nonce=nonce, next=target, error=exc.message
        )
        limited.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return limited
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    response.delete_cookie(PRELOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, who: Caller) -> Response:
    await run_in_threadpool(end_session, ctx_of(request).store, who)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# ---------------------------------------------------------------- campaigns


@router.get("/")
def campaigns(request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "read")
    status = request.query_params.get("status") or None
    after = request.query_params.get("after") or None
    pg = ctx.store.campaigns.list(status=status, after=after, limit=50)
    items = [views.campaign_summary(c, ctx.launcher) for c in pg]
    return page(request, who, "campaigns.html", items=items, next_after=pg.next_cursor, status=status)


def _form_context(
    ctx: Ctx, values: dict[str, str], text: str, example: str, errors: list[Any]
) -> dict[str, Any]:
    by_field: dict[str, list[str]] = {}
    for e in errors:
        key = e.field if e.field in L.FORM_FIELDS or e.field in ("example", "yaml") else "yaml"
        where = f"YAML line {e.line}: " if e.line else ""
        label = f"{e.field}: " if key == "yaml" and e.field not in ("", "yaml") else ""
        by_field.setdefault(key, []).append(f"{where}{label}{e.message}")
    return {
        "fields": L.FORM_FIELDS,
        "values": values,
        "text": text,
        "example": example,
        "examples": list(L.list_examples(ctx.examples_dir)),
        "errors": by_field,
    }


@router.get("/campaigns/new")
def new_campaign(request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "campaign.create")
    example = request.query_params.get("example", "")
    text = L.example_text(ctx.examples_dir, example) if example else ""
    return page(request, who, "campaign_new.html", **_form_context(ctx, {}, text, example, []))


@router.post("/campaigns/new")
async def create_campaign(request: Request, ctx: Ctx, who: Caller) -> Response:
    form = await request.form()
    upload = form.get("upload")
    text = str(form.get("spec_yaml", ""))
    if upload is not None and not isinstance(upload, str):
        data = await upload.read()
        if data:
            text = data.decode("utf-8", errors="replace")
    example = str(form.get("example", ""))
    values = {k: str(form.get(k, "")).strip() for k in L.FORM_FIELDS}
    launch = form.get("launch") == "on"
    try:
        campaign, _ = await run_in_threadpool(
            actions.create_campaign,
            ctx,
            who,
            spec_yaml=text if text.strip() else None,
            example=example if not text.strip() and example else None,
            overrides={k: v for k, v in values.items() if v},
            launch=launch,
        )
    except InvalidInput as exc:
        shown = text or (
            L.example_text(ctx.examples_dir, example) if example in L.list_examples(ctx.examples_dir) else ""
        )
        context = _form_context(ctx, values, shown, example, exc.details)
        return page(
            request,
            who,
            "campaign_new.html",
            status_code=422,
            form_error=exc.message,
            launch=launch,
            **context,
        )
    note = "created and launched" if launch else "created"
    return back(f"/campaigns/{campaign.id}", f"campaign {campaign.id} {note}")


def _campaign_context(ctx: Ctx, who: Principal, campaign_id: str) -> dict[str, Any]:
    campaign = ctx.store.campaigns.get(campaign_id)
    detail = views.campaign_detail(ctx.store, campaign, ctx.launcher)
    claims = ctx.store.listings.claims(campaign_id=campaign_id, limit=200).items
    recent = ctx.store.listings.recent_trials(campaign_id, 30)
    controls = []
    controls_note = None
    try:
        authorize(who, "campaign.control", campaign=campaign)
        status = campaign.status
        if status == "created":
            controls.append("launch")
        if status == "running":
            controls.append("pause")
        if status in ("paused", "failed", "stopping") and not detail.campaign.running:
            controls.append("resume")
        if status not in FINAL:
            controls.append("stop")
    except PermissionDenied as exc:  # a reader sees why there are no buttons
        controls_note = exc.message
    # Why each failed trial failed (the listing row does not carry it).
    causes = {
        t["id"]: _cause(ctx, t["id"])
        for t in recent
        if t["status"] not in ("pending", "running", "succeeded")
    }
    cycles = []
    hyps_by_cycle: dict[int, list[Any]] = {}
    for h in detail.hypotheses:
        hyps_by_cycle.setdefault(h.cycle, []).append(h)
    for cy in detail.cycles:
        cycles.append({**cy, "hyps": hyps_by_cycle.get(int(cy["idx"]), [])})
    open_cycles = sorted(set(hyps_by_cycle) - {int(c["idx"]) for c in detail.cycles})
    for idx in open_cycles:
        cycles.append({"idx": idx, "hyps": hyps_by_cycle[idx], "open": True})
    return {
        "d": detail,
        "c": detail.campaign,
        "chart": render.best_so_far_svg(detail),
        "claims": claims,
        "recent": recent,
        "n_trials": detail.budget.trials_used,
        "controls": controls,
        "controls_note": controls_note,
        "causes": causes,
        "timeline": cycles,
        "log_tail": _launch_log(ctx, campaign_id),
    }


def _cause(ctx: Ctx, trial_id: str) -> str | None:
    result = ctx.store.trials.get(trial_id).result
    return result.error if result else None


def _launch_log(ctx: Ctx, campaign_id: str) -> str:
    path = ctx.launcher.log_path(campaign_id)
    if not path.is_file():
        return ""
    data = path.read_bytes()[-4000:]
    return data.decode("utf-8", errors="replace")


@router.get("/campaigns/{campaign_id}")
def campaign_page(campaign_id: str, request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "read")
    context = _campaign_context(ctx, who, campaign_id)
    template = "campaign_body.html" if request.query_params.get("partial") else "campaign.html"
    return page(request, who, template, **context)


@router.get("/hypotheses/{hypothesis_id}")
def hypothesis_page(hypothesis_id: str, request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    """A hypothesis with its code modules (source, diff, trust, smoke trial) for reviewers."""
    authorize(who, "read")
    detail = views.hypothesis_detail(ctx.store, ctx.store.cycles.get_hypothesis(hypothesis_id))
    return page(request, who, "hypothesis.html", d=detail)


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(campaign_id: str, action: str, ctx: Ctx, who: Caller) -> Response:
    if action not in ("launch", "pause", "resume", "stop"):
        return back(f"/campaigns/{campaign_id}", f"unknown action {action}", "error")
    try:
        await run_in_threadpool(actions.control, ctx, who, campaign_id, action)
    except MedloopError as exc:
        return back(f"/campaigns/{campaign_id}", str(exc), "error")
    return back(f"/campaigns/{campaign_id}", f"{action} requested")


@router.get("/campaigns/{campaign_id}/events")
async def campaign_events(campaign_id: str, request: Request, ctx: Ctx, who: Caller) -> StreamingResponse:
    """Server-sent events: `change` whenever the campaign's visible state changes."""
    authorize(who, "read")
    first = await run_in_threadpool(ctx.store.listings.campaign_progress, campaign_id)

    async def stream() -> AsyncIterator[str]:
        last = first
        yield "retry: 3000\n\n"
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(1.0)
            now = await run_in_threadpool(ctx.store.listings.campaign_progress, campaign_id)
            if now != last:
                last = now
                yield f"event: change\ndata: {json.dumps(now)}\n\n"
            else:
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------- trials and audit


@router.get("/trials/{trial_id}")
def trial_page(trial_id: str, request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "read")
    trial = ctx.store.trials.get(trial_id)
    detail = views.trial_detail(trial)
    tables = {}
    if trial.result:
        for split, evaluation in sorted(trial.result.evaluations.items()):
            tables[split] = views.metrics_table(evaluation)
    return page(
        request,
        who,
        "trial.html",
        t=detail.trial,
        detail=detail,
        curves=render.training_svgs(trial, views.iteration_losses(trial)),
        tables=tables,
        logs=views.log_lines(trial, 80, ctx.settings.jobs_dir),
        artifacts=views.artifacts(trial)[:200],
        viewer_cases=detail.cases,
        labels=trial.spec.dataset.labels,
        config=trial.spec.config.model_dump(mode="json"),
        audio=_audio_panel(ctx, trial),
        clicks=click_curve(trial),
        cls=_cls_panel(trial),
    )


def _cls_panel(trial: Any) -> dict[str, Any] | None:
    """Patient-level metrics with CIs and per-patient probabilities (classification only)."""
    if trial.spec.task != "classification":
        return None
    from medloop.web.cls_view import classification_panel

    return classification_panel(trial)


def _audio_panel(ctx: Any, trial: Any) -> dict[str, Any] | None:
    """Spectrogram, robustness curve and subject scores of an audio trial (else None)."""
    if trial.spec.task != "audio":
        return None
    from medloop.web.audio_view import audio_panel

    try:
        campaign = ctx.store.campaigns.get(trial.campaign_id)
    except MedloopError:
        campaign = None
    return audio_panel(trial, campaign, ctx.launcher.cwd)


@router.get("/audit")
def audit_page(request: Request, ctx: Ctx, who: Caller) -> HTMLResponse:
    authorize(who, "read")
    object_id = request.query_params.get("object_id") or None
    raw = request.query_params.get("before")
    if raw is not None and not raw.isdigit():
        raise InvalidInput("invalid cursor", [FieldError(field="before", message="an audit sequence number")])
    chain = ctx.audit_chain.check(ctx.store)
    entries, older = audit_page_of(
        ctx.store, before=int(raw) if raw else None, last_seq=chain.last_seq, object_id=object_id
    )
    return page(request, who, "audit.html", entries=entries, chain=chain, older=older, object_id=object_id)
