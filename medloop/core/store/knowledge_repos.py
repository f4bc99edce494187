"""The knowledge model's tables: graph entities and typed edges, claim facts (and the
retrieval filter kept from them), statement vectors, index bookkeeping, quarantines.
These rows are the truth the knowledge indexes (Chroma, networkx) are rebuilt from."""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from medloop.core.errors import NotFoundError
from medloop.core.records import ClaimFacts, Edge, Entity, Quarantine, Tier, utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import EdgeRow, Filter, RelatedRow, VectorRow
from medloop.core.store.claim_repos import SqlClaims
from medloop.core.store.db import Database, chunks, given, one, select, update
from medloop.core.store.mapper import Mapper

ENTITY = Mapper(Entity, s.entities, json={"json": "attrs"})
EDGE = Mapper(Edge, s.edges, json={"json": "attrs"}, generated=("seq",))
_FACT_JSON = {"factors_json": "factors", "fingerprint_json": "fingerprint"}
FACTS = Mapper(ClaimFacts, s.facts, json=_FACT_JSON, generated=("seq",))
QUARANTINE = Mapper(Quarantine, s.quarantines)


@functools.lru_cache(maxsize=4096)
def _fingerprint(raw: str) -> dict[str, float]:
    # Fingerprints repeat per dataset, so relation checks parse each one once. Callers
    # must not mutate the (shared) result.
    parsed: dict[str, float] = json.loads(raw)
    return parsed


def _max(db: Database, column: sa.Column[Any]) -> int:
    return int(db.all(sa.select(sa.func.coalesce(sa.func.max(column), 0)))[0][0])


class SqlGraph:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put_entities(self, entities: Sequence[Entity]) -> int:
        now = utcnow()
        return len(self.db.put(s.entities, [ENTITY.row(e, created_at=now) for e in entities]))

    def get_entity(self, entity_id: str) -> Entity:
        return one(self.db, ENTITY, entity_id, f"knowledge entity {entity_id} not found")

    def put_edges(self, edges: Sequence[Edge]) -> int:
        now = utcnow()
        with self.db.transaction():  # the write lock: seq numbers commit in their order
            return len(self.db.put(s.edges, [EDGE.row(e, created_at=now) for e in edges], returning=["seq"]))

    def edges(
        self, *, after_seq: int = 0, src: Filter = None, dst: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None, limit: int | None = None,
    ) -> list[Edge]:  # fmt: skip
        where, within = given(src=src), {"kind": list(kinds or [])} if kinds else {}
        into = ("dst",) if dst is not None else ()
        stmt = select(
            s.edges,
            tuple(where),
            within=(*within, *into),
            order=("seq",),
            after="seq",
            limit=limit is not None,
        )
        params = where | within | {"after": after_seq, "limit": limit}
        parts = [params] if dst is None else [params | {"dst": list(p)} for p in chunks(list(dst))]
        rows = sorted((r for p in parts for r in self.db.all(stmt, p)), key=lambda r: int(r.seq))
        return [EDGE.record(r) for r in rows[:limit]]

    def edge_rows(self, *, after_seq: int = 0, limit: int = 50_000) -> list[EdgeRow]:
        cols = ("seq", "src", "dst", "kind", "src_kind", "dst_kind")
        stmt = select(s.edges, cols=cols, order=("seq",), after="seq", limit=True)
        return [
            (r[0], r[1], r[2], r[3], r[4], r[5])
            for r in self.db.all(stmt, {"after": after_seq, "limit": limit})
        ]

    def max_seq(self) -> int:
        return _max(self.db, s.edges.c.seq)


class SqlFacts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, facts: Sequence[ClaimFacts]) -> dict[str, int]:
        ids, seqs = [x.claim_id for x in facts], dict[str, int]()
        with self.db.transaction():
            self.db.put(s.facts, [FACTS.row(x) for x in facts])
            self.db.put(s.factors, [{"claim_id": x.claim_id, "factor": k} for x in facts for k in x.factors])
            stmt = select(s.facts, within=("claim_id",), cols=("claim_id", "seq"))
            for part in chunks(ids):
                seqs.update((r[0], r[1]) for r in self.db.all(stmt, {"claim_id": list(part)}))
            tiers = SqlClaims(self.db).tiers(ids)
            rows = [
                {"claim_id": x.claim_id, "task": x.task, "outcome": x.outcome, "factor": k,
                 "tier": tiers[x.claim_id], "seq": seqs[x.claim_id]}
                for x in facts
                for k in ("*", *x.factors)
            ]  # fmt: skip
            self.db.put(s.claim_filter, rows)
        return seqs

    def list(
        self,
        *,
        after_seq: int = 0,
        claim_ids: Sequence[str] | None = None,
        limit: int = 10_000,
        **where: Filter,
    ) -> builtins.list[ClaimFacts]:
        if claim_ids is not None:
            stmt = select(s.facts, within=("claim_id",))
            rows = [r for p in chunks(list(claim_ids)) for r in self.db.all(stmt, {"claim_id": list(p)})]
            return sorted((FACTS.record(r) for r in rows), key=lambda x: x.seq)
        where = given(**where)
        stmt = select(s.facts, tuple(where), order=("seq",), after="seq", limit=True)
        return [FACTS.record(r) for r in self.db.all(stmt, where | {"after": after_seq, "limit": limit})]

    def rows(self) -> builtins.list[tuple[str, str, str, builtins.list[str]]]:
        stmt = select(s.facts, cols=("claim_id", "task", "outcome", "factors_json"), order=("seq",))
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in self.db.all(stmt)]

    def max_seq(self) -> int:
        return _max(self.db, s.facts.c.seq)

    def related(
        self, *, intervention: str, outcome: str, signs: Sequence[int], dataset_checksum: str, exclude: str,
        other_campaign: str | None = None, limit: int = 50,
    ) -> builtins.list[RelatedRow]:  # fmt: skip
        # Same-dataset rows first (comparable without fingerprints: not read), then other
        # datasets; each an index-ordered scan. Claims are joined only to filter by campaign.
        f, c = s.facts, s.claims
        where = [
            f.c.intervention == intervention,
            f.c.outcome == outcome,
            f.c.sign.in_(signs),
            f.c.claim_id != exclude,
        ]
        campaign: Any = sa.null()
        source: Any = f
        if other_campaign is not None:
            campaign, source = c.c.campaign_id, f.join(c, c.c.id == f.c.claim_id)
            where.append(c.c.campaign_id.is_distinct_from(other_campaign))
        cols = [f.c.claim_id, f.c.task, f.c.outcome, f.c.dataset, f.c.dataset_checksum, f.c.sign]
        rows: builtins.list[Any] = []
        for fingerprint, same in ((sa.literal("{}"), True), (f.c.fingerprint_json, False)):
            near = (
                f.c.dataset_checksum == dataset_checksum if same else f.c.dataset_checksum != dataset_checksum
            )
            stmt = sa.select(*cols, fingerprint, campaign).select_from(source).where(*where, near)
            if len(rows) < limit:
                rows += self.db.all(stmt.order_by(f.c.seq.desc()).limit(limit - len(rows)))
        return [RelatedRow(r[0], r[1], r[2], r[3], r[4], _fingerprint(r[6]), r[5], r[7]) for r in rows]

    def find_ids(
        self, *, tiers: Sequence[Tier], factors: Sequence[str] = (), limit: int = 100, **where: Filter
    ) -> builtins.list[str]:
        x, where = s.claim_filter, given(**where)
        newest = sa.func.max(x.c.seq)
        stmt = select(x, tuple(where), cols=("claim_id",), within=("factor", "tier")).add_columns(newest)
        params = where | {"factor": list(factors) or ["*"], "tier": list(tiers)}
        return [
            r[0]
            for r in self.db.all(stmt.group_by(x.c.claim_id).order_by(newest.desc()).limit(limit), params)
        ]


class SqlVectors:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, rows: Sequence[VectorRow]) -> None:
        cols = ("claim_id", "embedder", "dim", "text_hash", "vector")
        self.db.put(s.vectors, [{k: getattr(r, k) for k in cols} for r in rows], set_=cols[1:])

    def get(self, claim_ids: Sequence[str]) -> dict[str, VectorRow]:
        stmt = select(s.vectors, within=("claim_id",))
        rows = [r for p in chunks(list(claim_ids)) for r in self.db.all(stmt, {"claim_id": list(p)})]
        return {r.claim_id: VectorRow(*r) for r in rows}


class SqlMeta:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        rows = self.db.all(select(s.meta, ("key",), cols=("value",)), {"key": key})
        return str(rows[0][0]) if rows else None

    def set(self, key: str, value: str) -> None:
        self.db.put(s.meta, [{"key": key, "value": value}], set_=["value"])


class SqlQuarantines:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, quarantine: Quarantine) -> None:
        with self.db.transaction():
            self.db.write(sa.insert(s.quarantines), QUARANTINE.row(quarantine))
            self.add_members(quarantine.id, quarantine.members)

    def add_members(self, quarantine_id: str, members: dict[str, str]) -> None:
        rows = [{"quarantine_id": quarantine_id, "claim_id": c, "prev_tier": t} for c, t in members.items()]
        self.db.put(s.quarantine_members, rows)

    def get(self, quarantine_id: str) -> Quarantine:
        if found := self._load({"id": quarantine_id}):
            return found[0]
        raise NotFoundError(
            f"quarantine {quarantine_id} not found", hint="see `medloop knowledge quarantines`"
        )

    def list(self, *, active_only: bool = False, target_id: Filter = None) -> builtins.list[Quarantine]:
        found = self._load(given(target_id=target_id))
        return [q for q in found if q.lifted_at is None] if active_only else found

    def _load(self, where: dict[str, str]) -> builtins.list[Quarantine]:
        rows = self.db.all(select(s.quarantines, tuple(where), order=("created_at", "id")), where)
        members: dict[str, dict[str, str]] = {r.id: {} for r in rows}
        stmt = select(s.quarantine_members, within=("quarantine_id",), order=("quarantine_id", "claim_id"))
        for part in chunks(list(members)):
            for r in self.db.all(stmt, {"quarantine_id": list(part)}):
                members[r.quarantine_id][r.claim_id] = r.prev_tier
        return [QUARANTINE.record(r, members=members[r.id]) for r in rows]

    def lift(self, quarantine_id: str, *, actor: str, reason: str) -> None:
        values = {"lifted_at": utcnow(), "lifted_by": actor, "lift_reason": reason, "_id": quarantine_id}
        self.db.write(update(s.quarantines, ("id",), unset=("lifted_at",)), values)

    def holds(self, claim_ids: Sequence[str]) -> dict[str, builtins.list[str]]:
        q, m, out = s.quarantines, s.quarantine_members, dict[str, builtins.list[str]]()
        stmt = select(m, within=("claim_id",), cols=("claim_id", "quarantine_id"), order=("quarantine_id",))
        stmt = stmt.join(q, q.c.id == m.c.quarantine_id).where(q.c.lifted_at.is_(None))
        for part in chunks(list(claim_ids)):
            for r in self.db.all(stmt, {"claim_id": list(part)}):
                out.setdefault(r[0], []).append(r[1])
        return out
