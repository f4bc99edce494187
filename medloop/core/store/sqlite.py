"""SQLite store: WAL journal, foreign keys on, busy timeout, ordered migrations.

One connection per store object guarded by a re-entrant lock, so scheduler threads can
share it; other processes (the web API) open their own and see commits at once (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medloop.core.errors import NotFoundError, StoreError
from medloop.core.ids import canonical_json, sha256_hex
from medloop.core.records import (
    AuditEntry,
    Campaign,
    Claim,
    Evidence,
    Hypothesis,
    Tier,
    Trial,
    TrialResult,
    utcnow,
)
from medloop.core.specs import CampaignSpec
from medloop.core.store.base import Page
from medloop.core.store.knowledge_tables import KnowledgeTablesMixin
from medloop.core.store.migrations import MIGRATIONS
from medloop.core.store.review_tables import ReviewTablesMixin
from medloop.core.store.tool_tables import ToolTablesMixin
from medloop.core.store.web_tables import WebTablesMixin

GENESIS_HASH = "0" * 64
# Campaign fields kept in state_json (everything but the columns and the spec).
_CAMPAIGN_STATE = (
    "baseline",
    "incumbent",
    "incumbent_objective",
    "baseline_objective",
    "summary",
)


def open_store(path: Path) -> SQLiteStore:
    return SQLiteStore(path)


class SQLiteStore(KnowledgeTablesMixin, WebTablesMixin, ReviewTablesMixin, ToolTablesMixin):
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self.migrate()

    # ------------------------------------------------------------ plumbing

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; refuse a database newer than this code."""
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {r["name"] for r in self._q("SELECT name FROM schema_migrations")}
            known = {name for name, _ in MIGRATIONS}
            unknown = sorted(done - known)
            if unknown:
                raise StoreError(
                    f"the store at {self.path} has migrations this medloop does not know: {unknown}",
                    hint="upgrade medloop or point MEDLOOP_WORKSPACE at another workspace",
                )
            applied = []
            for name, script in sorted(MIGRATIONS):
                if name in done:
                    continue
                # executescript commits implicitly; wrap the script so it is all-or-nothing.
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\n"
                    f"INSERT INTO schema_migrations VALUES ('{name}', '{utcnow()}');\nCOMMIT;"
                )
                applied.append(name)
            return applied

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self._q("SELECT name FROM schema_migrations ORDER BY name")]

    # ------------------------------------------------------------ campaigns

    def add_campaign(self, campaign: Campaign) -> None:
        state = campaign.model_dump(mode="json", include=set(_CAMPAIGN_STATE))
        with self.transaction():
            self._x(
                "INSERT INTO campaigns VALUES (?,?,?,?,?,?,?,?)",
                (
                    campaign.id,
                    campaign.name,
                    campaign.status,
                    campaign.owner,
                    campaign.spec.model_dump_json(),
                    json.dumps(state),
                    campaign.created_at,
                    campaign.updated_at,
                ),
            )

    def _campaign(self, row: sqlite3.Row) -> Campaign:
        return Campaign(
            id=row["id"],
            name=row["name"],
            status=row["status"],
            owner=row["owner"],
            spec=CampaignSpec.model_validate_json(row["spec_json"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            **json.loads(row["state_json"]),
        )

    def get_campaign(self, campaign_id: str) -> Campaign:
        rows = self._q("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        if not rows:
            raise NotFoundError(f"campaign {campaign_id} not found", hint="see `medloop campaign list`")
        return self._campaign(rows[0])

    def list_campaigns(
        self, *, status: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[Campaign]:
        sql, params = "SELECT * FROM campaigns WHERE 1=1", list[Any]()
        if status:
            sql, params = sql + " AND status = ?", [*params, status]
        if after:
            sql, params = sql + " AND id < ?", [*params, after]
        rows = self._q(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1))
        items = [self._campaign(r) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def update_campaign(self, campaign_id: str, **changes: Any) -> Campaign:
        with self.transaction():
            current = self.get_campaign(campaign_id)
            updated = current.model_copy(update={**changes, "updated_at": utcnow()})
            Campaign.model_validate(updated.model_dump())  # type-check the changes
            state = updated.model_dump(mode="json", include=set(_CAMPAIGN_STATE))
            self._x(
                "UPDATE campaigns SET status=?, state_json=?, updated_at=? WHERE id=?",
                (updated.status, json.dumps(state), updated.updated_at, campaign_id),
            )
        return updated

    def record_cycle(self, campaign_id: str, idx: int, summary: dict[str, Any]) -> None:
        self._x(
            "INSERT INTO cycles VALUES (?,?,?,?) ON CONFLICT(campaign_id, idx) "
            "DO UPDATE SET summary_json = excluded.summary_json",
            (campaign_id, idx, json.dumps(summary, default=str), utcnow()),
        )

    def list_cycles(self, campaign_id: str) -> list[dict[str, Any]]:
        rows = self._q("SELECT * FROM cycles WHERE campaign_id = ? ORDER BY idx", (campaign_id,))
        return [{"idx": r["idx"], **json.loads(r["summary_json"])} for r in rows]

    # ------------------------------------------------------------ hypotheses

    def put_hypothesis(self, hypothesis: Hypothesis) -> None:
        self._x(
            "INSERT INTO hypotheses VALUES (?,?,?,?,?,?) ON CONFLICT(id) "
            "DO UPDATE SET verdict = excluded.verdict, json = excluded.json",
            (
                hypothesis.id,
                hypothesis.campaign_id,
                hypothesis.cycle,
                hypothesis.verdict,
                hypothesis.model_dump_json(),
                utcnow(),
            ),
        )

    def get_hypothesis(self, hypothesis_id: str) -> Hypothesis:
        rows = self._q("SELECT json FROM hypotheses WHERE id = ?", (hypothesis_id,))
        if not rows:
            raise NotFoundError(f"hypothesis {hypothesis_id} not found")
        return Hypothesis.model_validate_json(rows[0]["json"])

    def list_hypotheses(self, campaign_id: str, cycle: int | None = None) -> list[Hypothesis]:
        sql, params = "SELECT json FROM hypotheses WHERE campaign_id = ?", list[Any]([campaign_id])
        if cycle is not None:
            sql, params = sql + " AND cycle = ?", [*params, cycle]
        rows = self._q(sql + " ORDER BY cycle, rowid", tuple(params))  # insertion order
        return [Hypothesis.model_validate_json(r["json"]) for r in rows]

    # ------------------------------------------------------------ trials

    def put_trial(self, trial: Trial) -> bool:
        """Insert a trial; returns False (and changes nothing) if the id exists."""
        n = self._x(
            "INSERT OR IGNORE INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                trial.id,
                trial.campaign_id,
                trial.hypothesis_id,
                trial.arm,
                trial.spec_hash,
                trial.spec.seed,
                trial.status,
                trial.result.objective if trial.result else None,
                trial.spec.model_dump_json(),
                trial.result.model_dump_json() if trial.result else None,
                trial.created_at,
                utcnow(),
            ),
        )
        return n == 1

    def _trial(self, row: sqlite3.Row) -> Trial:
        from medloop.core.records import TrialSpec

        return Trial(
            id=row["id"],
            campaign_id=row["campaign_id"],
            hypothesis_id=row["hypothesis_id"],
            arm=row["arm"],
            spec=TrialSpec.model_validate_json(row["spec_json"]),
            spec_hash=row["spec_hash"],
            status=row["status"],
            result=TrialResult.model_validate_json(row["result_json"]) if row["result_json"] else None,
            created_at=row["created_at"],
        )

    def get_trial(self, trial_id: str) -> Trial:
        rows = self._q("SELECT * FROM trials WHERE id = ?", (trial_id,))
        if not rows:
            raise NotFoundError(f"trial {trial_id} not found")
        return self._trial(rows[0])

    def list_trials(
        self,
        *,
        campaign_id: str | None = None,
        hypothesis_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> Page[Trial]:
        sql, params = "SELECT * FROM trials WHERE 1=1", list[Any]()
        for column, value in (
            ("campaign_id", campaign_id),
            ("hypothesis_id", hypothesis_id),
            ("status", status),
        ):
            if value is not None:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        if after:
            sql, params = sql + " AND id > ?", [*params, after]
        rows = self._q(sql + " ORDER BY id LIMIT ?", (*params, limit + 1))
        items = [self._trial(r) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def set_trial_result(self, trial_id: str, result: TrialResult) -> Trial:
        n = self._x(
            "UPDATE trials SET status=?, objective=?, result_json=?, updated_at=? WHERE id=?",
            (result.status, result.objective, result.model_dump_json(), utcnow(), trial_id),
        )
        if n != 1:
            raise NotFoundError(f"trial {trial_id} not found")
        return self.get_trial(trial_id)

    def set_trial_status(self, trial_id: str, status: str) -> None:
        self._x("UPDATE trials SET status=?, updated_at=? WHERE id=?", (status, utcnow(), trial_id))

    def find_trial(self, spec_hash: str, *, status: str = "succeeded") -> Trial | None:
        rows = self._q(
            "SELECT * FROM trials WHERE spec_hash = ? AND status = ? ORDER BY created_at LIMIT 1",
            (spec_hash, status),
        )
        return self._trial(rows[0]) if rows else None

    # ------------------------------------------------------------ claims

    def put_claim(self, claim: Claim, evidence: list[Evidence]) -> bool:
        """Insert a claim with its evidence atomically. Idempotent on the claim id."""
        with self.transaction():
            n = self._x(
                "INSERT OR IGNORE INTO claims VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    claim.id,
                    claim.campaign_id,
                    claim.hypothesis_id,
                    claim.tier,
                    claim.outcome,
                    claim.context.dataset,
                    claim.statement,
                    claim.model_dump_json(),
                    claim.created_at,
                    claim.updated_at,
                ),
            )
            if n == 0:
                return False
            for ev in evidence:
                if ev.claim_id != claim.id:
                    raise StoreError(f"evidence for {ev.claim_id} passed with claim {claim.id}")
                self._x(
                    "INSERT OR IGNORE INTO evidence VALUES (?,?,?,?,?)",
                    (ev.claim_id, ev.kind, ev.ref_id, ev.role, ev.model_dump_json()),
                )
        return True

    def get_claim(self, claim_id: str) -> Claim:
        rows = self._q("SELECT json FROM claims WHERE id = ?", (claim_id,))
        if not rows:
            raise NotFoundError(f"claim {claim_id} not found", hint="see `medloop claims list`")
        return Claim.model_validate_json(rows[0]["json"])

    def list_claims(
        self,
        *,
        tiers: list[Tier] | None = None,
        dataset: str | None = None,
        outcome: str | None = None,
        campaign_id: str | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> Page[Claim]:
        sql, params = "SELECT json, id FROM claims WHERE 1=1", list[Any]()
        if tiers:
            sql += f" AND tier IN ({','.join('?' * len(tiers))})"
            params += list(tiers)
        for column, value in (("dataset", dataset), ("outcome", outcome), ("campaign_id", campaign_id)):
            if value is not None:
                sql, params = sql + f" AND {column} = ?", [*params, value]
        if after:
            sql, params = sql + " AND id > ?", [*params, after]
        rows = self._q(sql + " ORDER BY id LIMIT ?", (*params, limit + 1))
        items = [Claim.model_validate_json(r["json"]) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def set_claim_tier(self, claim_id: str, tier: Tier) -> Claim:
        """Low-level tier write. Callers go through the knowledge lifecycle, which audits."""
        with self.transaction():
            claim = self.get_claim(claim_id).model_copy(update={"tier": tier, "updated_at": utcnow()})
            self._x(
                "UPDATE claims SET tier=?, json=?, updated_at=? WHERE id=?",
                (tier, claim.model_dump_json(), claim.updated_at, claim_id),
            )
        return claim

    def add_evidence(self, evidence: list[Evidence]) -> None:
        """Attach more evidence to existing claims (e.g. reproduction trials). Idempotent."""
        with self.transaction():
            for ev in evidence:
                self.get_claim(ev.claim_id)  # NotFoundError for an unknown claim
                self._x(
                    "INSERT OR IGNORE INTO evidence VALUES (?,?,?,?,?)",
                    (ev.claim_id, ev.kind, ev.ref_id, ev.role, ev.model_dump_json()),
                )

    def list_evidence(self, claim_id: str) -> list[Evidence]:
        rows = self._q("SELECT json FROM evidence WHERE claim_id = ? ORDER BY kind, role", (claim_id,))
        return [Evidence.model_validate_json(r["json"]) for r in rows]

    def claims_citing(self, ref_id: str) -> list[str]:
        rows = self._q("SELECT DISTINCT claim_id FROM evidence WHERE ref_id = ?", (ref_id,))
        return [r["claim_id"] for r in rows]

    # ------------------------------------------------------------ audit

    def append_audit(
        self, actor: str, action: str, object_type: str, object_id: str, detail: dict[str, Any]
    ) -> AuditEntry:
        return self.append_audits([(actor, action, object_type, object_id, detail)])[0]

    def append_audits(self, entries: Sequence[tuple[str, str, str, str, dict[str, Any]]]) -> list[AuditEntry]:
        """Append (actor, action, object_type, object_id, detail) entries in order, chained,
        in one transaction and one INSERT batch."""
        out: list[AuditEntry] = []
        with self.transaction():
            last = self._q("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            prev_hash = last[0]["hash"] if last else GENESIS_HASH
            seq = last[0]["seq"] if last else 0
            rows = []
            for actor, action, object_type, object_id, detail in entries:
                seq += 1
                ts = utcnow()
                body = {
                    "seq": seq,
                    "ts": ts,
                    "actor": actor,
                    "action": action,
                    "object_type": object_type,
                    "object_id": object_id,
                    "detail": detail,
                }
                digest = sha256_hex(prev_hash + canonical_json(body))
                rows.append(
                    (
                        seq,
                        ts,
                        actor,
                        action,
                        object_type,
                        object_id,
                        canonical_json(detail),
                        prev_hash,
                        digest,
                    )
                )
                out.append(AuditEntry(prev_hash=prev_hash, hash=digest, **body))
                prev_hash = digest
            with self._lock:
                self._conn.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?)", rows)
        return out

    def list_audit(
        self, *, object_id: str | None = None, after: int = 0, limit: int = 1000
    ) -> list[AuditEntry]:
        sql, params = "SELECT * FROM audit WHERE seq > ?", list[Any]([after])
        if object_id:
            sql, params = sql + " AND object_id = ?", [*params, object_id]
        rows = self._q(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return [
            AuditEntry(
                seq=r["seq"],
                ts=r["ts"],
                actor=r["actor"],
                action=r["action"],
                object_type=r["object_type"],
                object_id=r["object_id"],
                detail=json.loads(r["detail_json"]),
                prev_hash=r["prev_hash"],
                hash=r["hash"],
            )
            for r in rows
        ]

    def verify_audit(self) -> tuple[bool, int | None]:
        """Recompute the hash chain. Returns (ok, first bad seq)."""
        prev = GENESIS_HASH
        after = 0
        while True:
            batch = self.list_audit(after=after, limit=5000)
            if not batch:
                return True, None
            for e in batch:
                body = {
                    "seq": e.seq,
                    "ts": e.ts,
                    "actor": e.actor,
                    "action": e.action,
                    "object_type": e.object_type,
                    "object_id": e.object_id,
                    "detail": e.detail,
                }
                if e.prev_hash != prev or sha256_hex(prev + canonical_json(body)) != e.hash:
                    return False, e.seq
                prev = e.hash
            after = batch[-1].seq
