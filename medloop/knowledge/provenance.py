"""A claim with its evidence resolved to runs: what `claims show --json`, the API and
exports return. Every trial reference resolves to spec, seed, dataset checksum and code
version (from the trial's job provenance, or, for imported claims, the exported copy).
"""

from __future__ import annotations

from typing import Any

from medloop.core.errors import NotFoundError
from medloop.core.records import Claim, Evidence
from medloop.core.store import Store
from medloop.knowledge.base import Conflict
from medloop.knowledge.lifecycle import EXCLUDED_FROM_PLANNING
from medloop.knowledge.model import trial_provenance


def resolve_evidence(store: Store, evidence: Evidence) -> dict[str, Any]:
    out: dict[str, Any] = evidence.model_dump(mode="json", exclude={"schema_version", "claim_id"})
    if evidence.kind == "trial":
        try:
            trial = store.trials.get(evidence.ref_id)
        except NotFoundError:
            # Imported: the provenance travelled with the evidence (never re-verified here).
            out["trial"] = None
            out["provenance"] = dict(evidence.detail.get("provenance", {})) or None
            return out
        out["trial"] = {
            "id": trial.id,
            "spec": trial.spec.model_dump(mode="json"),
            "metrics": trial.result.evaluations
            and {split: ev.summary for split, ev in trial.result.evaluations.items()}
            if trial.result
            else None,
        }
        out["provenance"] = trial_provenance(trial)
    elif evidence.kind in ("source", "claim"):
        try:
            entity = store.graph.get_entity(evidence.ref_id)
            out["entity"] = entity.model_dump(mode="json", exclude={"schema_version"})
        except NotFoundError:
            out["entity"] = None
    return out


def claim_view(store: Store, claim: Claim, *, history: bool = False) -> dict[str, Any]:
    """JSON-ready: the claim, its evidence resolved, its relations, and optionally its audit."""
    data: dict[str, Any] = claim.model_dump(mode="json")
    data["evidence"] = [resolve_evidence(store, ev) for ev in store.evidence.list(claim.id)]
    relations = [
        {"kind": e.kind, "claim_id": e.dst, "direction": "out"}
        for e in store.graph.edges(src=claim.id, kinds=["supports", "refutes", "contradicts", "reproduces"])
    ] + [
        {"kind": e.kind, "claim_id": e.src, "direction": "in"}
        for e in store.graph.edges(dst=[claim.id], kinds=["supports", "refutes", "contradicts", "reproduces"])
    ]
    data["relations"] = relations
    if history:
        data["history"] = [
            e.model_dump(mode="json", include={"seq", "ts", "actor", "action", "detail"})
            for e in store.audit.list(object_id=claim.id)
        ]
    return data


def conflicts(store: Store, *, include_inactive: bool = False) -> list[Conflict]:
    """Pairs linked `contradicts`; by default only pairs where both claims are live."""
    edges = store.graph.edges(kinds=["contradicts"])
    claims = {c.id: c for c in store.claims.get_many(sorted({e.src for e in edges} | {e.dst for e in edges}))}
    facts = {f.claim_id: f for f in store.facts.list(claim_ids=sorted(claims))}
    out = []
    for e in edges:
        a, b = claims.get(e.src), claims.get(e.dst)
        if a is None or b is None:
            continue
        active = a.tier not in EXCLUDED_FROM_PLANNING and b.tier not in EXCLUDED_FROM_PLANNING
        if active or include_inactive:
            key = facts[a.id].intervention if a.id in facts else "?"
            out.append(Conflict(a=a, b=b, intervention=key, outcome=a.outcome, active=active))
    return out
