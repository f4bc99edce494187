"""SQLite tables of the knowledge model (migration 0200): entities, typed edges, claim
facts, statement vectors, quarantines and index bookkeeping.

These rows are the truth the knowledge indexes (Chroma, networkx) are rebuilt from. The
knowledge package wraps several of these calls in one `transaction()`.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from medloop.core.errors import NotFoundError
from medloop.core.records import Claim, ClaimFacts, Edge, Entity, Evidence, Quarantine, Tier, utcnow
from medloop.core.store.base import RelatedRow, VectorRow
from medloop.core.store.sqlite_base import SQLiteBase

# SQLite's default limit on host parameters is 32766; stay far below it.
_CHUNK = 500


@functools.lru_cache(maxsize=4096)
def _fingerprint(raw: str) -> dict[str, float]:
    # Fingerprints repeat per dataset, so relation checks parse each one once. Callers
    # must not mutate the (shared) result.
    parsed: dict[str, float] = json.loads(raw)
    return parsed


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class KnowledgeTablesMixin(SQLiteBase):
    """Mixed into `SQLiteStore`; relies on its connection, lock and query helpers."""

    def _xm(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        with self._lock:
            return self._conn.executemany(sql, rows).rowcount

    # ------------------------------------------------------------ claims in bulk

    def get_claims(self, claim_ids: Sequence[str]) -> list[Claim]:
        """Claims by id, in the order asked; ids that do not exist are left out."""
        found: dict[str, Claim] = {}
        for part in _chunks(list(dict.fromkeys(claim_ids))):
            rows = self._q(f"SELECT json FROM claims WHERE id IN ({','.join('?' * len(part))})", tuple(part))
            for row in rows:
                claim = Claim.model_validate_json(row["json"])
                found[claim.id] = claim
        return [found[i] for i in claim_ids if i in found]

    def put_claims(self, items: Sequence[tuple[Claim, list[Evidence]]]) -> list[str]:
        """Insert claims with their evidence in one batch; claims whose id exists are
        skipped (idempotent). Returns the ids inserted. Call inside `transaction()`."""
        existing = set(self.claim_tiers([c.id for c, _ in items]))
        fresh: dict[str, tuple[Claim, list[Evidence]]] = {}
        for claim, evidence in items:
            if claim.id not in existing and claim.id not in fresh:
                fresh[claim.id] = (claim, evidence)
        self._xm(
            "INSERT INTO claims VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    c.id,
                    c.campaign_id,
                    c.hypothesis_id,
                    c.tier,
                    c.outcome,
                    c.context.dataset,
                    c.statement,
                    c.model_dump_json(),
                    c.created_at,
                    c.updated_at,
                )
                for c, _ in fresh.values()
            ],
        )
        self._xm(
            "INSERT OR IGNORE INTO evidence VALUES (?,?,?,?,?)",
            [
                (e.claim_id, e.kind, e.ref_id, e.role, e.model_dump_json())
                for _, evs in fresh.values()
                for e in evs
            ],
        )
        return list(fresh)

    def claim_tiers(self, claim_ids: Sequence[str] | None = None) -> dict[str, Tier]:
        """claim id -> tier, for the given ids or for every claim."""
        if claim_ids is None:
            return {r["id"]: r["tier"] for r in self._q("SELECT id, tier FROM claims")}
        out: dict[str, Tier] = {}
        for part in _chunks(list(claim_ids)):
            rows = self._q(
                f"SELECT id, tier FROM claims WHERE id IN ({','.join('?' * len(part))})", tuple(part)
            )
            out.update({r["id"]: r["tier"] for r in rows})
        return out

    # ------------------------------------------------------------ entities and edges

    def put_entities(self, entities: Sequence[Entity]) -> int:
        """Insert entities that do not exist yet; returns how many were new."""
        now = utcnow()
        return self._xm(
            "INSERT OR IGNORE INTO kb_entities VALUES (?,?,?,?,?)",
            [(e.id, e.kind, e.name, json.dumps(e.attrs, sort_keys=True, default=str), now) for e in entities],
        )

    def get_entity(self, entity_id: str) -> Entity:
        rows = self._q("SELECT * FROM kb_entities WHERE id = ?", (entity_id,))
        if not rows:
            raise NotFoundError(f"knowledge entity {entity_id} not found")
        r = rows[0]
        return Entity(id=r["id"], kind=r["kind"], name=r["name"], attrs=json.loads(r["json"]))

    def list_entities(self, *, kind: str | None = None, limit: int = 1000) -> list[Entity]:
        sql, params = "SELECT * FROM kb_entities", list[Any]()
        if kind:
            sql, params = sql + " WHERE kind = ?", [kind]
        rows = self._q(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [Entity(id=r["id"], kind=r["kind"], name=r["name"], attrs=json.loads(r["json"])) for r in rows]

    def put_edges(self, edges: Sequence[Edge]) -> int:
        """Insert edges (unique on src, dst, kind); returns how many were new."""
        now = utcnow()
        return self._xm(
            "INSERT OR IGNORE INTO kb_edges (src, dst, kind, src_kind, dst_kind, json, created_at) "
            "VALUES (?,?,?,?,?,?,?)",
            [
                (e.src, e.dst, e.kind, e.src_kind, e.dst_kind, json.dumps(e.attrs, default=str), now)
                for e in edges
            ],
        )

    def list_edges(
        self,
        *,
        after_seq: int = 0,
        src: str | None = None,
        dst: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 10_000,
    ) -> list[Edge]:
        sql, params = "SELECT * FROM kb_edges WHERE seq > ?", list[Any]([after_seq])
        if src is not None:
            sql, params = sql + " AND src = ?", [*params, src]
        if dst is not None:
            sql, params = sql + " AND dst = ?", [*params, dst]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += list(kinds)
        rows = self._q(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return [
            Edge(
                src=r["src"],
                dst=r["dst"],
                kind=r["kind"],
                src_kind=r["src_kind"],
                dst_kind=r["dst_kind"],
                attrs=json.loads(r["json"]),
                seq=r["seq"],
            )
            for r in rows
        ]

    def edge_rows(
        self, *, after_seq: int = 0, limit: int = 50_000
    ) -> list[tuple[int, str, str, str, str, str]]:
        """(seq, src, dst, kind, src_kind, dst_kind) in seq order, without attrs: what a
        graph index needs to follow the table cheaply."""
        rows = self._q(
            "SELECT seq, src, dst, kind, src_kind, dst_kind FROM kb_edges WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def edges_into(self, dst_ids: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, str]]:
        """(src, dst) of edges of these kinds that end at any of `dst_ids`."""
        out: list[tuple[str, str]] = []
        marks = ",".join("?" * len(kinds))
        for part in _chunks(list(dst_ids)):
            rows = self._q(
                f"SELECT src, dst FROM kb_edges WHERE dst IN ({','.join('?' * len(part))}) AND kind IN ({marks})",
                (*part, *kinds),
            )
            out += [(r["src"], r["dst"]) for r in rows]
        return out

    def max_edge_seq(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(seq), 0) AS m FROM kb_edges")[0]["m"])

    # ------------------------------------------------------------ claim facts

    def put_claim_facts(self, facts: ClaimFacts) -> int:
        """Record a claim's facts once; returns its seq (the existing one on a repeat)."""
        self._x(
            "INSERT OR IGNORE INTO kb_claim_facts (claim_id, task, outcome, dataset, dataset_checksum, "
            "intervention, orientation, sign, factors_json, fingerprint_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                facts.claim_id,
                facts.task,
                facts.outcome,
                facts.dataset,
                facts.dataset_checksum,
                facts.intervention,
                facts.orientation,
                facts.sign,
                json.dumps(facts.factors),
                json.dumps(facts.fingerprint),
            ),
        )
        self._xm(
            "INSERT OR IGNORE INTO kb_claim_factors VALUES (?,?)",
            [(facts.claim_id, f) for f in facts.factors],
        )
        return int(self._q("SELECT seq FROM kb_claim_facts WHERE claim_id = ?", (facts.claim_id,))[0]["seq"])

    def put_claim_facts_many(self, facts: Sequence[ClaimFacts]) -> dict[str, int]:
        """Batch form of `put_claim_facts`; returns claim id -> seq."""
        self._xm(
            "INSERT OR IGNORE INTO kb_claim_facts (claim_id, task, outcome, dataset, dataset_checksum, "
            "intervention, orientation, sign, factors_json, fingerprint_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    f.claim_id,
                    f.task,
                    f.outcome,
                    f.dataset,
                    f.dataset_checksum,
                    f.intervention,
                    f.orientation,
                    f.sign,
                    json.dumps(f.factors),
                    json.dumps(f.fingerprint),
                )
                for f in facts
            ],
        )
        self._xm(
            "INSERT OR IGNORE INTO kb_claim_factors VALUES (?,?)",
            [(f.claim_id, x) for f in facts for x in f.factors],
        )
        seqs: dict[str, int] = {}
        for part in _chunks([f.claim_id for f in facts]):
            rows = self._q(
                f"SELECT claim_id, seq FROM kb_claim_facts WHERE claim_id IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            seqs.update({r["claim_id"]: r["seq"] for r in rows})
        return seqs

    def _facts(self, row: sqlite3.Row) -> ClaimFacts:
        return ClaimFacts(
            claim_id=row["claim_id"],
            task=row["task"],
            outcome=row["outcome"],
            dataset=row["dataset"],
            dataset_checksum=row["dataset_checksum"],
            intervention=row["intervention"],
            orientation=row["orientation"],
            sign=row["sign"],
            factors=json.loads(row["factors_json"]),
            fingerprint=json.loads(row["fingerprint_json"]),
            seq=row["seq"],
        )

    def list_claim_facts(
        self,
        *,
        after_seq: int = 0,
        intervention: str | None = None,
        outcome: str | None = None,
        claim_ids: Sequence[str] | None = None,
        limit: int = 10_000,
    ) -> list[ClaimFacts]:
        if claim_ids is not None:
            out: list[ClaimFacts] = []
            for part in _chunks(list(claim_ids)):
                rows = self._q(
                    f"SELECT * FROM kb_claim_facts WHERE claim_id IN ({','.join('?' * len(part))})",
                    tuple(part),
                )
                out += [self._facts(r) for r in rows]
            return sorted(out, key=lambda f: f.seq)
        sql, params = "SELECT * FROM kb_claim_facts WHERE seq > ?", list[Any]([after_seq])
        if intervention is not None:
            sql, params = sql + " AND intervention = ?", [*params, intervention]
        if outcome is not None:
            sql, params = sql + " AND outcome = ?", [*params, outcome]
        rows = self._q(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return [self._facts(r) for r in rows]

    def claim_facts_rows(self) -> list[tuple[str, str, str, list[str]]]:
        """(claim id, task, outcome, factors) of every claim, without building records."""
        rows = self._q("SELECT claim_id, task, outcome, factors_json FROM kb_claim_facts ORDER BY seq")
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def evidence_without_edges(self, limit: int = 10_000) -> list[Evidence]:
        """Trial/source/claim evidence that has no graph edge yet (written straight to the
        store, e.g. by `add_evidence`); the knowledge layer adds the edges."""
        rows = self._q(
            "SELECT e.json FROM evidence e WHERE e.kind IN ('trial', 'source', 'claim') AND NOT EXISTS "
            "(SELECT 1 FROM kb_edges k WHERE k.src = e.claim_id AND k.dst = e.ref_id) "
            "AND EXISTS (SELECT 1 FROM kb_claim_facts f WHERE f.claim_id = e.claim_id) LIMIT ?",
            (limit,),
        )
        return [Evidence.model_validate_json(r["json"]) for r in rows]

    def max_claim_seq(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(seq), 0) AS m FROM kb_claim_facts")[0]["m"])

    def find_claim_ids(
        self,
        *,
        tiers: Sequence[Tier],
        task: str | None = None,
        outcome: str | None = None,
        factors: Sequence[str] = (),
        limit: int = 100,
    ) -> list[str]:
        """Claims in `tiers` matching the structured filter (any of `factors`), newest first."""
        keys = list(factors) or ["*"]
        sql = (
            "SELECT claim_id, MAX(seq) AS s FROM kb_claim_filter "
            f"WHERE factor IN ({','.join('?' * len(keys))}) AND tier IN ({','.join('?' * len(tiers))})"
        )
        params: list[Any] = [*keys, *tiers]
        if outcome is not None:
            sql, params = sql + " AND outcome = ?", [*params, outcome]
        if task is not None:
            sql, params = sql + " AND task = ?", [*params, task]
        rows = self._q(sql + " GROUP BY claim_id ORDER BY s DESC LIMIT ?", (*params, limit))
        return [r["claim_id"] for r in rows]

    def related_claims(
        self,
        *,
        intervention: str,
        outcome: str,
        signs: Sequence[int],
        dataset_checksum: str,
        exclude: str,
        other_campaign: str | None = None,
        limit: int = 50,
    ) -> list[RelatedRow]:
        """Claims about the same intervention and outcome with a significant sign in
        `signs` (and, if given, from another campaign than `other_campaign`): same
        dataset first, then newest. Reads columns, not claim JSON."""
        # Same-dataset rows first (comparable without fingerprints: not parsed), then other
        # datasets; each an index-ordered scan. The claims table is joined only to filter
        # by campaign.
        join = "JOIN claims c ON c.id = f.claim_id " if other_campaign is not None else ""
        base = (
            "SELECT f.claim_id, f.task, f.outcome, f.dataset, f.dataset_checksum, {fp} AS fingerprint_json, "
            f"f.sign, {'c.campaign_id' if join else 'NULL'} AS campaign_id FROM kb_claim_facts f {join}"
            f"WHERE f.intervention = ? AND f.outcome = ? AND f.sign IN ({','.join('?' * len(signs))}) "
            "AND f.claim_id != ? AND f.dataset_checksum {op} ?"
            + (" AND c.campaign_id IS NOT ?" if join else "")
            + " ORDER BY f.seq DESC LIMIT ?"
        )
        params: list[Any] = [intervention, outcome, *signs, exclude, dataset_checksum]
        if join:
            params.append(other_campaign)
        rows = self._q(base.format(fp="'{}'", op="="), (*params, limit))
        if len(rows) < limit:
            rows += self._q(base.format(fp="f.fingerprint_json", op="!="), (*params, limit - len(rows)))
        return [
            RelatedRow(
                claim_id=r["claim_id"],
                task=r["task"],
                outcome=r["outcome"],
                dataset=r["dataset"],
                dataset_checksum=r["dataset_checksum"],
                fingerprint=_fingerprint(r["fingerprint_json"]),
                sign=r["sign"],
                campaign_id=r["campaign_id"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------ vectors and meta

    def put_vectors(self, rows: Sequence[VectorRow]) -> None:
        self._xm(
            "INSERT INTO kb_vectors VALUES (?,?,?,?,?) ON CONFLICT(claim_id) DO UPDATE SET "
            "embedder=excluded.embedder, dim=excluded.dim, text_hash=excluded.text_hash, vector=excluded.vector",
            [(r.claim_id, r.embedder, r.dim, r.text_hash, r.vector) for r in rows],
        )

    def get_vectors(self, claim_ids: Sequence[str]) -> dict[str, VectorRow]:
        out: dict[str, VectorRow] = {}
        for part in _chunks(list(claim_ids)):
            rows = self._q(
                f"SELECT * FROM kb_vectors WHERE claim_id IN ({','.join('?' * len(part))})", tuple(part)
            )
            for r in rows:
                out[r["claim_id"]] = VectorRow(
                    r["claim_id"], r["embedder"], r["dim"], r["text_hash"], r["vector"]
                )
        return out

    def get_meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM kb_meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._x(
            "INSERT INTO kb_meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------ quarantines

    def put_quarantine(self, quarantine: Quarantine) -> None:
        q = quarantine
        self._x(
            "INSERT INTO kb_quarantines VALUES (?,?,?,?,?,?,?,?,?)",
            (q.id, q.target_type, q.target_id, q.why, q.actor, q.created_at, None, None, None),
        )
        self._xm(
            "INSERT OR IGNORE INTO kb_quarantine_members VALUES (?,?,?)",
            [(q.id, cid, tier) for cid, tier in q.members.items()],
        )

    def add_quarantine_members(self, quarantine_id: str, members: dict[str, str]) -> None:
        self._xm(
            "INSERT OR IGNORE INTO kb_quarantine_members VALUES (?,?,?)",
            [(quarantine_id, cid, tier) for cid, tier in members.items()],
        )

    def _quarantine(self, row: sqlite3.Row) -> Quarantine:
        members = self._q(
            "SELECT claim_id, prev_tier FROM kb_quarantine_members WHERE quarantine_id = ? ORDER BY claim_id",
            (row["id"],),
        )
        return Quarantine(
            id=row["id"],
            target_type=row["target_type"],
            target_id=row["target_id"],
            why=row["why"],
            actor=row["actor"],
            created_at=row["created_at"],
            lifted_at=row["lifted_at"],
            lifted_by=row["lifted_by"],
            lift_reason=row["lift_reason"],
            members={m["claim_id"]: m["prev_tier"] for m in members},
        )

    def get_quarantine(self, quarantine_id: str) -> Quarantine:
        rows = self._q("SELECT * FROM kb_quarantines WHERE id = ?", (quarantine_id,))
        if not rows:
            raise NotFoundError(
                f"quarantine {quarantine_id} not found", hint="see `medloop knowledge quarantines`"
            )
        return self._quarantine(rows[0])

    def list_quarantines(
        self, *, active_only: bool = False, target_id: str | None = None
    ) -> list[Quarantine]:
        sql, params = "SELECT * FROM kb_quarantines WHERE 1=1", list[Any]()
        if active_only:
            sql += " AND lifted_at IS NULL"
        if target_id is not None:
            sql, params = sql + " AND target_id = ?", [*params, target_id]
        return [self._quarantine(r) for r in self._q(sql + " ORDER BY created_at, id", tuple(params))]

    def lift_quarantine(self, quarantine_id: str, *, actor: str, reason: str) -> None:
        self._x(
            "UPDATE kb_quarantines SET lifted_at=?, lifted_by=?, lift_reason=? WHERE id=? AND lifted_at IS NULL",
            (utcnow(), actor, reason, quarantine_id),
        )

    def active_quarantine_holds(self, claim_ids: Sequence[str]) -> dict[str, list[str]]:
        """claim id -> ids of the active quarantines that hold it."""
        out: dict[str, list[str]] = {}
        for part in _chunks(list(claim_ids)):
            rows = self._q(
                "SELECT m.claim_id, m.quarantine_id FROM kb_quarantine_members m JOIN kb_quarantines q "
                f"ON q.id = m.quarantine_id WHERE q.lifted_at IS NULL AND m.claim_id IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            for r in rows:
                out.setdefault(r["claim_id"], []).append(r["quarantine_id"])
        return out
