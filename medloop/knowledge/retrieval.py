"""Ranking for hybrid retrieval: one score per candidate claim, with the reasons a human
(or a planner prompt) can read.

score = 0.30 statement similarity + 0.20 structured match + 0.25 trust tier
      + 0.10 effect strength (|estimate| / CI half-width, squashed) + 0.15 fingerprint
      similarity (0.5 when either side has no fingerprint).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medloop.core.records import Claim, Tier
from medloop.core.store import Store
from medloop.knowledge.base import (
    EVIDENCE_TIERS,
    Embedder,
    GraphIndex,
    RetrievalQuery,
    RetrievedClaim,
    Vector,
    VectorIndex,
)
from medloop.knowledge.lifecycle import EXCLUDED_FROM_PLANNING
from medloop.knowledge.model import CLAIM_RELATIONS, fingerprint_similarity

TIER_WEIGHT: dict[Tier, float] = {
    "validated": 1.0,
    "reproduced": 0.85,
    "supported": 0.6,
    "refuted": 0.5,
    "external": 0.4,
    "inconclusive": 0.3,
    "proposed": 0.1,
    "superseded": 0.05,
    "rejected": 0.0,
    "quarantined": 0.0,
}
W_SIM, W_MATCH, W_TIER, W_EFFECT, W_FP = 0.30, 0.20, 0.25, 0.10, 0.15


@dataclass
class Candidate:
    claim_id: str
    similarity: float | None = None
    found_by: set[str] = field(default_factory=set)  # vector | structured | graph
    via: list[str] = field(default_factory=list)  # graph reasons: "contradicts clm_x"


def allowed(claim: Claim, query: RetrievalQuery) -> bool:
    """Purpose and the structured filter (task, outcome, at least one query factor)."""
    if query.purpose == "planning" and claim.tier in EXCLUDED_FROM_PLANNING:
        return False
    if query.task is not None and claim.context.task != query.task:
        return False
    if query.outcome is not None and claim.outcome != query.outcome:
        return False
    return not query.factors or bool({c.factor for c in claim.changes} & set(query.factors))


def where_filter(query: RetrievalQuery) -> dict[str, Any] | None:
    """The structured filter in the vector index's syntax (immutable metadata only)."""
    parts: list[dict[str, Any]] = []
    if query.task is not None:
        parts.append({"task": query.task})
    if query.outcome is not None:
        parts.append({"outcome": query.outcome})
    if query.factors:
        ors = [{"factors": {"$contains": f}} for f in sorted(set(query.factors))]
        parts.append(ors[0] if len(ors) == 1 else {"$or": ors})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _effect_strength(claim: Claim) -> float:
    e = claim.effect
    if e is None:
        return 0.0
    half = max((e.ci_high - e.ci_low) / 2.0, 1e-9)
    return math.tanh(abs(e.estimate) / half / 2.0)


def _effect_text(claim: Claim) -> str:
    e = claim.effect
    if e is None:
        return "no effect estimate"
    pct = round(e.ci_level * 100)
    return (
        f"effect {e.estimate:+.4g} {e.metric} ({pct}% CI {e.ci_low:+.4g} to {e.ci_high:+.4g}, "
        f"p_adj {e.p_adjusted:.3g}, {e.n_cases} cases x {e.n_seeds} seeds)"
    )


def rank(claim: Claim, cand: Candidate, query: RetrievalQuery) -> RetrievedClaim:
    reasons: list[str] = []
    role = "evidence" if claim.tier in EVIDENCE_TIERS else "suggestion"
    tier_w = TIER_WEIGHT[claim.tier]
    if role == "evidence":
        reasons.append(f"tier {claim.tier}: may steer the plan as evidence")
    else:
        reasons.append(f"tier {claim.tier}: a labelled suggestion only (not reproduced or validated)")
    sim = cand.similarity if cand.similarity is not None else 0.0
    reasons.append(f"statement similarity {sim:.2f}")
    matched: list[str] = []
    if query.task is not None:
        matched.append(f"task {claim.context.task}")
    if query.outcome is not None:
        matched.append(f"outcome {claim.outcome}")
    claim_factors = {c.factor for c in claim.changes}
    if query.factors:
        shared = sorted(claim_factors & set(query.factors))
        match = len(shared) / len(set(query.factors))
        matched.append("factors " + ", ".join(shared))
    else:
        match = 1.0
    if matched:
        reasons.append("matches " + "; ".join(matched))
    effect_w = _effect_strength(claim)
    reasons.append(_effect_text(claim))
    fp = fingerprint_similarity(query.fingerprint, claim.context.fingerprint)
    if fp is None:
        fp_w = 0.5
        reasons.append(f"dataset {claim.context.dataset}: no fingerprint to compare")
    else:
        fp_w = fp
        reasons.append(f"dataset {claim.context.dataset}: fingerprint similarity {fp:.2f}")
    reasons += [f"related by graph: {v}" for v in cand.via]
    score = W_SIM * sim + W_MATCH * match + W_TIER * tier_w + W_EFFECT * effect_w + W_FP * fp_w
    return RetrievedClaim(claim=claim, score=round(score, 6), role=role, reasons=reasons)


def order(results: list[RetrievedClaim]) -> list[RetrievedClaim]:
    """Best first; ties by claim id so results are reproducible."""
    return sorted(results, key=lambda r: (-r.score, r.claim.id))


class Retriever:
    """One retrieval over the current indexes (built per query; holds no state)."""

    def __init__(self, store: Store, embedder: Embedder, vectors: VectorIndex, graph: GraphIndex) -> None:
        self.store = store
        self.embedder = embedder
        self.vectors = vectors
        self.graph = graph

    def run(self, query: RetrievalQuery) -> list[RetrievedClaim]:
        """Vector candidates + structured candidates, ranked, then one graph hop, re-ranked."""
        qv = self.embedder.embed([query.text])[0]
        cands: dict[str, Candidate] = {}
        for cid, sim in self.vectors.query(qv, k=max(3 * query.k, 30), where=where_filter(query)):
            cands.setdefault(cid, Candidate(cid)).similarity = sim
            cands[cid].found_by.add("vector")
        for tiers, limit in self._structured_plan(query):
            for cid in self.store.find_claim_ids(
                tiers=tiers, task=query.task, outcome=query.outcome, factors=query.factors, limit=limit
            ):
                cands.setdefault(cid, Candidate(cid)).found_by.add("structured")
        claims = {c.id: c for c in self.store.get_claims(list(cands)) if allowed(c, query)}
        self._fill_similarity(qv, [cands[i] for i in claims])
        first = order([rank(claims[i], cands[i], query) for i in claims])
        self._expand(first[: query.k], cands, claims, qv, query)
        ranked = order([rank(claims[i], cands[i], query) for i in claims])
        return ranked[: query.k]

    def _structured_plan(self, query: RetrievalQuery) -> list[tuple[list[Tier], int]]:
        if query.purpose == "planning":
            return [(list(EVIDENCE_TIERS), 2 * query.k), (["supported", "refuted"], query.k)]
        tiers: list[Tier] = [t for t in TIER_WEIGHT if t not in ("quarantined", "rejected")]
        return [(tiers, 2 * query.k)]

    def _fill_similarity(self, qv: Vector, cands: Sequence[Candidate]) -> None:
        todo = [c for c in cands if c.similarity is None]
        if not todo:
            return
        rows = self.store.get_vectors([c.claim_id for c in todo])
        for c in todo:
            row = rows.get(c.claim_id)
            if row is not None and row.embedder == self.embedder.name:
                c.similarity = float(np.frombuffer(row.vector, dtype=np.float32) @ qv)

    def _expand(
        self,
        top: Sequence[RetrievedClaim],
        cands: dict[str, Candidate],
        claims: dict[str, Claim],
        qv: Vector,
        query: RetrievalQuery,
    ) -> None:
        """One hop over claim-claim edges (contradicts, supports, refutes, reproduces)."""
        found: dict[str, list[str]] = {}
        for r in top:
            for other, kind in self.graph.neighbors(r.claim.id, kinds=CLAIM_RELATIONS):
                found.setdefault(other, []).append(f"{kind} {r.claim.id}")
        new = [i for i in found if i not in claims]
        for c in self.store.get_claims(new):
            if allowed(c, query):
                claims[c.id] = c
                cands.setdefault(c.id, Candidate(c.id)).found_by.add("graph")
        for cid, via in found.items():
            if cid in claims:
                cands[cid].via = sorted(set(cands[cid].via) | set(via))
        self._fill_similarity(qv, [cands[i] for i in new if i in claims])
