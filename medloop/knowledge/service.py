"""`KnowledgeService`: the concrete `KnowledgeBase`. SQL first, then the indexes.

Every write commits claim, evidence, facts, entities, edges, the statement vector and
the audit entry in one SQL transaction; the vector and graph indexes are updated after
the commit and follow SQL by sequence number (`sync`), so a crash between the two is
repaired by `reconcile()` and other processes see new claims at their next query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medloop.core.errors import NotFoundError, TrustError
from medloop.core.ids import sha256_hex
from medloop.core.records import Claim, ClaimFacts, EdgeKind, Evidence, Tier, Trial, utcnow
from medloop.core.store import Store, VectorRow
from medloop.knowledge import lifecycle, model, retrieval
from medloop.knowledge.base import (
    EVIDENCE_TIERS,
    Embedder,
    GraphIndex,
    RetrievalQuery,
    RetrievedClaim,
    Vector,
    VectorIndex,
)
from medloop.knowledge.vector import mismatch

SYNC_BATCH = 2000
# Caps on relation edges a new claim adds (most comparable first), so a popular
# intervention does not turn into a dense graph.
MAX_RELATIONS = {"contradicts": 50, "refutes": 20, "supports": 5}


def text_hash(text: str) -> str:
    return sha256_hex(text)[:16]


class KnowledgeService:
    """Claims with provenance, trust lifecycle and hybrid retrieval over SQL + indexes.

    `owner` is True in the one process that may rebuild the persistent indexes (it holds
    the writer lock); every process keeps its own index objects in sync with SQL.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        vectors: VectorIndex,
        graph: GraphIndex,
        *,
        owner: bool = True,
        where: str = "the knowledge base",
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.vectors = vectors
        self.graph = graph
        self.owner = owner
        self.where = where
        self._seq = 0  # last kb_claim_facts seq applied to the vector index
        self._own: set[str] = set()  # claims this object indexed ahead of `_seq`
        self.check_embedder()

    # ------------------------------------------------------------ embedder bookkeeping

    def check_embedder(self) -> None:
        """The store remembers the embedder its vectors were made with; refuse another."""
        name, dim = self.store.get_meta("embedder"), self.store.get_meta("embedder_dim")
        if name is None:
            self.store.set_meta("embedder", self.embedder.name)
            self.store.set_meta("embedder_dim", str(self.embedder.dim))
        elif name != self.embedder.name or int(dim or 0) != self.embedder.dim:
            raise mismatch(self.where, name, int(dim or 0), self.embedder.name, self.embedder.dim)

    # ------------------------------------------------------------ writing claims

    def add_claim(self, claim: Claim, evidence: list[Evidence], *, actor: str) -> Claim:
        return self.add_claims([(claim, evidence)], actor=actor)[0]

    def add_claims(self, items: Sequence[tuple[Claim, list[Evidence]]], *, actor: str) -> list[Claim]:
        """Add claims in one transaction (idempotent on claim id); returns the stored claims."""
        for claim, evidence in items:
            lifecycle.check_initial(claim)
            for ev in evidence:
                if ev.claim_id != claim.id:
                    raise TrustError(f"evidence for {ev.claim_id} was passed with claim {claim.id}")
        existing = {c.id: c for c in self.store.get_claims([c.id for c, _ in items])}
        # First occurrence of each new id (a batch may repeat one).
        fresh = list({c.id: (c, ev) for c, ev in reversed(items) if c.id not in existing}.values())[::-1]
        if fresh:
            vecs = self.embedder.embed([c.statement for c, _ in fresh])
            trials = self._trials([ev for _, evs in fresh for ev in evs])
            inherited = self._inherited_quarantines(fresh)
            stored: list[tuple[Claim, ClaimFacts]] = []
            with self.store.transaction():
                for (claim, evidence), vec in zip(fresh, vecs, strict=True):
                    result = self._write_claim(
                        claim, evidence, vec, trials, inherited.get(claim.id, []), actor
                    )
                    if result is not None:
                        stored.append(result)
            self._index_new(stored, {c.id: v for (c, _), v in zip(fresh, vecs, strict=True)})
            existing.update({c.id: c for c, _ in stored})
        return [existing[c.id] for c, _ in items if c.id in existing]

    def _trials(self, evidence: Sequence[Evidence]) -> dict[str, Trial]:
        out: dict[str, Trial] = {}
        for tid in {ev.ref_id for ev in evidence if ev.kind == "trial"}:
            try:
                out[tid] = self.store.get_trial(tid)
            except NotFoundError:
                continue  # an imported or pruned trial: its provenance travels in evidence.detail
        return out

    def _inherited_quarantines(self, items: Sequence[tuple[Claim, list[Evidence]]]) -> dict[str, list[str]]:
        """New claims that derive from something under an active quarantine enter quarantined."""
        active = self.store.list_quarantines(active_only=True)
        if not active:
            return {}
        covered: dict[str, str] = {}
        for q in active:
            covered[q.target_id] = q.id
            covered.update(dict.fromkeys(q.members, q.id))
        out: dict[str, list[str]] = {}
        for claim, evidence in items:
            refs = self._ancestors(
                [ev.ref_id for ev in evidence] + [claim.campaign_id or "", claim.hypothesis_id or ""]
            )
            hits = sorted({covered[r] for r in refs if r in covered})
            if hits:
                out[claim.id] = hits
        return out

    def _ancestors(self, nodes: Sequence[str]) -> set[str]:
        seen = {n for n in nodes if n}
        frontier = list(seen)
        while frontier:
            nxt: list[str] = []
            for node in frontier:
                for e in self.store.list_edges(src=node, kinds=model.PROVENANCE, limit=1000):
                    if e.dst not in seen:
                        seen.add(e.dst)
                        nxt.append(e.dst)
            frontier = nxt
        return seen

    def _write_claim(
        self,
        claim: Claim,
        evidence: list[Evidence],
        vec: Vector,
        trials: dict[str, Trial],
        quarantines: list[str],
        actor: str,
    ) -> tuple[Claim, ClaimFacts] | None:
        entered = claim.tier
        if quarantines:
            claim = claim.model_copy(update={"tier": "quarantined"})
        if not self.store.put_claim(claim, evidence):
            return None
        facts = model.facts_of(claim)
        facts = facts.model_copy(update={"seq": self.store.put_claim_facts(facts)})
        g = model.graphlet(claim, evidence, trials)
        relations = self._relations(claim, facts)
        for kind, other in relations:
            g.edge(claim.id, "claim", kind, other, "claim")
        self.store.put_entities(list(g.entities.values()))
        self.store.put_edges(list(g.edges.values()))
        self.store.put_vectors(
            [
                VectorRow(
                    claim.id, self.embedder.name, self.embedder.dim, text_hash(claim.statement), vec.tobytes()
                )
            ]
        )
        for qid in quarantines:
            self.store.add_quarantine_members(qid, {claim.id: entered})
        detail: dict[str, Any] = {
            "tier": entered,
            "evidence": [f"{ev.kind}:{ev.ref_id}:{ev.role}" for ev in evidence],
            "relations": [f"{kind} {other}" for kind, other in relations],
        }
        if quarantines:
            detail["quarantined_by"] = quarantines
        self.store.append_audit(actor, "claim.add", "claim", claim.id, detail)
        for kind, other in relations:
            if kind == "contradicts":
                self.store.append_audit(actor, "claim.contradiction", "claim", other, {"with": claim.id})
        return claim, facts

    def _relations(self, claim: Claim, facts: ClaimFacts) -> list[tuple[EdgeKind, str]]:
        """contradicts / supports / refutes edges from the new claim to earlier ones."""
        signs = [-1, 1] if facts.sign or claim.tier == "refuted" else []
        if not signs:
            return []
        ids = self.store.related_claim_ids(
            intervention=facts.intervention,
            outcome=facts.outcome,
            signs=signs,
            dataset_checksum=facts.dataset_checksum,
            exclude=claim.id,
        )
        others = self.store.get_claims(ids)
        orient = {f.claim_id: f.orientation for f in self.store.list_claim_facts(claim_ids=ids)}
        out: list[tuple[EdgeKind, str]] = []
        counts: dict[str, int] = {}
        for other in others:
            kind = model.relation(claim, facts.orientation, other, orient.get(other.id, 1))
            if kind is not None and counts.get(kind, 0) < MAX_RELATIONS[kind]:
                counts[kind] = counts.get(kind, 0) + 1
                out.append((kind, other.id))
        return out

    def _index_new(self, stored: Sequence[tuple[Claim, ClaimFacts]], vecs: dict[str, Vector]) -> None:
        if stored:
            ids = [c.id for c, _ in stored]
            self.vectors.upsert(
                ids,
                np.stack([vecs[i] for i in ids]).astype(np.float32),
                [model.vector_metadata(f) for _, f in stored],
            )
            self._own.update(ids)
        self._sync_graph()

    # ------------------------------------------------------------ following SQL

    def sync(self) -> int:
        """Apply claims and edges committed since the last sync (by any process)."""
        added = 0
        while self.store.max_claim_seq() > self._seq:
            rows = self.store.list_claim_facts(after_seq=self._seq, limit=SYNC_BATCH)
            todo = [f for f in rows if f.claim_id not in self._own]
            if todo:
                added += self._index_facts(todo)
            self._own.difference_update(f.claim_id for f in rows)
            self._seq = rows[-1].seq
        self._sync_graph()
        return added

    def _index_facts(self, facts: Sequence[ClaimFacts]) -> int:
        ids = [f.claim_id for f in facts]
        stored = self.store.get_vectors(ids)
        missing = [i for i in ids if i not in stored or stored[i].embedder != self.embedder.name]
        if missing:
            claims = self.store.get_claims(missing)
            vecs = self.embedder.embed([c.statement for c in claims])
            rows = [
                VectorRow(c.id, self.embedder.name, self.embedder.dim, text_hash(c.statement), v.tobytes())
                for c, v in zip(claims, vecs, strict=True)
            ]
            self.store.put_vectors(rows)  # SQL is safe to write from any process
            stored.update({r.claim_id: r for r in rows})
        keep = [f for f in facts if f.claim_id in stored]
        if keep:
            matrix = np.stack([np.frombuffer(stored[f.claim_id].vector, dtype=np.float32) for f in keep])
            self.vectors.upsert([f.claim_id for f in keep], matrix, [model.vector_metadata(f) for f in keep])
        return len(keep)

    def _sync_graph(self) -> int:
        added = 0
        while self.store.max_edge_seq() > self.graph.watermark:
            edges = self.store.list_edges(after_seq=self.graph.watermark, limit=50_000)
            for e in edges:
                self.graph.upsert_node(e.src, e.src_kind)
                self.graph.upsert_node(e.dst, e.dst_kind)
                self.graph.upsert_edge(e.src, e.dst, e.kind)
            self.graph.watermark = edges[-1].seq
            added += len(edges)
        return added

    def reconcile(self) -> dict[str, int]:
        """Make the indexes hold exactly the claims in SQL (after a crash, or on start)."""
        self.check_embedder()
        counts = {"facts_added": self._backfill_facts()}
        sql_ids = set(self.store.claim_tiers())
        index_ids = self.vectors.ids()
        extra = sorted(index_ids - sql_ids)
        self.vectors.delete(extra)
        missing = sql_ids - index_ids
        facts = self.store.list_claim_facts(claim_ids=sorted(missing)) if missing else []
        for start in range(0, len(facts), SYNC_BATCH):
            self._index_facts(facts[start : start + SYNC_BATCH])
        counts |= {"vectors_added": len(facts), "vectors_removed": len(extra)}
        self._seq, self._own = self.store.max_claim_seq(), set()
        graph_claims = self.graph.nodes("claim")
        if graph_claims - sql_ids or self.graph.watermark > self.store.max_edge_seq():
            self.graph.clear()  # the cache is ahead of or unknown to SQL: rebuild it
            counts["graph_rebuilt"] = 1
        counts["edges_added"] = self._sync_graph()
        if counts["edges_added"] and self.owner:
            self.graph.save()
        return counts

    def _backfill_facts(self) -> int:
        """Claims written straight through `store.put_claim` get their facts and edges."""
        known = {f.claim_id for f in self.store.list_claim_facts(limit=10**9)}
        todo = [cid for cid in self.store.claim_tiers() if cid not in known]
        for claim in self.store.get_claims(todo):
            evidence = self.store.list_evidence(claim.id)
            vec = self.embedder.embed([claim.statement])[0]
            with self.store.transaction():
                facts = model.facts_of(claim)
                self.store.put_claim_facts(facts)
                g = model.graphlet(claim, evidence, self._trials(evidence))
                self.store.put_entities(list(g.entities.values()))
                self.store.put_edges(list(g.edges.values()))
                self.store.put_vectors(
                    [
                        VectorRow(
                            claim.id,
                            self.embedder.name,
                            self.embedder.dim,
                            text_hash(claim.statement),
                            vec.tobytes(),
                        )
                    ]
                )
        return len(todo)

    def rebuild(self, *, reembed: bool = False) -> dict[str, int]:
        """Drop both indexes and rebuild them from SQL (re-embedding statements if asked)."""
        if not self.owner:
            raise TrustError(
                f"another process holds the writer lock of {self.where}",
                hint="stop the running campaign/server first, or rebuild from that process",
            )
        if reembed:
            self._reembed_all()
        self.vectors.clear()
        self.graph.clear()
        self._seq, self._own = 0, set()
        counts = {"vectors": self.sync(), "edges": self.graph.watermark}
        self.graph.save()
        return counts

    def _reembed_all(self) -> None:
        after: str | None = None
        while True:
            page = self.store.list_claims(after=after, limit=SYNC_BATCH)
            vecs = self.embedder.embed([c.statement for c in page])
            rows = [
                VectorRow(c.id, self.embedder.name, self.embedder.dim, text_hash(c.statement), v.tobytes())
                for c, v in zip(page, vecs, strict=True)
            ]
            with self.store.transaction():
                self.store.put_vectors(rows)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        self.store.set_meta("embedder", self.embedder.name)
        self.store.set_meta("embedder_dim", str(self.embedder.dim))

    def close(self) -> None:
        """Persist the graph cache (the vector index persists itself)."""
        if self.owner:
            self.graph.save()

    # ------------------------------------------------------------ trust

    def transition(self, claim_id: str, tier: Tier, *, actor: str, role: str, reason: str) -> Claim:
        with self.store.transaction():
            claim = self.store.get_claim(claim_id)
            ctx = lifecycle.Context(
                campaign_owner=self._owner_of(claim),
                has_reproduction=tier == "reproduced" and self._has_reproduction(claim),
            )
            lifecycle.check(claim, tier, actor=actor, role=role, reason=reason, ctx=ctx)
            updated = self.store.set_claim_tier(claim_id, tier)
            self.store.append_audit(
                actor,
                "claim.transition",
                "claim",
                claim_id,
                {"from": claim.tier, "to": tier, "role": role, "reason": reason, "at": utcnow()},
            )
        return updated

    def _owner_of(self, claim: Claim) -> str | None:
        if not claim.campaign_id:
            return None
        try:
            return self.store.get_campaign(claim.campaign_id).owner
        except NotFoundError:
            return None

    def _has_reproduction(self, claim: Claim) -> bool:
        evidence = self.store.list_evidence(claim.id)
        original_seeds = {ev.detail.get("seed") for ev in evidence if ev.role not in model.REPRODUCTION_ROLES}
        for ev in evidence:
            # Fresh seeds only: a re-run of the same seed reproduces nothing.
            fresh = ev.detail.get("seed") is None or ev.detail.get("seed") not in original_seeds
            if ev.kind == "trial" and ev.role in model.REPRODUCTION_ROLES and fresh:
                return True
        sources = [src for src, _ in self.store.edges_into([claim.id], ["reproduces"])]
        if not sources:
            return False
        facts = {f.claim_id: f for f in self.store.list_claim_facts(claim_ids=[claim.id, *sources])}
        mine = facts.get(claim.id)
        for other in self.store.get_claims(sources):
            theirs = facts.get(other.id)
            if mine is None or theirs is None or other.tier in lifecycle.EXCLUDED_FROM_PLANNING:
                continue
            if theirs.sign == mine.sign and (other.tier == "refuted") == (claim.tier == "refuted"):
                return True
        return False

    # ------------------------------------------------------------ retrieval

    def retrieve(self, query: RetrievalQuery) -> list[RetrievedClaim]:
        """Hybrid retrieval: vector + structured + one graph hop, ranked (see retrieval.py)."""
        self.sync()
        qv = self.embedder.embed([query.text])[0]
        cands: dict[str, retrieval.Candidate] = {}
        for cid, sim in self.vectors.query(qv, k=max(3 * query.k, 30), where=retrieval.where_filter(query)):
            cands.setdefault(cid, retrieval.Candidate(cid)).similarity = sim
            cands[cid].found_by.add("vector")
        for tiers, limit in self._structured_plan(query):
            for cid in self.store.find_claim_ids(
                tiers=tiers, task=query.task, outcome=query.outcome, factors=query.factors, limit=limit
            ):
                cands.setdefault(cid, retrieval.Candidate(cid)).found_by.add("structured")
        claims = {c.id: c for c in self.store.get_claims(list(cands)) if retrieval.allowed(c, query)}
        self._fill_similarity(qv, [cands[i] for i in claims])
        first = retrieval.order([retrieval.rank(claims[i], cands[i], query) for i in claims])
        self._expand(first[: query.k], cands, claims, qv, query)
        ranked = retrieval.order([retrieval.rank(claims[i], cands[i], query) for i in claims])
        return ranked[: query.k]

    def _structured_plan(self, query: RetrievalQuery) -> list[tuple[list[Tier], int]]:
        if query.purpose == "planning":
            return [(list(EVIDENCE_TIERS), 2 * query.k), (["supported", "refuted"], query.k)]
        tiers: list[Tier] = [t for t in retrieval.TIER_WEIGHT if t not in ("quarantined", "rejected")]
        return [(tiers, 2 * query.k)]

    def _fill_similarity(self, qv: Vector, cands: Sequence[retrieval.Candidate]) -> None:
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
        cands: dict[str, retrieval.Candidate],
        claims: dict[str, Claim],
        qv: Vector,
        query: RetrievalQuery,
    ) -> None:
        """One hop over claim-claim edges (contradicts, supports, refutes, reproduces)."""
        found: dict[str, list[str]] = {}
        for r in top:
            for other, kind in self.graph.neighbors(r.claim.id, kinds=model.CLAIM_RELATIONS):
                found.setdefault(other, []).append(f"{kind} {r.claim.id}")
        new = [i for i in found if i not in claims]
        for c in self.store.get_claims(new):
            if retrieval.allowed(c, query):
                claims[c.id] = c
                cands.setdefault(c.id, retrieval.Candidate(c.id)).found_by.add("graph")
        for cid, via in found.items():
            if cid in claims:
                cands[cid].via = sorted(set(cands[cid].via) | set(via))
        self._fill_similarity(qv, [cands[i] for i in new if i in claims])
