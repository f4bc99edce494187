"""SQLite tables of the knowledge model (migration 0200): entities, typed edges, claim
facts, statement vectors, quarantines and index bookkeeping.

These rows are the truth the knowledge indexes (Chroma, networkx) are rebuilt from. The
knowledge package wraps several of these calls in one `transaction()`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from medloop.core.errors import NotFoundError
from medloop.core.records import Claim, ClaimFacts, Edge, Entity, Quarantine, Tier, utcnow
from medloop.core.store.base import VectorRow

# SQLite's default limit on host parameters is 32766; stay far below it.
_CHUNK = 500


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class KnowledgeTablesMixin:
    """Mixed into `SQLiteStore`; relies on its connection, lock and query helpers."""

    _conn: sqlite3.Connection
    _lock: threading.RLock

    def _q(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _x(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> int:
        raise NotImplementedError

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
            "intervention, orientation, sign, factors_json) VALUES (?,?,?,?,?,?,?,?,?)",
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
            ),
        )
        self._xm(
            "INSERT OR IGNORE INTO kb_claim_factors VALUES (?,?)",
            [(facts.claim_id, f) for f in facts.factors],
        )
        return int(self._q("SELECT seq FROM kb_claim_facts WHERE claim_id = ?", (facts.claim_id,))[0]["seq"])

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
        """Claims in `tiers` matching the structured filter, newest first."""
        sql = "SELECT c.id FROM claims c JOIN kb_claim_facts f ON f.claim_id = c.id WHERE c.tier IN ({})".format(
            ",".join("?" * len(tiers))
        )
        params: list[Any] = list(tiers)
        if task is not None:
            sql, params = sql + " AND f.task = ?", [*params, task]
        if outcome is not None:
            sql, params = sql + " AND f.outcome = ?", [*params, outcome]
        if factors:
            sql += " AND c.id IN (SELECT claim_id FROM kb_claim_factors WHERE factor IN ({}))".format(
                ",".join("?" * len(factors))
            )
            params += list(factors)
        rows = self._q(sql + " ORDER BY f.seq DESC LIMIT ?", (*params, limit))
        return [r["id"] for r in rows]

    def related_claim_ids(
        self,
        *,
        intervention: str,
        outcome: str,
        signs: Sequence[int],
        dataset_checksum: str,
        exclude: str,
        limit: int = 300,
    ) -> list[str]:
        """Claims about the same intervention and outcome with a significant sign in
        `signs`: same dataset first, then newest first."""
        rows = self._q(
            "SELECT claim_id FROM kb_claim_facts WHERE intervention = ? AND outcome = ? AND sign IN ({}) "
            "AND claim_id != ? ORDER BY (dataset_checksum = ?) DESC, seq DESC LIMIT ?".format(
                ",".join("?" * len(signs))
            ),
            (intervention, outcome, *signs, exclude, dataset_checksum, limit),
        )
        return [r["claim_id"] for r in rows]

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
