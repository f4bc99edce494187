"""Every state change the web allows, shared by the API and the dashboard: authorize
(policy.py), rate-limit review actions, then call the runner or the knowledge base, which
write the audit log. Nothing here writes a tier or a status field by itself."""

from __future__ import annotations

from typing import Literal

from medloop.core.accounts import ReproductionRequest
from medloop.core.code import CodeModule
from medloop.core.errors import ConflictError, NotFoundError
from medloop.core.ids import new_id
from medloop.core.records import AuditEntry, Campaign, Claim, Quarantine, Tier
from medloop.core.trust import move_refusal
from medloop.engine.code import add_code_hypothesis
from medloop.web import launcher as L
from medloop.web.accounts import Principal
from medloop.web.context import WebContext
from medloop.web.errors import FieldError, InvalidInput, RateLimited
from medloop.web.guard import audits_refusals
from medloop.web.policy import authorize
from medloop.web.schemas import ReviewOut

ReviewAction = Literal["validate", "reject", "request_reproduction", "quarantine"]
ControlAction = Literal["launch", "pause", "resume", "stop"]
REVIEW_ACTIONS: tuple[str, ...] = ("validate", "reject", "request_reproduction", "quarantine")
_TIER: dict[str, Tier] = {"validate": "validated", "reject": "rejected"}


def _rate(ctx: WebContext, principal: Principal) -> None:
    limit = ctx.review_limit
    wait = ctx.store.users.rate_hit(principal.name, "review", limit=limit.count, window_s=limit.window_s)
    if wait > 0:
        raise RateLimited(
            f"{principal.name} made {limit.count} review actions in {limit.window_s:.0f} s", retry_after=wait
        )


def claim_campaign(ctx: WebContext, claim: Claim) -> Campaign | None:
    if not claim.campaign_id:
        return None
    try:
        return ctx.store.campaigns.get(claim.campaign_id)
    except NotFoundError:
        return None


def allowed_review_actions(ctx: WebContext, principal: Principal, claim: Claim) -> list[str]:
    """Actions the policy lets this caller take on this claim and that the lifecycle allows
    from the claim's current tier (`core.trust.move_refusal`, the rule it enforces)."""
    from medloop.core.errors import PermissionDenied

    campaign = claim_campaign(ctx, claim)
    out = []
    for action in REVIEW_ACTIONS:
        try:
            authorize(principal, f"claim.{action}", campaign=campaign, claim=claim)
        except PermissionDenied:
            continue
        if action == "quarantine" and claim.tier == "quarantined":
            continue
        # The lifecycle's own table: no Validate on an inconclusive claim (the server would answer 409).
        if action in _TIER and (
            claim.tier == "quarantined" or move_refusal(claim.tier, _TIER[action], principal.role) is not None
        ):
            continue
        out.append(action)
    return out


@audits_refusals
def review(ctx: WebContext, principal: Principal, claim_id: str, action: str, rationale: str) -> ReviewOut:
    if action not in REVIEW_ACTIONS:
        raise NotFoundError(f"unknown review action {action!r}", hint=f"actions: {', '.join(REVIEW_ACTIONS)}")
    claim = ctx.store.claims.get(claim_id)
    authorize(principal, f"claim.{action}", campaign=claim_campaign(ctx, claim), claim=claim)
    if not rationale or len(rationale.strip()) < 10:
        raise InvalidInput(
            "a rationale is required",
            [FieldError(field="rationale", message="at least 10 characters: say why")],
        )
    _rate(ctx, principal)
    rationale = rationale.strip()
    if action in _TIER:
        updated = ctx.knowledge().transition(
            claim_id, _TIER[action], actor=principal.name, role=principal.role, reason=rationale
        )
        return ReviewOut(claim=updated, audit=_last_audit(ctx, claim_id))
    if action == "request_reproduction":
        request = ReproductionRequest(
            id=new_id("rrq"), claim_id=claim_id, actor=principal.name, rationale=rationale
        )
        with ctx.store.transaction():
            ctx.store.reviews.add(request)
            entry = ctx.store.audit.append(
                principal.name,
                "claim.request_reproduction",
                "claim",
                claim_id,
                {"request": request.id, "reason": rationale, "role": principal.role},
            )
        return ReviewOut(claim=ctx.store.claims.get(claim_id), audit=entry, request=request)
    if claim.tier == "quarantined":
        raise ConflictError(f"claim {claim_id} is already quarantined")
    q = ctx.curation().quarantine(claim_id, why=rationale, actor=principal.name, role=principal.role)
    return ReviewOut(claim=ctx.store.claims.get(claim_id), audit=_last_audit(ctx, claim_id), quarantine=q)


@audits_refusals
def quarantine_target(ctx: WebContext, principal: Principal, target: str, rationale: str) -> Quarantine:
    authorize(principal, "claim.quarantine")
    _rate(ctx, principal)
    return ctx.curation().quarantine(target, why=rationale.strip(), actor=principal.name, role=principal.role)


@audits_refusals
def lift_quarantine(ctx: WebContext, principal: Principal, quarantine_id: str, rationale: str) -> Quarantine:
    authorize(principal, "quarantine.lift")
    ctx.store.quarantines.get(quarantine_id)
    _rate(ctx, principal)
    return ctx.curation().unquarantine(
        quarantine_id, actor=principal.name, role=principal.role, reason=rationale.strip()
    )


def _last_audit(ctx: WebContext, object_id: str) -> AuditEntry | None:
    entries = ctx.store.audit.list(object_id=object_id, limit=100_000)
    return entries[-1] if entries else None


# ---------------------------------------------------------------- campaigns


@audits_refusals
def create_campaign(
    ctx: WebContext,
    principal: Principal,
    *,
    spec_yaml: str | None,
    example: str | None,
    overrides: dict[str, str],
    launch: bool,
) -> tuple[Campaign, int | None]:
    authorize(principal, "campaign.create")
    if spec_yaml and example:
        raise InvalidInput(
            "give either spec_yaml or example, not both",
            [FieldError(field="example", message="leave empty when a YAML file is given")],
        )
    if example:
        text = L.example_text(ctx.examples_dir, example)
    elif spec_yaml is not None and spec_yaml.strip():
        text = spec_yaml
    else:
        raise InvalidInput(
            "no campaign file given",
            [FieldError(field="yaml", message="paste or upload a campaign YAML, or pick an example")],
        )
    spec = L.parse_spec(text, overrides)
    campaign = ctx.runner().create(spec, owner=principal.name)
    pid = ctx.launcher.start(campaign.id) if launch else None
    return ctx.store.campaigns.get(campaign.id), pid


@audits_refusals
def control(
    ctx: WebContext, principal: Principal, campaign_id: str, action: str
) -> tuple[Campaign, int | None]:
    campaign = ctx.store.campaigns.get(campaign_id)
    authorize(principal, "campaign.control", campaign=campaign)
    live = ctx.launcher.running_pid(campaign_id) is not None
    status = campaign.status
    store = ctx.store
    if action == "launch":
        if status != "created":
            raise ConflictError(
                f"campaign {campaign_id} is {status}; only a new campaign can be launched",
                hint="use resume for a paused campaign",
            )
        store.audit.append(principal.name, "campaign.launch", "campaign", campaign_id, {})
        return store.campaigns.get(campaign_id), ctx.launcher.start(campaign_id)
    if action == "resume":
        if live:
            raise ConflictError(f"campaign {campaign_id} is running")
        if status not in ("paused", "failed", "stopping"):
            hint = (
                "it runs in another process; if that process died, run `medloop campaign resume`"
                if status == "running"
                else None
            )
            raise ConflictError(f"campaign {campaign_id} is {status}; nothing to resume", hint=hint)
        store.audit.append(principal.name, "campaign.resume", "campaign", campaign_id, {})
        return store.campaigns.get(campaign_id), ctx.launcher.start(campaign_id)
    if action == "pause":
        if status != "running":
            raise ConflictError(f"campaign {campaign_id} is {status}; only a running campaign can be paused")
        return ctx.runner().pause(campaign_id, actor=principal.name), None
    if action == "stop":
        if status in ("completed", "incomplete", "stopped", "failed"):
            raise ConflictError(f"campaign {campaign_id} is already {status}")
        stopped = ctx.runner().stop(campaign_id, actor=principal.name)
        if not live and status in ("created", "paused"):
            # Nothing runs it: there is no cycle end at which it would notice.
            stopped = store.campaigns.update(campaign_id, status="stopped")
        return stopped, None
    raise NotFoundError(f"unknown campaign action {action!r}")


@audits_refusals
def add_code(
    ctx: WebContext,
    principal: Principal,
    campaign_id: str,
    *,
    source: str,
    point: str,
    rationale: str,
    name: str | None,
) -> CodeModule:
    """A person's code hypothesis (engine.code.add_code_hypothesis), for the campaign's
    owner or an admin."""
    campaign = ctx.store.campaigns.get(campaign_id)
    authorize(principal, "campaign.code", campaign=campaign)
    _rate(ctx, principal)
    return add_code_hypothesis(
        ctx.store, campaign_id, source, point=point, author=principal.name, rationale=rationale, name=name
    )
