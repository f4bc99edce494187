"""The trust lifecycle of a claim (DESIGN.md, "Claims and trust") as checkable rules.

    proposed -> supported | refuted | inconclusive      statistics (agent)
    supported | refuted | external -> reproduced        fresh seeds agreed (agent)
    reproduced -> validated                             a human reviewer, not the author,
                                                        not the owner of its campaign
    any live tier -> rejected                           the same kind of reviewer
    any live tier -> superseded                         a newer claim replaces it
    any -> quarantined, and back                        only through quarantine / lift

No agent, tool, import or admin can set `validated`: only role `reviewer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from medloop.core.errors import NotFoundError, TrustError
from medloop.core.records import Claim, Tier, utcnow
from medloop.core.store import Store
from medloop.core.trust import MOVES, move_refusal

Role = Literal["viewer", "agent", "reviewer", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
# Tiers a new claim may enter with; `external` is what imports get.
INITIAL: tuple[Tier, ...] = ("proposed", "supported", "refuted", "inconclusive", "external")
# Tiers never used to plan (and never shown as suggestions).
EXCLUDED_FROM_PLANNING: tuple[Tier, ...] = ("quarantined", "rejected", "superseded")
HUMAN_DECISIONS: tuple[Tier, ...] = ("validated", "rejected")
_VERB = {"validated": "validate", "rejected": "reject"}


@dataclass(frozen=True)
class Context:
    """What the rules need beyond the claim: who owns its campaign, whether fresh-seed
    reproduction evidence exists."""

    campaign_owner: str | None
    has_reproduction: bool
    started_by: str | None = None  # who ran the campaign, when not its owner


def check(claim: Claim, to: Tier, *, actor: str, role: str, reason: str, ctx: Context) -> None:
    """Raise TrustError (with the rule that refused) unless the move is allowed."""
    frm = claim.tier
    if role not in ROLES:
        raise TrustError(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")
    if not actor.strip():
        raise TrustError("a trust change needs a named actor")
    if not reason.strip():
        raise TrustError(f"moving claim {claim.id} to {to} needs a reason", hint="pass --reason")
    if to == "quarantined" or frm == "quarantined":
        raise TrustError(
            f"claim {claim.id}: quarantine is changed only by `medloop knowledge quarantine` / `unquarantine`",
            hint="those demote or restore everything derived from the same source at once",
        )
    if frm == to:
        raise TrustError(f"claim {claim.id} is already {to}")
    refused = move_refusal(frm, to, role)
    if refused is not None:
        acting = f"; {actor} acts as {role}" if (frm, to) in MOVES else ""
        raise TrustError(f"claim {claim.id}: {refused}{acting}")
    if to in HUMAN_DECISIONS:
        if actor == claim.author:
            raise TrustError(
                f"{actor} authored claim {claim.id} and cannot review it", hint="ask another reviewer"
            )
        if actor in (ctx.campaign_owner, ctx.started_by):
            raise TrustError(
                f"{actor} owns or started campaign {claim.campaign_id}; a reviewer cannot "
                f"{_VERB[to]} a claim from their own campaign",
                hint="ask a reviewer who did not run the campaign",
            )
    if to == "reproduced" and not ctx.has_reproduction:
        raise TrustError(
            f"claim {claim.id} has no reproduction evidence",
            hint="re-run with fresh seeds and record it (evidence role 'reproduction' or a claim that reproduces it)",
        )


def check_initial(claim: Claim) -> None:
    if claim.tier not in INITIAL:
        raise TrustError(
            f"claim {claim.id} cannot enter the knowledge base as {claim.tier}",
            hint=f"new claims enter as one of {', '.join(INITIAL)}; higher tiers are earned by transitions",
        )


REPRODUCTION_ROLES = ("reproduction", "reproduces")


def context_for(store: Store, claim: Claim, to: Tier) -> Context:
    owner, started_by = campaign_people(store, claim)
    return Context(
        campaign_owner=owner,
        has_reproduction=to == "reproduced" and has_reproduction(store, claim),
        started_by=started_by,
    )


def campaign_people(store: Store, claim: Claim) -> tuple[str | None, str | None]:
    """(owner, started_by) of the claim's campaign; Nones without one."""
    if not claim.campaign_id:
        return None, None
    try:
        campaign = store.campaigns.get(claim.campaign_id)
    except NotFoundError:
        return None, None
    return campaign.owner, campaign.started_by


def campaign_owner(store: Store, claim: Claim) -> str | None:
    return campaign_people(store, claim)[0]


def has_reproduction(store: Store, claim: Claim) -> bool:
    """Fresh-seed reproduction trials in the evidence, or a claim that `reproduces` this
    one in the same direction (and with the same verdict family)."""
    evidence = store.evidence.list(claim.id)
    original_seeds = {ev.detail.get("seed") for ev in evidence if ev.role not in REPRODUCTION_ROLES}
    for ev in evidence:
        # Fresh seeds only: a re-run of the same seed reproduces nothing.
        fresh = ev.detail.get("seed") is None or ev.detail.get("seed") not in original_seeds
        if ev.kind == "trial" and ev.role in REPRODUCTION_ROLES and fresh:
            return True
    sources = [e.src for e in store.graph.edges(dst=[claim.id], kinds=["reproduces"])]
    if not sources:
        return False
    facts = {f.claim_id: f for f in store.facts.list(claim_ids=[claim.id, *sources])}
    mine = facts.get(claim.id)
    for other in store.claims.get_many(sources):
        theirs = facts.get(other.id)
        if mine is None or theirs is None or other.tier in EXCLUDED_FROM_PLANNING:
            continue
        if theirs.sign == mine.sign and (other.tier == "refuted") == (claim.tier == "refuted"):
            return True
    return False


def transition(store: Store, claim_id: str, tier: Tier, *, actor: str, role: str, reason: str) -> Claim:
    """Check the rules and write the new tier and its audit entry in one transaction."""
    with store.transaction():
        claim = store.claims.get(claim_id)
        check(claim, tier, actor=actor, role=role, reason=reason, ctx=context_for(store, claim, tier))
        updated = store.claims.set_tier(claim_id, tier)
        store.audit.append(
            actor,
            "claim.transition",
            "claim",
            claim_id,
            {"from": claim.tier, "to": tier, "role": role, "reason": reason, "at": utcnow()},
        )
    return updated
