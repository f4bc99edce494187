"""`KnowledgeService`: the concrete `KnowledgeBase`. SQL first, then the indexes.

Every write commits claim, evidence, facts, entities, edges, the statement vector and
the audit entry in one SQL transaction; the vector and graph indexes are updated after
the commit and follow SQL by sequence number (`sync`), so a crash between the two is
repaired by `reconcile()` and other processes see new claims at their next query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import ConflictError, NotFoundError, TrustError
from medloop.core.ids import sha256_hex
from medloop.core.records import (
    Claim,
    ClaimFacts,
    Edge,
    EdgeKind,
    Entity,
    Evidence,
    Quarantine,
    Tier,
    Trial,
)
from medloop.core.store import Store, VectorRow
from medloop.knowledge import lifecycle, model, provenance, quarantine, retrieval
from medloop.knowledge.base import (
    Conflict,
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
MAX_RELATIONS = {"contradicts": 20, "refutes": 10, "supports": 3}


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
        check: bool = True,
    ) -> None:
        """`check=False` skips the embedder check (only for `rebuild(reembed=True)`)."""
        self.store = store
        self.embedder = embedder
        self.vectors = vectors
        self.graph = graph
        self.owner = owner
        self.where = where
        self.writer_note = "see its writer.lock"
        self.set_aside: Path | None = None  # where `rebuild` moved a corrupt vector index
        self._seq = 0  # last kb_claim_facts seq applied to the vector index
        self._own: set[str] = set()  # claims this object indexed ahead of `_seq`
        self._graph_dirty = False  # edges applied since the graph cache was loaded or saved
        # claim id -> (task, outcome, factors): immutable facts the retriever filters on
        self.facts: dict[str, tuple[str, str, frozenset[str]]] = {}
        if check:
            self.check_embedder()

    # ------------------------------------------------------------ embedder bookkeeping

    def check_embedder(self) -> None:
        """The store remembers the embedder its vectors were made with; refuse another."""
        name, dim = self.store.meta.get("embedder"), self.store.meta.get("embedder_dim")
        # an embedder whose vectors changed under the same name says so by its recipe
        recipe, mine = self.store.meta.get("embedder_recipe") or "", getattr(self.embedder, "recipe", "")
        if name is None:
            self._record_embedder()
        elif name != self.embedder.name or int(dim or 0) != self.embedder.dim:
            raise mismatch(self.where, name, int(dim or 0), self.embedder.name, self.embedder.dim)
        elif recipe != mine:
            raise mismatch(
                self.where, f"{name} ({recipe or 'an earlier recipe'})", int(dim or 0),
                f"{self.embedder.name} ({mine or 'no recipe'})", self.embedder.dim,
            )  # fmt: skip

    def _record_embedder(self) -> None:
        self.store.meta.set("embedder", self.embedder.name)
        self.store.meta.set("embedder_dim", str(self.embedder.dim))
        self.store.meta.set("embedder_recipe", getattr(self.embedder, "recipe", ""))

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
        existing = {c.id: c for c in self.store.claims.get_many([c.id for c, _ in items])}
        # First occurrence of each new id (a batch may repeat one).
        fresh = list({c.id: (c, ev) for c, ev in reversed(items) if c.id not in existing}.values())[::-1]
        if fresh:
            vecs = self.embedder.embed([model.embedding_text(c.statement) for c, _ in fresh])
            trials = self._trials([ev for _, evs in fresh for ev in evs])
            inherited = self._inherited_quarantines(fresh)
            with self.store.transaction():
                stored = self._write_claims(fresh, vecs, trials, inherited, actor)
            self._index_new(stored, {c.id: v for (c, _), v in zip(fresh, vecs, strict=True)})
            existing.update({c.id: c for c, _ in stored})
        return [existing[c.id] for c, _ in items if c.id in existing]

    def _trials(self, evidence: Sequence[Evidence]) -> dict[str, Trial]:
        out: dict[str, Trial] = {}
        for tid in {ev.ref_id for ev in evidence if ev.kind == "trial"}:
            try:
                out[tid] = self.store.trials.get(tid)
            except NotFoundError:
                continue  # an imported or pruned trial: its provenance travels in evidence.detail
        return out

    def _inherited_quarantines(self, items: Sequence[tuple[Claim, list[Evidence]]]) -> dict[str, list[str]]:
        """New claims that derive from something under an active quarantine enter quarantined."""
        active = self.store.quarantines.list(active_only=True)
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
                for e in self.store.graph.edges(src=node, kinds=model.PROVENANCE, limit=1000):
                    if e.dst not in seen:
                        seen.add(e.dst)
                        nxt.append(e.dst)
            frontier = nxt
        return seen

    def _write_claims(
        self,
        items: Sequence[tuple[Claim, list[Evidence]]],
        vecs: Vector,
        trials: dict[str, Trial],
        inherited: dict[str, list[str]],
        actor: str,
    ) -> list[tuple[Claim, ClaimFacts]]:
        """Everything SQL holds about new claims, in batches (called inside a transaction).
        Relations are looked up claim by claim, so claims in one batch relate too."""
        entered = {c.id: c.tier for c, _ in items}
        placed = [
            (c.model_copy(update={"tier": "quarantined"}) if c.id in inherited else c, ev) for c, ev in items
        ]
        new_ids = set(self.store.claims.put(placed))
        rows = [(c, ev, v) for (c, ev), v in zip(placed, vecs, strict=True) if c.id in new_ids]
        all_facts = [model.facts_of(c) for c, _, _ in rows]
        seqs = self.store.facts.put(all_facts)
        entities: dict[str, Entity] = {}
        edges: dict[tuple[str, str, str], Edge] = {}
        audits: list[tuple[str, str, str, str, dict[str, Any]]] = []
        stored: list[tuple[Claim, ClaimFacts]] = []
        for (claim, evidence, _), facts in zip(rows, all_facts, strict=True):
            g = model.graphlet(claim, evidence, trials)
            relations = self._relations(claim, facts)
            for kind, other in relations:
                g.edge(claim.id, "claim", kind, other, "claim")
            entities.update(g.entities)
            edges.update(g.edges)
            detail: dict[str, Any] = {
                "tier": entered[claim.id],
                "evidence": [f"{ev.kind}:{ev.ref_id}:{ev.role}" for ev in evidence],
                "relations": [f"{kind} {other}" for kind, other in relations],
            }
            for qid in inherited.get(claim.id, []):
                self.store.quarantines.add_members(qid, {claim.id: entered[claim.id]})
                detail["quarantined_by"] = inherited[claim.id]
            audits.append((actor, "claim.add", "claim", claim.id, detail))
            stored.append((claim, facts.model_copy(update={"seq": seqs[claim.id]})))
        self.store.graph.put_entities(list(entities.values()))
        self.store.graph.put_edges(list(edges.values()))
        self.store.vectors.put(
            [
                VectorRow(
                    c.id,
                    self.embedder.name,
                    self.embedder.dim,
                    text_hash(model.embedding_text(c.statement)),
                    v.tobytes(),
                )
                for c, _, v in rows
            ]
        )
        self.store.audit.append_many(audits)
        return stored

    def _relations(self, claim: Claim, facts: ClaimFacts) -> list[tuple[EdgeKind, str]]:
        """contradicts / supports / refutes edges from the new claim to earlier ones:
        a few small queries, each for one kind of relation, most comparable first."""
        asks: list[tuple[list[int], str | None, int]] = []
        if facts.sign:
            asks.append(([-facts.sign], None, 2 * MAX_RELATIONS["contradicts"]))
            asks.append(([facts.sign], claim.campaign_id or "", 2 * MAX_RELATIONS["supports"]))
        elif claim.tier == "refuted":
            asks.append(([-1, 1], None, 2 * MAX_RELATIONS["refutes"]))
        out: list[tuple[EdgeKind, str]] = []
        counts: dict[str, int] = {}
        for signs, other_campaign, limit in asks:
            rows = self.store.facts.related(
                intervention=facts.intervention,
                outcome=facts.outcome,
                signs=signs,
                dataset_checksum=facts.dataset_checksum,
                exclude=claim.id,
                other_campaign=other_campaign,
                limit=limit,
            )
            for row in rows:
                kind = model.relation(facts, claim.tier, claim.campaign_id, row)
                if kind is not None and counts.get(kind, 0) < MAX_RELATIONS[kind]:
                    counts[kind] = counts.get(kind, 0) + 1
                    out.append((kind, row.claim_id))
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
            self._remember(f for _, f in stored)
        self._sync_graph()

    # ------------------------------------------------------------ following SQL

    def sync(self) -> int:
        """Apply claims and edges committed since the last sync (by any process)."""
        added = 0
        while self.store.facts.max_seq() > self._seq:
            rows = self.store.facts.list(after_seq=self._seq, limit=SYNC_BATCH)
            self._remember(rows)
            todo = [f for f in rows if f.claim_id not in self._own]
            if todo:
                added += self._index_facts(todo)
            self._own.difference_update(f.claim_id for f in rows)
            self._seq = rows[-1].seq
        self._sync_graph()
        return added

    def _remember(self, facts: Iterable[ClaimFacts]) -> None:
        for f in facts:
            self.facts[f.claim_id] = (f.task, f.outcome, frozenset(f.factors))

    def _index_facts(self, facts: Sequence[ClaimFacts]) -> int:
        ids = [f.claim_id for f in facts]
        stored = self.store.vectors.get(ids)
        missing = [i for i in ids if i not in stored or stored[i].embedder != self.embedder.name]
        if missing:
            claims = self.store.claims.get_many(missing)
            vecs = self.embedder.embed([model.embedding_text(c.statement) for c in claims])
            rows = [
                VectorRow(
                    c.id,
                    self.embedder.name,
                    self.embedder.dim,
                    text_hash(model.embedding_text(c.statement)),
                    v.tobytes(),
                )
                for c, v in zip(claims, vecs, strict=True)
            ]
            self.store.vectors.put(rows)  # SQL is safe to write from any process
            stored.update({r.claim_id: r for r in rows})
        keep = [f for f in facts if f.claim_id in stored]
        if keep:
            matrix = np.stack([np.frombuffer(stored[f.claim_id].vector, dtype=np.float32) for f in keep])
            self.vectors.upsert([f.claim_id for f in keep], matrix, [model.vector_metadata(f) for f in keep])
        return len(keep)

    def _sync_graph(self) -> int:
        added = 0
        while self.store.graph.max_seq() > self.graph.watermark:
            rows = self.store.graph.edge_rows(after_seq=self.graph.watermark)
            for _, src, dst, kind, src_kind, dst_kind in rows:
                self.graph.upsert_node(src, src_kind)
                self.graph.upsert_node(dst, dst_kind)
                self.graph.upsert_edge(src, dst, kind)
            self.graph.watermark = rows[-1][0]
            added += len(rows)
        self._graph_dirty = self._graph_dirty or added > 0
        return added

    def reconcile(self) -> dict[str, int]:
        """Make the indexes hold exactly the claims in SQL (after a crash, or on start)."""
        self.check_embedder()
        counts = {"facts_added": self._backfill_facts(), "evidence_edges_added": self._backfill_edges()}
        self.facts = {
            cid: (task, outcome, frozenset(fs)) for cid, task, outcome, fs in self.store.facts.rows()
        }
        sql_ids = set(self.store.claims.tiers())
        index_ids = self.vectors.ids()
        extra = sorted(index_ids - sql_ids)
        self.vectors.delete(extra)
        missing = sql_ids - index_ids
        facts = self.store.facts.list(claim_ids=sorted(missing)) if missing else []
        for start in range(0, len(facts), SYNC_BATCH):
            self._index_facts(facts[start : start + SYNC_BATCH])
        counts |= {"vectors_added": len(facts), "vectors_removed": len(extra)}
        self._seq, self._own = self.store.facts.max_seq(), set()
        graph_claims = self.graph.nodes("claim")
        if graph_claims - sql_ids or self.graph.watermark > self.store.graph.max_seq():
            self.graph.clear()  # the cache is ahead of or unknown to SQL: rebuild it
            counts["graph_rebuilt"] = 1
        counts["edges_added"] = self._sync_graph()
        self.save_graph()
        return counts

    def _backfill_facts(self) -> int:
        """Claims written straight through `store.claims.put` get their facts and edges."""
        known = {row[0] for row in self.store.facts.rows()}
        todo = [cid for cid in self.store.claims.tiers() if cid not in known]
        for claim in self.store.claims.get_many(todo):
            evidence = self.store.evidence.list(claim.id)
            vec = self.embedder.embed([model.embedding_text(claim.statement)])[0]
            with self.store.transaction():
                facts = model.facts_of(claim)
                self.store.facts.put([facts])
                g = model.graphlet(claim, evidence, self._trials(evidence))
                self.store.graph.put_entities(list(g.entities.values()))
                self.store.graph.put_edges(list(g.edges.values()))
                self.store.vectors.put(
                    [
                        VectorRow(
                            claim.id,
                            self.embedder.name,
                            self.embedder.dim,
                            text_hash(model.embedding_text(claim.statement)),
                            vec.tobytes(),
                        )
                    ]
                )
        return len(todo)

    def _backfill_edges(self) -> int:
        """Graph edges for evidence written straight through `store.evidence.add`."""
        added = 0
        while evidence := self.store.evidence.without_edges():
            by_claim: dict[str, list[Evidence]] = {}
            for ev in evidence:
                by_claim.setdefault(ev.claim_id, []).append(ev)
            new = 0
            with self.store.transaction():
                for claim in self.store.claims.get_many(sorted(by_claim)):
                    g = model.graphlet(claim, by_claim[claim.id], self._trials(by_claim[claim.id]))
                    self.store.graph.put_entities(list(g.entities.values()))
                    new += self.store.graph.put_edges(list(g.edges.values()))
            added += new
            if new == 0:
                break  # the rest cannot be linked (e.g. a claim citing itself)
        return added

    def rebuild(self, *, reembed: bool = False) -> dict[str, int]:
        """Drop both indexes and rebuild them from SQL (re-embedding statements if asked)."""
        if not self.owner:
            raise ConflictError(
                f"another process is the index writer of {self.where} ({self.writer_note})",
                hint="stop the running campaign or server first, then rebuild",
            )
        if reembed:
            self._reembed_all()
        self.vectors.clear()
        self.graph.clear()
        self._seq, self._own = 0, set()
        counts = {"vectors": self.sync(), "edges": self.graph.watermark}
        self._graph_dirty = True  # a rebuilt cache is always written, even if empty
        self.save_graph()
        return counts

    def _reembed_all(self) -> None:
        after: str | None = None
        while True:
            page = self.store.claims.list(after=after, limit=SYNC_BATCH)
            vecs = self.embedder.embed([model.embedding_text(c.statement) for c in page])
            rows = [
                VectorRow(
                    c.id,
                    self.embedder.name,
                    self.embedder.dim,
                    text_hash(model.embedding_text(c.statement)),
                    v.tobytes(),
                )
                for c, v in zip(page, vecs, strict=True)
            ]
            with self.store.transaction():
                self.store.vectors.put(rows)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        self._record_embedder()

    def save_graph(self) -> None:
        """Persist the graph cache if it changed (the vector index persists itself)."""
        if self.owner and self._graph_dirty:
            self.graph.save()
            self._graph_dirty = False

    def close(self) -> None:
        self.save_graph()

    # ------------------------------------------------------------ trust

    def transition(self, claim_id: str, tier: Tier, *, actor: str, role: str, reason: str) -> Claim:
        return lifecycle.transition(self.store, claim_id, tier, actor=actor, role=role, reason=reason)

    def add_evidence(self, claim_id: str, evidence: list[Evidence], *, actor: str) -> Claim:
        """Attach more evidence (e.g. reproduction trials) with its graph edges; audited.
        A claim that now derives from something quarantined is quarantined with it."""
        claim = self.store.claims.get(claim_id)
        for ev in evidence:
            if ev.claim_id != claim_id:
                raise TrustError(f"evidence for {ev.claim_id} was passed with claim {claim_id}")
        inherited = self._inherited_quarantines([(claim, evidence)]).get(claim_id, [])
        with self.store.transaction():
            self.store.evidence.add(evidence)
            g = model.graphlet(claim, evidence, self._trials(evidence))
            self.store.graph.put_entities(list(g.entities.values()))
            self.store.graph.put_edges(list(g.edges.values()))
            self.store.audit.append(
                actor,
                "claim.evidence",
                "claim",
                claim_id,
                {"evidence": [f"{e.kind}:{e.ref_id}:{e.role}" for e in evidence]},
            )
            if inherited and claim.tier != "quarantined":
                for qid in inherited:
                    self.store.quarantines.add_members(qid, {claim_id: claim.tier})
                claim = self.store.claims.set_tier(claim_id, "quarantined")
                self.store.audit.append(
                    actor, "claim.quarantine", "claim", claim_id, {"quarantines": inherited}
                )
        self._sync_graph()
        return claim

    # ------------------------------------------------------------ curation

    def quarantine(self, target: str, *, why: str, actor: str, role: str) -> Quarantine:
        return quarantine.quarantine(self.store, target, why=why, actor=actor, role=role)

    def unquarantine(self, quarantine_id: str, *, actor: str, role: str, reason: str) -> Quarantine:
        return quarantine.lift(self.store, quarantine_id, actor=actor, role=role, reason=reason)

    def conflicts(self, *, include_inactive: bool = False) -> list[Conflict]:
        return provenance.conflicts(self.store, include_inactive=include_inactive)

    # ------------------------------------------------------------ retrieval

    def retrieve(self, query: RetrievalQuery) -> list[RetrievedClaim]:
        """Hybrid retrieval over what SQL holds now (see retrieval.py for the ranking)."""
        self.sync()
        return retrieval.Retriever(self.store, self.embedder, self.vectors, self.graph, self.facts).run(query)
