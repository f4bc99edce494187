"""Quarantine: pull a poisoned source, trial, campaign or claim out of planning together
with every claim derived from it, in one audited transaction, and undo it later.

"Derived from X" = reachable backwards over `derived_from` edges, plus claims whose
evidence cites X (evidence rows count even if written without the knowledge layer).
"""

from __future__ import annotations

from medloop.core.code import SHA256
from medloop.core.errors import NotFoundError, TrustError
from medloop.core.ids import new_id
from medloop.core.records import Quarantine, Tier, utcnow
from medloop.core.store import Store
from medloop.knowledge import lifecycle

QUARANTINE_ROLES = ("agent", "reviewer", "admin")  # demoting is always safe
LIFT_ROLES = ("reviewer", "admin")  # restoring trust is a human decision


def code_target(target: str) -> str:
    """A code module is quarantined by its hash (or `code:<hash>`): the graph node its
    claims cite is `code:<sha256>`."""
    bare = target.removeprefix("code:")
    return f"code:{bare}" if SHA256.match(bare) else target


def target_type(store: Store, target: str) -> str:
    """What `target` names: claim, trial, campaign, hypothesis, code module or source."""
    if target.startswith("code:"):
        store.code.get(target.removeprefix("code:"))  # NotFoundError names the hash
        return "code"
    probes = (
        ("claim", store.claims.get),
        ("trial", store.trials.get),
        ("campaign", store.campaigns.get),
        ("hypothesis", store.cycles.get_hypothesis),
    )
    for kind, probe in probes:
        try:
            probe(target)
            return kind
        except NotFoundError:
            continue
    try:
        entity = store.graph.get_entity(target)
    except NotFoundError:
        raise NotFoundError(
            f"{target!r} is not a claim, trial, campaign, hypothesis or source in this knowledge base",
            hint="sources of imported claims are named source:<name>; see `medloop claims show ID --json`",
        ) from None
    if entity.kind in ("source", "trial", "campaign", "hypothesis"):
        return entity.kind
    raise TrustError(f"{target} is a {entity.kind}; quarantine a source, trial, campaign or claim")


def derived_claims(store: Store, roots: list[str]) -> set[str]:
    """Every claim derived (transitively) from any of `roots`."""
    claims = set(store.claims.tiers(roots))
    seen, frontier = set(roots), list(roots)
    while frontier:
        found = {e.src for e in store.graph.edges(dst=frontier, kinds=["derived_from"])}
        for node in frontier:
            found.update(store.evidence.citing(node))
        fresh = found - seen
        seen |= fresh
        frontier = sorted(fresh)
        claims |= set(store.claims.tiers(frontier))
    return claims


def quarantine(store: Store, target: str, *, why: str, actor: str, role: str) -> Quarantine:
    """Demote every claim derived from `target` to `quarantined`, atomically."""
    if role not in QUARANTINE_ROLES:
        raise TrustError(f"quarantine needs role {', '.join(QUARANTINE_ROLES)}; {actor} acts as {role}")
    if not why.strip():
        raise TrustError("a quarantine needs a reason", hint="pass --why")
    target = code_target(target)
    kind = target_type(store, target)
    qid = new_id("qtn")
    with store.transaction():
        members = derived_claims(store, [target])
        tiers = store.claims.tiers(sorted(members))
        holds = store.quarantines.holds(sorted(members))
        before: dict[str, str] = {}
        for cid, tier in tiers.items():
            # Already quarantined elsewhere: remember the tier it had before that one.
            before[cid] = _original_tier(store, cid, holds.get(cid, [])) if tier == "quarantined" else tier
        record = Quarantine(id=qid, target_type=kind, target_id=target, why=why, actor=actor, members=before)  # type: ignore[arg-type]
        store.quarantines.put(record)
        for cid in sorted(before):
            if tiers[cid] != "quarantined":
                store.claims.set_tier(cid, "quarantined")
            store.audit.append(
                actor, "claim.quarantine", "claim", cid, {"quarantine": qid, "from": before[cid]}
            )
        store.audit.append(
            actor,
            "knowledge.quarantine",
            kind,
            target,
            {"quarantine": qid, "why": why, "role": role, "claims": len(before)},
        )
    return store.quarantines.get(qid)


def _original_tier(store: Store, claim_id: str, quarantine_ids: list[str]) -> str:
    for qid in quarantine_ids:
        prev = store.quarantines.get(qid).members.get(claim_id)
        if prev and prev != "quarantined":
            return prev
    return "inconclusive"  # unknown history: restore to the lowest live statistical tier


def lift(store: Store, quarantine_id: str, *, actor: str, role: str, reason: str) -> Quarantine:
    """Undo a quarantine: members no other active quarantine holds get their tier back.
    A `validated` tier comes back only if this reviewer could validate it now; otherwise
    the claim returns as `reproduced` and needs a fresh review."""
    if role not in LIFT_ROLES:
        raise TrustError(f"lifting a quarantine needs role {' or '.join(LIFT_ROLES)}; {actor} acts as {role}")
    if not reason.strip():
        raise TrustError("lifting a quarantine needs a reason", hint="pass --reason")
    with store.transaction():
        q = store.quarantines.get(quarantine_id)
        if q.lifted_at is not None:
            raise TrustError(
                f"quarantine {quarantine_id} was already lifted at {q.lifted_at} by {q.lifted_by}"
            )
        store.quarantines.lift(quarantine_id, actor=actor, reason=reason)
        holds = store.quarantines.holds(sorted(q.members))
        tiers = store.claims.tiers(sorted(q.members))
        restored = 0
        for cid, prev in sorted(q.members.items()):
            if holds.get(cid) or tiers.get(cid) != "quarantined":
                continue  # still held by another quarantine, or changed since
            tier: Tier = prev  # type: ignore[assignment]
            note = ""
            if tier == "validated" and not _may_validate(store, cid, actor, role):
                tier, note = "reproduced", "validation must be renewed by an independent reviewer"
            store.claims.set_tier(cid, tier)
            detail = {"quarantine": quarantine_id, "to": tier, "reason": reason, "at": utcnow()}
            store.audit.append(
                actor, "claim.unquarantine", "claim", cid, detail | ({"note": note} if note else {})
            )
            restored += 1
        store.audit.append(
            actor,
            "knowledge.unquarantine",
            q.target_type,
            q.target_id,
            {"quarantine": quarantine_id, "reason": reason, "role": role, "restored": restored},
        )
    return store.quarantines.get(quarantine_id)


def _may_validate(store: Store, claim_id: str, actor: str, role: str) -> bool:
    claim = store.claims.get(claim_id)
    return (
        role == "reviewer" and actor != claim.author and actor not in lifecycle.campaign_people(store, claim)
    )
