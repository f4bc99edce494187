"""Claims and their evidence. A claim write also keeps its listing row (`web_claim_list`)
and its tier in the retrieval filter (`kb_claim_filter`) current, in the same transaction."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import sqlalchemy as sa

from medloop.core.errors import NotFoundError, StoreError
from medloop.core.records import Claim, Evidence, Tier, utcnow
from medloop.core.store import schema as s
from medloop.core.store.base import Filter, Page
from medloop.core.store.db import Database, Repo, chunks, matching, select, update
from medloop.core.store.mapper import Mapper

CLAIM = Mapper(Claim, s.claims, json={"json": "*"}, columns={"dataset": "context.dataset"})
_EFFECT = {k: f"effect.{k}" for k in ("estimate", "ci_low", "ci_high", "p_adjusted")}
LISTING = Mapper(Claim, s.claim_list, columns={"claim_id": "id", "dataset": "context.dataset"} | _EFFECT)
EVIDENCE = Mapper(Evidence, s.evidence, json={"json": "*"})
_LISTED = [c.name for c in s.claim_list.columns if c.name != "claim_id"]


class SqlClaims(Repo[Claim]):
    mapper, missing, hint = CLAIM, "claim {key} not found", "see `medloop claims list`"

    def put(self, items: Sequence[tuple[Claim, Sequence[Evidence]]]) -> builtins.list[str]:
        fresh: dict[str, tuple[Claim, Sequence[Evidence]]] = {}
        for claim, evidence in items:
            if bad := [e.claim_id for e in evidence if e.claim_id != claim.id]:
                raise StoreError(f"evidence for {bad[0]} passed with claim {claim.id}")
            fresh.setdefault(claim.id, (claim, evidence))
        with self.db.transaction():
            new = {r[0] for r in self.db.put(s.claims, [CLAIM.row(c) for c, _ in fresh.values()])}
            claims = [fresh[i] for i in fresh if i in new]
            self.db.put(s.evidence, [EVIDENCE.row(e) for _, evs in claims for e in evs])
            self.db.put(s.claim_list, [LISTING.row(c) for c, _ in claims], set_=_LISTED)
        return [i for i in fresh if i in new]

    def get_many(self, claim_ids: Sequence[str]) -> builtins.list[Claim]:
        stmt, found = select(s.claims, within=("id",), cols=("id", "json")), dict[str, Claim]()
        for part in chunks(list(dict.fromkeys(claim_ids))):
            found.update((r.id, CLAIM.record(r)) for r in self.db.all(stmt, {"id": list(part)}))
        return [found[i] for i in claim_ids if i in found]

    def list(
        self, *, tiers: Sequence[Tier] | None = None, after: str | None = None, limit: int = 1000, **where: Filter
    ) -> Page[Claim]:  # fmt: skip
        within = {"tier": tiers}
        return self.db.page(
            s.claims, CLAIM.record, after=after, limit=limit, cols=("json", "id"), within=within, where=where
        )

    def set_tier(self, claim_id: str, tier: Tier) -> Claim:
        with self.db.transaction():
            claim = self.get(claim_id).model_copy(update={"tier": tier, "updated_at": utcnow()})
            self.db.write(update(s.claims, ("id",)), CLAIM.row(claim) | {"_id": claim_id})
            listed = {"tier": tier, "updated_at": claim.updated_at, "_claim_id": claim_id}
            self.db.write(update(s.claim_list, ("claim_id",)), listed)
            self.db.write(update(s.claim_filter, ("claim_id",)), {"tier": tier, "_claim_id": claim_id})
        return claim

    def tiers(self, claim_ids: Sequence[str] | None = None) -> dict[str, Tier]:
        if claim_ids is None:
            return {r[0]: r[1] for r in self.db.all(select(s.claims, cols=("id", "tier")))}
        stmt = select(s.claims, within=("id",), cols=("id", "tier"))
        return {r[0]: r[1] for part in chunks(list(claim_ids)) for r in self.db.all(stmt, {"id": list(part)})}


class SqlEvidence:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, evidence: Sequence[Evidence]) -> None:
        with self.db.transaction():
            known = SqlClaims(self.db).tiers(sorted({e.claim_id for e in evidence}))
            if missing := sorted({e.claim_id for e in evidence} - set(known)):
                raise NotFoundError(f"claim {missing[0]} not found", hint="see `medloop claims list`")
            self.db.put(s.evidence, [EVIDENCE.row(e) for e in evidence])

    def list(self, claim_id: str) -> builtins.list[Evidence]:
        return matching(self.db, EVIDENCE, ("kind", "role", "ref_id"), claim_id=claim_id)

    def citing(self, ref_id: str) -> builtins.list[str]:
        stmt = select(s.evidence, ("ref_id",), cols=("claim_id",), order=("claim_id",)).distinct()
        return [r[0] for r in self.db.all(stmt, {"ref_id": ref_id})]

    def without_edges(self, limit: int = 10_000) -> builtins.list[Evidence]:
        e, k, f = s.evidence, s.edges, s.facts
        stmt = sa.select(e.c.json).where(
            e.c.kind.in_(["trial", "source", "claim"]),
            ~sa.exists().where(k.c.src == e.c.claim_id, k.c.dst == e.c.ref_id),
            sa.exists().where(f.c.claim_id == e.c.claim_id),
        )
        return [EVIDENCE.record(r) for r in self.db.all(stmt.limit(limit))]
