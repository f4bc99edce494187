"""Test doubles (fakes, not mocks): small working implementations of the protocols."""

from __future__ import annotations

from medloop.core.records import Claim, Evidence, Tier
from medloop.core.store import Store
from medloop.knowledge.base import EVIDENCE_TIERS, RetrievalQuery, RetrievedClaim

_RANK = {"validated": 5, "reproduced": 4, "supported": 3, "external": 2, "inconclusive": 1, "refuted": 1}


class FakeKnowledge:
    """Claims in the store; retrieval = every planning-eligible claim on the same task,
    best tier first. Transitions are written and audited like the real lifecycle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.transitions: list[tuple[str, str, str, str]] = []

    def add_claim(self, claim: Claim, evidence: list[Evidence], *, actor: str) -> Claim:
        if self.store.claims.put([(claim, evidence)]):
            self.store.audit.append(actor, "claim.add", "claim", claim.id, {"tier": claim.tier})
        return self.store.claims.get(claim.id)

    def add_evidence(self, claim_id: str, evidence: list[Evidence], *, actor: str) -> Claim:
        self.store.evidence.add(evidence)
        return self.store.claims.get(claim_id)

    def retrieve(self, query: RetrievalQuery) -> list[RetrievedClaim]:
        out = []
        for claim in self.store.claims.list(limit=10_000):
            if claim.tier not in _RANK or (query.task and claim.context.task != query.task):
                continue
            role = "evidence" if claim.tier in EVIDENCE_TIERS else "suggestion"
            out.append(RetrievedClaim(claim=claim, score=0.9, role=role, reasons=[f"tier {claim.tier}"]))
        out.sort(key=lambda r: -_RANK[r.claim.tier])
        return out[: query.k]

    def transition(self, claim_id: str, tier: Tier, *, actor: str, role: str, reason: str) -> Claim:
        before = self.store.claims.get(claim_id).tier
        with self.store.transaction():
            claim = self.store.claims.set_tier(claim_id, tier)
            self.store.audit.append(
                actor,
                "claim.transition",
                "claim",
                claim_id,
                {"from": before, "to": tier, "role": role, "reason": reason},
            )
        self.transitions.append((claim_id, before, tier, actor))
        return claim

    def reconcile(self) -> dict[str, int]:
        return {}
